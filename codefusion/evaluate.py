"""Evaluate a checkpoint or a baseline on a benchmark split with the paper's protocol (Table 1).

    python -m codefusion.evaluate --lang cf --split test --data-dir DIR --baseline retrieval \
        --k 1 3 5 --out results.json
    python -m codefusion.evaluate --lang bash --split test --data-dir DIR --checkpoint CKPT \
        --k 1 3 5 --steps 20 --out results.json --curve edit_distance.html

Prints a Table-1-style markdown table and writes a JSON report: the metric, the number of tasks,
every task's candidates with their correctness, and the configuration. Baselines:
- gold: the gold code answers itself; every metric must read 100.
- retrieval: the code of the most similar training utterance (TF-IDF; fit on train_full for test,
  on train for val), top-k = the k nearest distinct codes.
Candidates are only parsed and (for CF rules) interpreted; nothing is run as Python or shell.
Validity counts the top-1 candidates that parse, over the tasks whose gold program parses
(the validators are proxies: bashlex, for one, lacks some Bash syntax); the others are listed.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from codefusion import LANGUAGE_NAMES, RANKINGS, SAMPLERS, bash, metrics
from codefusion.data import Example, check_language, load_split, resolve_data_dir
from codefusion.errors import CodeFusionError, run_cli

SPLITS = ("test", "val")
RETRIEVAL_FIT_SPLIT = {"test": "train_full", "val": "train"}
CURVE_TASKS = 20


@dataclass
class Answer:
    """One candidate program and the score it was ranked by (None for baselines without one)."""

    text: str
    score: float | None = None
    votes: int | None = None   # draws that agreed on it (--rank vote)


# ----------------------------------------------------------------------------- candidate sources

def gold_answers(batch: list[Example], k: int) -> list[list[Answer]]:
    return [[Answer(ex.code)] for ex in batch]


class RetrievalSource:
    """k nearest distinct training codes for each prompt; with a reranker (codefusion.rerank), the k best of the
    nearest POOL programs, one per program as the metric sees it, by TF-IDF's similarity fused with a model's score."""

    def __init__(self, lang: str, split: str, data_dir, ground_literals: bool = False, reranker=None):
        from codefusion.retrieval import TfidfRetriever

        self.fit_split = RETRIEVAL_FIT_SPLIT[split]
        self.retriever = TfidfRetriever.from_examples(load_split(lang, self.fit_split, data_dir))
        self.lang, self.ground_literals, self.reranker = lang, ground_literals, reranker

    def __call__(self, batch: list[Example], k: int) -> list[list[Answer]]:
        if self.reranker is not None:
            from codefusion.rerank import pool   # torch: only for a reranked run, not for plain retrieval

        out = []
        for ex in batch:
            found = self.retriever.search(ex.nl, k) if self.reranker is None else pool(self.retriever, self.lang, ex.nl)
            if self.ground_literals:   # a retrieved program adapted to the request: its constants from the request
                grounding = metrics.literal_grounding(self.lang, ex.nl)
                found = [(grounding(code), score) for code, score in found]
            if self.reranker is not None:
                found = self.reranker(ex.nl, found)[:k]
            out.append([Answer(code, score) for code, score in found])
        return out


class ModelSource:
    """Candidates from a checkpoint: CodeFusion through codefusion.sampler, the AR baseline through its decoding."""

    def __init__(self, checkpoint: str, lang: str, steps: int, seed: int, sampler: str,
                 revision: str | None = None, device: str | None = None, decoding: str = "beam", clamp: bool = True,
                 draws: int | None = None, rank_by: str = "score", valid_first: bool = False,
                 ground_literals: bool = False, guidance: float = 1.0):
        from codefusion import sampler as sampler_module

        self.sampler_module = sampler_module
        self.model = sampler_module.load_model(checkpoint, revision=revision, device=device, lang=lang)
        self.steps, self.seed, self.sampler, self.decoding, self.clamp = steps, seed, sampler, decoding, clamp
        self.draws, self.rank_by, self.valid_first, self.ground_literals = draws, rank_by, valid_first, ground_literals
        self.guidance = guidance
        self.autoregressive = self.model.config.architecture == "autoregressive"
        if self.autoregressive and guidance != 1:
            raise CodeFusionError("--guidance steers CodeFusion's denoiser; the autoregressive baseline has none")
        from codefusion.model import weights_fingerprint

        self.weights = weights_fingerprint(self.model)

    @property
    def system(self) -> str:
        ranked = "" if not self.draws else (f", vote over {self.draws} draws" if self.rank_by == "vote"
                                            else f", best distinct of {self.draws}")
        ranked += ", by mean score over the steps" if self.rank_by == "mean-score" else ""
        ranked += ", parsing first" if self.valid_first else ""
        ranked += ", literals grounded" if self.ground_literals else ""
        if self.autoregressive:
            return f"autoregressive T5 baseline ({self.decoding}{ranked})"
        guided = "" if self.guidance == 1 else f", guidance {self.guidance:g}"
        return f"CodeFusion ({self.sampler}, {self.steps} steps{'' if self.clamp else ', no clamping'}{guided}{ranked})"

    def __call__(self, batch: list[Example], k: int) -> list[list[Answer]]:
        prompts = [ex.nl for ex in batch]
        if self.autoregressive:
            out = self.model.generate_candidates(prompts, k=k, decoding=self.decoding, seed=self.seed, draws=self.draws,
                                                 rank_by=self.rank_by, valid_first=self.valid_first,
                                                 ground_literals=self.ground_literals)
        else:
            out = self.sampler_module.generate(self.model, prompts, k=k, steps=self.steps, seed=self.seed,
                                               sampler=self.sampler, clamp=self.clamp, draws=self.draws,
                                               rank_by=self.rank_by, valid_first=self.valid_first,
                                               ground_literals=self.ground_literals, guidance=self.guidance)
        return [[Answer(c.text, float(c.score), c.votes) for c in cands] for cands in out]

    def curve(self, examples: list[Example], k: int, n_tasks: int) -> dict:
        """Mean token edit distance of each step's x̂0 text to the final output and to the gold code (its template
        for a model trained on templates)."""
        if self.autoregressive:
            raise CodeFusionError("--curve follows denoising steps: the autoregressive baseline has none")
        sample = random.Random(self.seed).sample(examples, min(n_tasks, len(examples)))
        to_final = [[] for _ in range(self.steps)]
        to_gold = [[] for _ in range(self.steps)]
        for ex in sample:
            frames = list(self.sampler_module.stream(self.model, ex.nl, k=k, steps=self.steps, seed=self.seed,
                                                     sampler=self.sampler, clamp=self.clamp, guidance=self.guidance))
            if not frames:
                raise CodeFusionError("the sampler's stream() yielded no frames")
            final = frames[-1].candidates
            # a model that writes templates is measured against the gold's template, not its file names
            gold = bash.template(ex.code) if self.model.config.bash_templates else ex.code
            for frame in frames:
                for i, cand in enumerate(frame.candidates):
                    to_final[frame.step - 1].append(metrics.token_edit_distance(cand.text, final[i].text))
                    to_gold[frame.step - 1].append(metrics.token_edit_distance(cand.text, gold))
        mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
        return {"n_tasks": len(sample), "task_ids": [ex.id for ex in sample],
                "step": list(range(1, self.steps + 1)),
                "fraction": [s / self.steps for s in range(1, self.steps + 1)],
                "to_final": [mean(xs) for xs in to_final], "to_gold": [mean(xs) for xs in to_gold]}


# ----------------------------------------------------------------------------- scoring

def score_task(lang: str, ex: Example, answers: list[Answer], k: int, latency: float) -> dict:
    """The per-task record: candidates with correctness, first correct rank, validity, diversity."""
    answers = answers[:k]
    correct = [metrics.is_correct(lang, a.text, ex) for a in answers]
    top1 = answers[0].text if answers else ""
    return {
        "id": ex.id, "nl": ex.nl, "gold": ex.code,
        "candidates": [{"text": a.text, "score": a.score, "correct": c} | ({"votes": a.votes} if a.votes else {})
                       for a, c in zip(answers, correct)],
        "solved_at": next((i + 1 for i, c in enumerate(correct) if c), None),
        "gold_valid": metrics.is_valid(lang, ex.code),
        "top1_valid": bool(answers) and metrics.is_valid(lang, top1),
        "top1_edit_distance": metrics.token_edit_distance(top1, ex.code),
        "diversity": metrics.diversity([a.text for a in answers]),
        "gold_issue": metrics.gold_issue(lang, ex),
        "latency_s": latency,
    }


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def summarize(lang: str, records: list[dict], ks: list[int], codebertscore: bool = False) -> dict:
    """Table-1 numbers from the per-task records."""
    solved = [r["solved_at"] for r in records]
    scored = [r for r in records if r["gold_valid"]]
    div = [r["diversity"] for r in records if r["diversity"]]
    out = {
        "n_tasks": len(records),
        "top_k": {str(k): metrics.top_k(solved, k) for k in ks},
        "validity": 100.0 * sum(r["top1_valid"] for r in scored) / len(scored) if scored else None,
        "validity_n_tasks": len(scored),
        "diversity": {key: _mean([d[key] for d in div]) for key in
                      ("distinct_1", "distinct_2", "distinct_3", "distinct_4", "pairwise_ed")} if div else None,
        "edit_distance_top1": _mean([r["top1_edit_distance"] for r in records]),
        "latency_s": _mean([r["latency_s"] for r in records]),
        # what the tables show: unlike the mean, the median ignores the first call's warm-up and a busy machine's stalls
        "latency_median_s": statistics.median(r["latency_s"] for r in records) if records else None,
    }
    if lang == "python":
        top1 = [r["candidates"][0]["text"] if r["candidates"] else "" for r in records]
        out["bleu_top1"] = metrics.bleu(top1, [r["gold"] for r in records]) if records else None
        out["codebertscore_top1"] = (metrics.codebertscore(top1, [r["gold"] for r in records])
                                     if codebertscore else None)
    return out


def task_latency(summary: dict) -> float | None:
    """Seconds per task: the median where the report has it (reports written before it existed: the mean)."""
    return summary.get("latency_median_s", summary.get("latency_s"))


def _fmt(value, pct: bool = True) -> str:
    if value is None:
        return "–"
    return f"{value:.1f}" if pct else f"{value:.3f}"


def format_table(report: dict) -> str:
    """A Table-1-style markdown table of one report."""
    s = report["summary"]
    ks = list(s["top_k"])
    python = report["lang"] == "python"
    head = (["Language", "System", "Metric", "Tasks"] + [f"Top-{k}" for k in ks]
            + ["Valid top-1 %", "Distinct-4", "Pairwise ED", "Top-1 ED to gold", "Latency s/task"]
            + (["BLEU top-1", "CodeBERTScore"] if python else []))
    row = ([LANGUAGE_NAMES[report["lang"]], report["system"], report["metric_short"], str(s["n_tasks"])]
           + [_fmt(s["top_k"][k]) for k in ks]
           + [_fmt(s["validity"]), _fmt((s["diversity"] or {}).get("distinct_4"), False),
              _fmt((s["diversity"] or {}).get("pairwise_ed"), False), _fmt(s["edit_distance_top1"], False),
              _fmt(task_latency(s), False)]
           + ([_fmt(s["bleu_top1"]), _fmt(s["codebertscore_top1"])] if python else []))
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), "| " + " | ".join(row) + " |"]
    if report["gold_issues"]:
        lines.append(f"\n{len(report['gold_issues'])} task(s) with a gold program the metric cannot use as is "
                     "(listed in the JSON under gold_issues).")
    return "\n".join(lines)


def report_headline(report: dict) -> str:
    """One line on what a test-split report measured, e.g. "Measured on the test split (177 tasks, 20 steps, sampling
    seed 0): top-1/3/5 execution match 14.1 / 15.8 / 15.8% · top-1 valid 73%" (the app's model line, the Hub card)."""
    summary, config = report["summary"], report.get("config", {})
    top = summary["top_k"]
    ks = sorted(int(k) for k in top)
    scores = " / ".join(f"{top[str(k)]:.1f}" for k in ks)
    tasks = (f"first {summary['n_tasks']}" if config.get("limit")
             else f"a random {summary['n_tasks']}" if config.get("subset") else f"{summary['n_tasks']}")
    seed = f", sampling seed {config['seed']}" if config.get("seed") is not None else ""
    line = (f"Measured on the {report['split']} split ({tasks} tasks, {config.get('steps', '?')} steps{seed}): "
            f"top-{'/'.join(map(str, ks))} {report['metric_short']} {scores}%")
    if summary.get("validity") is not None:
        line += f" · top-1 valid {summary['validity']:.0f}%"
    return line


