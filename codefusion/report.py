"""One results table from several evaluation reports (the JSON files `codefusion.evaluate --out` writes).

    python -m codefusion.report checkpoints/cf/eval_test.json results/cf_*.json [--label FILE=NAME ...]

Rows keep the order given; every report must be for the same language, split and k values. With
--mean-over-seeds, reports of one system that differ only in the sampling seed make one row: the mean of each
column over those seeds, with the seeds and the range of the largest top-k beside it.

    python -m codefusion.report --mean-over-seeds checkpoints/cf/eval_test.json results/seeds/cf_codefusion_seed*.json

With --versus, the reports given first (system A, any number of seeds) are compared with those after --versus
(system B) task by task: the difference of their top-k and its 95% interval from a paired bootstrap over the tasks.

    python -m codefusion.report results/ddpm/cf_bundle_ddpm_grounded_test_seed*.json --versus results/cf_retrieval.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from codefusion import LANGUAGE_NAMES
from codefusion.errors import CodeFusionError, run_cli
from codefusion.evaluate import _fmt, task_latency


def load_report(path: Path) -> dict:
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise CodeFusionError(f"cannot read evaluation report {path}: {e}") from None
    if not isinstance(report, dict) or "summary" not in report or "lang" not in report:
        raise CodeFusionError(f"{path} is not a codefusion.evaluate report")
    return report


# the settings that make two evaluations the same system run (all but --seed and bookkeeping such as --out or --curve)
# "weights" (a fingerprint of the tensors, since session 46): one path can hold several models over time, so
# reports of re-bundled weights are not pooled as seeds; reports written before it read None.
SYSTEM_SETTINGS = ("lang", "split", "checkpoint", "weights", "revision", "baseline", "k", "steps", "sampler",
                   "no_clamp", "guidance", "decoding", "draws", "rank", "valid_first", "ground_literals", "limit",
                   "subset")


# settings added later: reports written before them ran with the default
SETTING_DEFAULTS = {"rank": "score", "valid_first": False, "ground_literals": False, "guidance": 1.0}


def seed_key(report: dict) -> tuple:
    cfg = report.get("config", {})
    return report["system"], json.dumps([cfg.get(k, SETTING_DEFAULTS.get(k)) for k in SYSTEM_SETTINGS], default=str)


def _mean_of_all(values: list) -> float | None:
    """The mean, or None if any seed lacks the value (unlike evaluate._mean, which averages what is there)."""
    return statistics.fmean(values) if values and None not in values else None


def mean_over_seeds(reports: list[dict], labels: list[str]) -> tuple[list[dict], list[str]]:
    """One averaged report per system (first-seen order); its label gains the seeds and the top-k range."""
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(reports):
        groups.setdefault(seed_key(r), []).append(i)
    out, out_labels = [], []
    for members in groups.values():
        rs = [reports[i] for i in members]
        seeds = sorted(r.get("config", {}).get("seed") for r in rs)
        if len(set(seeds)) < len(seeds):
            raise CodeFusionError(f"{labels[members[0]]}: two reports with the same seed ({seeds}); give each seed once")
        sums = [r["summary"] for r in rs]
        ks = list(sums[0]["top_k"])
        summary = {"n_tasks": sums[0]["n_tasks"],
                   "top_k": {k: _mean_of_all([s["top_k"][k] for s in sums]) for k in ks},
                   "validity": _mean_of_all([s["validity"] for s in sums]),
                   "diversity": {d: _mean_of_all([(s.get("diversity") or {}).get(d) for s in sums])
                                 for d in ("distinct_4", "pairwise_ed")},
                   "latency_median_s": _mean_of_all([task_latency(s) for s in sums])}
        out.append({**rs[0], "summary": summary})
        top = [s["top_k"][ks[-1]] for s in sums]
        out_labels.append(labels[members[0]] if len(rs) == 1 else
                          f"{labels[members[0]]}, mean of seeds {', '.join(map(str, seeds))} "
                          f"(top-{ks[-1]} {min(top):.1f}-{max(top):.1f})")
    return out, out_labels


# config keys that do not change a report's figures: never named to tell two rows apart
BOOKKEEPING = ("out", "curve", "curve_tasks", "batch_size")


def distinct_labels(reports: list[dict], labels: list[str], keys=None) -> list[str]:
    """Rows that would read alike gain the settings that differ between them (`weights ...`, `seed 1`, `data_dir
    ...`), so that two models saved to one folder, or runs on two copies of the data, are told apart. `keys`: the
    config keys that may be named (default: all but BOOKKEEPING)."""
    out = list(labels)
    groups: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(label, []).append(i)
    for label, members in groups.items():
        if len(members) < 2:
            continue
        cfgs = [reports[i].get("config", {}) for i in members]
        names = keys if keys is not None else sorted({k for c in cfgs for k in c} - set(BOOKKEEPING))
        differ = [k for k in names if len({json.dumps(c.get(k), default=str) for c in cfgs}) > 1]
        if not differ:
            continue
        for i, c in zip(members, cfgs):
            out[i] = f"{label} [{', '.join(f'{k} {c.get(k)}' for k in differ)}]"
    return out


def comparable(reports: list[dict], same_tasks: bool = False) -> bool:
    """Whether the reports share language, split and k values and, with same_tasks, the tasks in the same order."""
    def key(r: dict) -> tuple:
        ids = [str(t["id"]) for t in r["tasks"]] if same_tasks else None
        return r["lang"], r["split"], list(r["summary"]["top_k"]), ids
    return all(key(r) == key(reports[0]) for r in reports[1:])


def table(reports: list[dict], labels: list[str]) -> str:
    if not comparable(reports):
        raise CodeFusionError("reports differ in language, split or k: make one table per comparison")
    first = reports[0]
    ks = list(first["summary"]["top_k"])
    head = ["System"] + [f"Top-{k}" for k in ks] + ["Valid top-1 %", "Distinct-4 (top-5)", "Pairwise ED",
                                                    "Steps", "Latency s/task"]
    lines = [f"{LANGUAGE_NAMES[first['lang']]}, {first['split']} split ({first['summary']['n_tasks']} tasks), "
             f"{first['metric']}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r, label in zip(reports, labels):
        s, cfg = r["summary"], r.get("config", {})
        steps = cfg.get("steps") if cfg.get("checkpoint") and "autoregressive" not in r["system"] else None
        div = s.get("diversity") or {}
        row = ([label] + [_fmt(s["top_k"][k]) for k in ks]
               + [_fmt(s["validity"]), _fmt(div.get("distinct_4"), False), _fmt(div.get("pairwise_ed"), False),
                  str(steps) if steps else "–", _fmt(task_latency(s), False)])
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def solved_per_task(reports: list[dict]) -> dict[str, list[float]]:
    """Per k, each task's share of the reports that solved it within the first k (the mean over seeds of a
    system's 0/1 outcomes). The reports must be `comparable` with the same tasks."""
    n = len(reports[0]["tasks"])
    return {k: [statistics.fmean(t.get("solved_at") is not None and t["solved_at"] <= int(k)
                                 for t in (r["tasks"][i] for r in reports)) for i in range(n)]
            for k in reports[0]["summary"]["top_k"]}


