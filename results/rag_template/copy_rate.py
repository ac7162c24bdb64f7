"""How often a retrieval-augmented model's top-1 program is the retrieved one (by template), split by whether the
retrieved program was right: the figures in DECISIONS.md.

    PYTHONPATH=. python results/rag_template/copy_rate.py EVAL_COPY_DIR REPORT.json ..."""
import json
import sys

from codefusion import metrics
from codefusion.data import load_split

tasks = {e.id: e for e in load_split("bash", "val", sys.argv[1])}
for path in sys.argv[2:]:
    counts = {True: [0, 0, 0], False: [0, 0, 0]}   # retrieved right? -> tasks, top-1 correct, top-1 = retrieved
    for task in json.load(open(path, encoding="utf-8"))["tasks"]:
        ex = tasks[task["id"]]
        retrieved = metrics.bash_template(ex.nl.split(" ### ", 1)[1])
        top = task["candidates"][0]
        c = counts[retrieved == metrics.bash_template(ex.code)]
        c[0] += 1
        c[1] += bool(top["correct"])
        c[2] += metrics.bash_template(top["text"]) == retrieved
    for right, (n, correct, copied) in counts.items():
        print(f"{path}: retrieved {'right' if right else 'wrong'} on {n} tasks: top-1 correct {100 * correct / n:.1f}%, "
              f"top-1 is the retrieved template {100 * copied / n:.1f}%")