def save_curve(curve: dict, path: Path, title: str) -> list[str]:
    """Write the edit-distance-versus-steps figure as HTML, and as PNG where plotly can export images (kaleido >= 1
    plus a Chrome or Chromium, e.g. `BROWSER_PATH=/usr/bin/chromium`)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_scatter(x=curve["fraction"], y=curve["to_final"], mode="lines+markers", name="to final output")
    fig.add_scatter(x=curve["fraction"], y=curve["to_gold"], mode="lines+markers", name="to gold code")
    fig.update_layout(title=title, xaxis_title="denoising step / total steps",
                      yaxis_title="mean normalised token edit distance", yaxis_range=[0, 1])
    path.parent.mkdir(parents=True, exist_ok=True)
    html = path.with_suffix(".html")
    fig.write_html(html, include_plotlyjs="cdn")  # a small file; plotly.js loads from its CDN when opened
    written = [str(html)]
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return written
    try:
        fig.write_image(path.with_suffix(".png"))
    except Exception as e:  # no browser, or a kaleido plotly can't use: the HTML and the report still count
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        print(f"warning: no PNG written for {path.with_suffix('.png')} ({reason})", file=sys.stderr)
        return written
    return written + [str(path.with_suffix(".png"))]


# ----------------------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m codefusion.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--lang", required=True, help="python, bash or cf")
    p.add_argument("--split", default="test", help="test (default) or val")
    p.add_argument("--data-dir", default=None, help="the CodeFusion data folder (else $CODEFUSION_DATA)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a checkpoint folder or Hub repo id")
    source.add_argument("--baseline", help="gold or retrieval")
    p.add_argument("--revision", default=None, help="checkpoint revision (Hub repos)")
    p.add_argument("--device", default=None, help="torch device for the checkpoint")
    p.add_argument("--k", type=int, nargs="+", default=[1, 3, 5], help="top-k values (default 1 3 5)")
    p.add_argument("--steps", type=int, default=20, help="denoising steps (default 20)")
    p.add_argument("--sampler", default="ddim", choices=SAMPLERS, help="CodeFusion's sampler (default ddim)")
    p.add_argument("--no-clamp", action="store_true",
                   help="step the scheduler from x̂0 itself (the paper's plain loop) instead of clamped tokens")
    p.add_argument("--guidance", type=float, default=1.0, metavar="W",
                   help="classifier-free guidance weight for CodeFusion: x̂0 = null + W (x̂0 - null), the null prompt's "
                        "x̂0 as the reference (default 1: none; for models trained with --prompt-dropout)")
    p.add_argument("--decoding", default="beam", choices=["beam", "sample"],
                   help="how an autoregressive baseline checkpoint decodes its k candidates (default beam)")
    p.add_argument("--draws", type=int, default=None,
                   help="sample-and-rank: decode this many candidates per task (noise draws, samples or beams) and "
                        "keep the k best-scoring distinct programs (default: exactly k, duplicates kept)")
    p.add_argument("--rank", default="score", choices=RANKINGS,
                   help="rank by the last step's score (score, default) or by each draw's score averaged over the "
                        "denoising steps (mean-score; CodeFusion only), or with --draws keep the programs most draws "
                        "agree on by the language's metric (vote: Bash template, Python AST, CF rule tokens)")
    p.add_argument("--valid-first", action="store_true",
                   help="rank a model's candidates that parse (the validity column's check) before those that do not")
    p.add_argument("--ground-literals", action="store_true",
                   help="CF: round each candidate's literal arguments to the request (the most similar span or "
                        "number it writes) before ranking; with --baseline retrieval, adapt the retrieved rules")
    p.add_argument("--rerank", default=None, metavar="CHECKPOINT",
                   help="with --baseline retrieval: reorder the nearest 20 programs (one per template, AST or rule) "
                        "by this checkpoint's score of each, fused with TF-IDF's similarity (a retrieve-and-rerank "
                        "hybrid, not the paper's method; see results/rerank/)")
    p.add_argument("--rerank-weight", type=float, default=None, metavar="W",
                   help="the model score's weight against TF-IDF's, both z-scored within the pool (default 1.5)")
    p.add_argument("--rerank-templates", action="store_true",
                   help="Bash: the --rerank checkpoint was trained on NL2Bash templates (implied when its config says "
                        "so: train --bash-templates), so it scores each program's "
                        "template (results/template/make_data.py)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N tasks")
    p.add_argument("--subset", type=int, default=None,
                   help="evaluate N tasks drawn at random from the whole split: the same N for every system and seed, "
                        "an unbiased sample where --limit's first N are not (NL2Bash's test split is sorted by prompt)")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per generation batch (default 8)")
    p.add_argument("--out", required=True, help="where to write the JSON report")
    p.add_argument("--curve", default=None, help="write the edit-distance-versus-steps figure here (HTML)")
    p.add_argument("--curve-tasks", type=int, default=CURVE_TASKS, help=f"tasks sampled for --curve ({CURVE_TASKS})")
    p.add_argument("--codebertscore", action="store_true",
                   help="also report CodeBERTScore (Python; needs the CodeBERT model, unavailable offline)")
    return p


def _check_args(args) -> None:
    check_language(args.lang)
    if args.split not in SPLITS:
        raise CodeFusionError(f"unknown split {args.split!r}: choose {' or '.join(SPLITS)}")
    if args.baseline is not None and args.baseline not in ("gold", "retrieval"):
        raise CodeFusionError(f"unknown baseline {args.baseline!r}: choose gold or retrieval")
    for name, value in (("--k", min(args.k)), ("--steps", args.steps), ("--batch-size", args.batch_size),
                        ("--limit", args.limit), ("--subset", args.subset), ("--curve-tasks", args.curve_tasks)):
        if value is not None and value < 1:
            raise CodeFusionError(f"{name} must be at least 1, got {value}")
    if args.limit is not None and args.subset is not None:
        raise CodeFusionError("--limit takes the first N tasks and --subset a random N: pass one of them")
    if args.draws is not None and args.draws < max(args.k):
        raise CodeFusionError(f"--draws must be at least the largest --k ({max(args.k)}), got {args.draws}")
    for flag, used in (("--draws", args.draws is not None), ("--valid-first", args.valid_first),
                       ("--rank mean-score", args.rank == "mean-score")):
        if used and args.checkpoint is None:
            raise CodeFusionError(f"{flag} ranks a model's candidates: it needs --checkpoint")
    if args.ground_literals and (args.lang != "cf" or args.baseline == "gold"):
        raise CodeFusionError("--ground-literals rounds CF rules' literals to the request: use it with --lang cf and "
                              "a checkpoint or --baseline retrieval")
    if args.rank == "vote" and (args.draws is None or args.draws <= max(args.k)):
        raise CodeFusionError(f"--rank vote counts agreeing draws: pass --draws above the largest --k ({max(args.k)})")
    if args.rerank is None and (args.rerank_templates or args.rerank_weight is not None):
        raise CodeFusionError("--rerank-weight and --rerank-templates shape --rerank: pass --rerank CHECKPOINT too")
    if args.rerank is not None and args.baseline != "retrieval":
        raise CodeFusionError("--rerank reorders retrieved programs: use it with --baseline retrieval")
    if args.rerank_weight is not None and not args.rerank_weight >= 0:
        raise CodeFusionError(f"--rerank-weight must be 0 or more, got {args.rerank_weight}")
    if args.rerank_templates and args.lang != "bash":
        raise CodeFusionError("--rerank-templates scores NL2Bash templates: use it with --lang bash")
    if args.guidance != 1 and args.checkpoint is None:
        raise CodeFusionError("--guidance steers CodeFusion's denoiser: it needs --checkpoint")
    if args.curve and args.checkpoint is None:
        raise CodeFusionError("--curve follows the denoising steps of a model: it needs --checkpoint")
    if args.codebertscore and args.lang != "python":
        raise CodeFusionError("--codebertscore is the Python metric: use it with --lang python")


def select_tasks(examples: list, limit: int | None = None, subset: int | None = None) -> list:
    """The first `limit` tasks, or `subset` tasks drawn at random, in split order. The draw depends only on the
    split's size and N (not on --seed): every system evaluated with one --subset sees the same tasks."""
    if subset is None:
        return examples[:limit]
    if subset > len(examples):
        raise CodeFusionError(f"--subset {subset} is more than the split's {len(examples)} tasks")
    draw = random.Random(f"subset {len(examples)} {subset}").sample(range(len(examples)), subset)
    return [examples[i] for i in sorted(draw)]


