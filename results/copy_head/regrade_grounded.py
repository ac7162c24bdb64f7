"""Re-score dumped CF reports with each candidate's literals grounded to the request (`cf.ground_literals`), without
the model: for runs of exactly k draws (or beams) per task, grounding changes no score and so no order, and this gives
the report that `evaluate --ground-literals` writes (checked: `--check DUMP GROUNDED` compares the two task by task).
Runs with --draws above k dropped duplicates before grounding, so they are refused.
Usage: PYTHONPATH=. python results/copy_head/regrade_grounded.py FILE... [--check DUMP GROUNDED_REPORT]"""
import json
import statistics as st
import sys

from codefusion import metrics
from codefusion.data import load_split
from codefusion.evaluate import Answer, score_task, summarize


def regrade(path: str) -> dict:
    r = json.load(open(path))
    cfg = r["config"]
    if r["lang"] != "cf" or cfg.get("draws") not in (None, max(cfg["k"])) or cfg.get("ground_literals"):
        raise SystemExit(f"{path}: not a plain CF report of exactly k candidates")
    examples = {ex.id: ex for ex in load_split("cf", r["split"], cfg.get("data_dir"))}
    k = max(cfg["k"])
    records = []
    for t in r["tasks"]:
        ground = metrics.literal_grounding("cf", t["nl"])
        answers = [Answer(ground(c["text"]), c["score"]) for c in t["candidates"]]
        records.append(score_task("cf", examples[t["id"]], answers, k, t["latency_s"]))
    return {**r, "summary": summarize("cf", records, cfg["k"]), "tasks": records}


def main(argv: list[str]) -> None:
    if argv[:1] == ["--check"]:
        mine, theirs = regrade(argv[1]), json.load(open(argv[2]))
        same = all(a["candidates"] == b["candidates"] and a["solved_at"] == b["solved_at"]
                   for a, b in zip(mine["tasks"], theirs["tasks"]))
        print(f"{argv[1]} regraded == {argv[2]}: {same and len(mine['tasks']) == len(theirs['tasks'])}")
        return
    rows = [regrade(p)["summary"] for p in argv]
    plain = [json.load(open(p))["summary"] for p in argv]
    for name, rs in (("plain", plain), ("grounded", rows)):
        k = {n: st.mean(s["top_k"][n] for s in rs) for n in ("1", "3", "5")}
        v = st.mean(s["validity"] for s in rs)
        print(f"{name:8s} {len(rs)} files: top1 {k['1']:.2f} top3 {k['3']:.2f} top5 {k['5']:.2f} valid {v:.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