def paired_bootstrap(a: list[float], b: list[float], n: int = 10_000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of a - b (in points) and its 95% percentile interval when the tasks are resampled with replacement."""
    import numpy as np

    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(diff), size=(n, len(diff)))
    means = diff[idx].mean(axis=1) * 100
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(diff.mean() * 100), float(lo), float(hi)


def _n_reports(reports: list) -> str:
    return f"{len(reports)} report{'' if len(reports) == 1 else 's'}"


def versus(a_reports: list[dict], b_reports: list[dict], a_label: str, b_label: str) -> str:
    """A markdown table: A's and B's top-k, A - B and its 95% paired-bootstrap interval over tasks."""
    if not comparable(a_reports + b_reports, same_tasks=True):
        raise CodeFusionError("reports to compare must cover the same tasks of one language and split, with the "
                              "same k values (the same --split, --limit or --subset, and --k)")
    a_shares, b_shares = solved_per_task(a_reports), solved_per_task(b_reports)
    lines = [f"{a_label} (A, {_n_reports(a_reports)}) against {b_label} (B, {_n_reports(b_reports)}), "
             f"{LANGUAGE_NAMES[a_reports[0]['lang']]} {a_reports[0]['split']}, {len(a_reports[0]['tasks'])} tasks; "
             "the interval resamples tasks (10,000 paired draws), not training runs", "",
             "| | A | B | A - B | 95% interval |", "|---|---|---|---|---|"]
    for k in a_shares:
        diff, lo, hi = paired_bootstrap(a_shares[k], b_shares[k])
        a_top, b_top = (_fmt(statistics.fmean(shares[k]) * 100) for shares in (a_shares, b_shares))
        lines.append(f"| top-{k} | {a_top} | {b_top} | {diff:+.1f} | {lo:+.1f} to {hi:+.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m codefusion.report", description=__doc__.split("\n\n")[0])
    p.add_argument("reports", nargs="+", help="evaluation JSON files, one row each")
    p.add_argument("--label", action="append", default=[], metavar="FILE=NAME", help="row name for a file")
    p.add_argument("--mean-over-seeds", action="store_true",
                   help="one row per system: the mean over its reports that differ only in --seed")
    p.add_argument("--versus", nargs="+", metavar="REPORT",
                   help="compare the reports given first (one system, any seeds) with these, task by task")
    args = p.parse_args(argv)
    names = dict(item.split("=", 1) for item in args.label if "=" in item)

    def body():
        reports = [load_report(Path(f)) for f in args.reports]
        labels = [names.get(f, r["system"]) for f, r in zip(args.reports, reports)]
        if args.versus:
            if args.mean_over_seeds:
                raise CodeFusionError("--versus pools each side's seeds itself: leave out --mean-over-seeds")
            others = [load_report(Path(f)) for f in args.versus]
            print(versus(reports, others, labels[0], names.get(args.versus[0], others[0]["system"])))
            return
        if args.mean_over_seeds:   # averaged rows differ only in a system setting (seed_key), so name only those
            reports, labels = mean_over_seeds(reports, labels)
            labels = distinct_labels(reports, labels, keys=SYSTEM_SETTINGS)
        else:
            labels = distinct_labels(reports, labels)
        print(table(reports, labels))
    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