def retrieval_source(args, data_dir) -> tuple[RetrievalSource, str]:
    """The retrieval baseline, reranked by a checkpoint with --rerank, and the report's name for it."""
    grounded = ", literals grounded" if args.ground_literals else ""
    if args.rerank is None:
        source = RetrievalSource(args.lang, args.split, data_dir, args.ground_literals)
        return source, f"retrieval baseline (TF-IDF over {source.fit_split}{grounded})"
    from codefusion.model import weights_fingerprint
    from codefusion.rerank import POOL, WEIGHT, Reranker
    from codefusion.sampler import load_model

    if args.rerank_weight is None:
        args.rerank_weight = WEIGHT   # so that the report's config shows the weight used
    model = load_model(args.rerank, revision=args.revision, device=args.device, lang=args.lang,
                       name=f"--rerank {args.rerank}")
    reranker = Reranker(model, args.rerank_weight, args.rerank_templates)
    source = RetrievalSource(args.lang, args.split, data_dir, args.ground_literals, reranker)
    source.weights = weights_fingerprint(model)
    scorer = "AR" if model.config.architecture == "autoregressive" else "CodeFusion"
    templates = ", scoring templates" if reranker.templates else ""
    return source, (f"retrieval (TF-IDF over {source.fit_split}{grounded}), nearest {POOL} reranked by {scorer} "
                     f"fused with TF-IDF (weight {args.rerank_weight:g}{templates}): {args.rerank}")


