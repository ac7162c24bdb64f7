"""Recall of the 40 draws, what the ranking loses and distinct programs per task, from `--k 1 3 5 39` vote reports.

    python results/draw_recall/recall.py results/draw_recall/cf_val_vote40_k39.json results/draw_recall/ar_val_vote40_k39.json
"""
import json
import statistics
import sys

for path in sys.argv[1:]:
    tasks = json.load(open(path))["tasks"]
    n = len(tasks)
    drawn = sum(any(c["correct"] for c in t["candidates"]) for t in tasks)
    top5 = sum(t["solved_at"] is not None and t["solved_at"] <= 5 for t in tasks)
    distinct = [len(t["candidates"]) for t in tasks]
    print(f"{path}: {n} tasks, recall of the draws {100 * drawn / n:.1f}, top-5 {100 * top5 / n:.1f}, "
          f"drawn but not in the top 5 {100 * (drawn - top5) / n:.1f}; distinct programs per task: median "
          f"{statistics.median(distinct)}, {sum(d >= 39 for d in distinct)} tasks with 39 or more")
