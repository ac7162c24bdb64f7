"""Merge one-draw evaluation reports made on the rank-1..K copies (draw j read the j-th nearest program) into
top-1/3/5, candidates in rank order.

    python results/rag/rag_merge.py r1.json r2.json ... rK.json"""
import json, sys
paths = sys.argv[1:]
reps = [json.load(open(p)) for p in paths]
n = len(reps[0]["tasks"])
solved = []
for i in range(n):
    ids = {r["tasks"][i]["id"] for r in reps}
    assert len(ids) == 1, ids
    at = None
    for j, r in enumerate(reps):
        if r["tasks"][i]["candidates"][0]["correct"]:
            at = j + 1
            break
    solved.append(at)
for k in (1, 3, 5):
    print(k, f"{100 * sum(1 for s in solved if s is not None and s <= k) / n:.2f}", end="  ")
print("valid(top1)", reps[0]["summary"]["validity"])