def run(args) -> dict:
    """Evaluate as the parsed arguments say and return the report (also written to --out)."""
    _check_args(args)
    data_dir = resolve_data_dir(args.data_dir)
    examples = select_tasks(load_split(args.lang, args.split, data_dir), args.limit, args.subset)
    if not examples:
        raise CodeFusionError(f"no {args.lang} {args.split} tasks to evaluate")
    ks = sorted(set(args.k))
    k = max(ks)
    if args.checkpoint is not None:
        source = ModelSource(args.checkpoint, args.lang, args.steps, args.seed, args.sampler, args.revision, args.device,
                             args.decoding, clamp=not args.no_clamp, draws=args.draws, rank_by=args.rank,
                             valid_first=args.valid_first, ground_literals=args.ground_literals,
                             guidance=args.guidance)
        system = f"{source.system}: {args.checkpoint}"
    elif args.baseline == "retrieval":
        source, system = retrieval_source(args, data_dir)
    else:
        source, system = gold_answers, "gold (sanity check)"

    from tqdm import tqdm

    records = []
    with tqdm(total=len(examples), desc=f"{args.lang} {args.split}", unit="task", file=sys.stderr) as bar:
        for start in range(0, len(examples), args.batch_size):
            batch = examples[start:start + args.batch_size]
            t0 = time.perf_counter()
            answers = source(batch, k)
            latency = (time.perf_counter() - t0) / len(batch)
            records += [score_task(args.lang, ex, a, k, latency) for ex, a in zip(batch, answers)]
            bar.update(len(batch))

    report = {
        "lang": args.lang, "split": args.split, "system": system,
        "metric": metrics.METRIC_NAMES[args.lang], "metric_short": metrics.METRIC_NAMES[args.lang].split(" (")[0],
        "summary": summarize(args.lang, records, ks, args.codebertscore),
        "gold_issues": [{"id": r["id"], "gold": r["gold"], "reason": r["gold_issue"]} for r in records if r["gold_issue"]],
        "config": {**vars(args), "data_dir": str(data_dir), "k": ks, "n_candidates": k,
                   "weights": getattr(source, "weights", None)},
        "tasks": records,
    }
    if args.curve:
        curve = source.curve(examples, k, args.curve_tasks)
        files = save_curve(curve, Path(args.curve), f"{LANGUAGE_NAMES[args.lang]}: edit distance versus denoising step")
        report["curve"] = {**curve, "files": files}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; CodeFusionError becomes `error: ...` and exit code 2."""
    args = build_parser().parse_args(argv)

    def body():
        print(format_table(run(args)))
        print(f"\nwrote {args.out}")
    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
