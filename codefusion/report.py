"""One results table from several evaluation reports (the JSON files `codefusion.evaluate --out` writes).

    python -m codefusion.report checkpoints/cf/eval_test.json results/cf_*.json [--label FILE=NAME ...]

Rows keep the order given; every report must be for the same language, split and k values.
"""

from __future__ import annotations

import argparse
import json
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


def table(reports: list[dict], labels: list[str]) -> str:
    first = reports[0]
    for r in reports[1:]:
        if (r["lang"], r["split"], list(r["summary"]["top_k"])) != (first["lang"], first["split"],
                                                                   list(first["summary"]["top_k"])):
            raise CodeFusionError("reports differ in language, split or k: make one table per comparison")
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m codefusion.report", description=__doc__.split("\n\n")[0])
    p.add_argument("reports", nargs="+", help="evaluation JSON files, one row each")
    p.add_argument("--label", action="append", default=[], metavar="FILE=NAME", help="row name for a file")
    args = p.parse_args(argv)
    names = dict(item.split("=", 1) for item in args.label if "=" in item)

    def body():
        reports = [load_report(Path(f)) for f in args.reports]
        print(table(reports, [names.get(f, r["system"]) for f, r in zip(args.reports, reports)]))
    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
