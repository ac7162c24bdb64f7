"""Fuse TF-IDF's similarity with a model's score over the pools that rerank.py dumped (see DECISIONS.md here).

fused = z(similarity) + w * z(model score), z-scored within a task's pool; ties keep TF-IDF's order.

Usage: python results/rerank/fuse.py REPORT.json                  the grid of w for every model score (tuning, val)
       python results/rerank/fuse.py REPORT.json NAME=W [...]     fixed weights, with paired intervals against
                                                                   retrieval where the report keeps its per-task ranks
"""
import json
import sys

from codefusion import metrics
from codefusion.report import paired_bootstrap
from codefusion.rerank import fuse

GRID = (0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3)


def fused_ranks(tasks: list[dict], name: str, w: float) -> list[int | None]:
    """Each task's rank (1-5) of the first right program in the fused order (the evaluator's `rerank.fuse`), None
    if none in the first five."""
    ranks = []
    for t in tasks:
        order = [j for j, _ in fuse(t["sims"], t["scores"][name], w)]
        hits = set(t["hits"])
        ranks.append(next((r + 1 for r, j in enumerate(order[:5]) if j in hits), None))
    return ranks


def line(label: str, ranks: list[int | None]) -> str:
    return f"| {label} | " + " | ".join(f"{metrics.top_k(ranks, k):.2f}" for k in (1, 3, 5)) + " |"


def main(path: str, weights: list[str]) -> None:
    report = json.load(open(path))
    tasks = report["tasks"]
    print(f"{report['split']}, {report['n_tasks']} tasks\n\n| order | top-1 | top-3 | top-5 |\n|---|---|---|---|")
    if not weights:
        for name in tasks[0]["scores"]:
            for w in GRID:
                print(line(f"{name}, w = {w:g}", fused_ranks(tasks, name, w)))
        return
    retrieval = [t.get("retrieval_rank") for t in tasks] if "retrieval_rank" in tasks[0] else None
    if retrieval is not None:
        print(line("retrieval", retrieval))
    rows = []
    for spec in weights:
        name, _, w = spec.rpartition("=")
        ranks = fused_ranks(tasks, name, float(w))
        print(line(f"{name}, fused, w = {w}", ranks))
        rows.append((name, w, ranks))
    if retrieval is None:
        return
    print("\n| fused order | k | minus retrieval | 95% interval |\n|---|---|---|---|")
    for name, w, ranks in rows:
        for k in (1, 5):
            solved = lambda rs: [float(r is not None and r <= k) for r in rs]  # noqa: E731
            diff, lo, hi = paired_bootstrap(solved(ranks), solved(retrieval))
            print(f"| {name}, w = {w} | {k} | {diff:+.2f} | {lo:+.2f} to {hi:+.2f} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__.strip())
    main(sys.argv[1], sys.argv[2:])
