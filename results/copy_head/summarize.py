"""Mean top-1/3/5 and validity of CF evaluation reports (one per sampling seed), and how many of the "novel-argument"
tasks each solves: tasks whose gold rule has a literal (CF lexer: word, number or string) that no training rule has.
Usage: PYTHONPATH=. python results/copy_head/summarize.py results/copy_head/NAME_val_seed?.json"""
import json, sys, statistics as st
from codefusion.data import load_split
from codefusion.augment import _cf_literals
train = load_split("cf", "train")
seen = {c[a:b].strip().lower() for ex in train for c in [ex.code] for a, b in _cf_literals(c)}
def novel(gold):
    lits = [gold[a:b].strip().lower() for a, b in _cf_literals(gold)]
    return bool(lits) and any(l not in seen for l in lits)
rows = [json.load(open(f)) for f in sys.argv[1:]]
k = {n: st.mean(r["summary"]["top_k"][n] for r in rows) for n in ("1", "3", "5")}
v = st.mean(r["summary"]["validity"] for r in rows)
nov = [sum(1 for t in r["tasks"] if novel(t["gold"]) and t["solved_at"] is not None) for r in rows]
n_nov = sum(1 for t in rows[0]["tasks"] if novel(t["gold"]))
print(f"{len(rows)} files: top1 {k['1']:.2f} top3 {k['3']:.2f} top5 {k['5']:.2f} valid {v:.1f}; novel-arg tasks {n_nov}, solved per seed {nov} (sum {sum(nov)})")
