"""Retrieval-augmented prompts, the session-48 pilot in DECISIONS.md: write a copy of a benchmark file whose
utterances read `<utterance> ### <nearest training program>`, for training and evaluating with the package's own
commands (`--data-dir COPY`).

    PYTHONPATH=. python results/rag/rag_data.py LANG DATA_DIR COPY_DIR [RANK]

Train rows take the nearest train-slice row of another question (another ID); val rows the RANK-th distinct nearest
program of the train slice, test rows that of the full train file (the retrieval baseline's index for each split).
A research script, not part of the package."""
import json, sys, os
from pathlib import Path
import numpy as np
from codefusion.data import load_benchmark, train_val_split
from codefusion.retrieval import TfidfRetriever

lang, src, dst = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
RANK = int(sys.argv[4]) if len(sys.argv) > 4 else 1  # eval rows: the RANK-th distinct nearest program
files = {"bash": "BashBenchmarks.json", "cf": "CFRuleBenchmarks.json", "python": "PythonBenchmarks.json"}
SEP = " ### "
full = load_benchmark(lang, "train", src)
train, val = train_val_split(full)
val_ids = {e.id for e in val}
fit_train = TfidfRetriever.from_examples(train)
train_ids = [e.id for e in train]
fit_full = TfidfRetriever.from_examples(full)

def ranked(ret, nl):
    """The RANK-th distinct nearest program (the last one found, when fewer are distinct)."""
    found = ret.search(nl, RANK)
    return found[min(RANK, len(found)) - 1][0]

def nearest_other(ret, ids, nl, exclude_id):
    """The code of the most similar indexed row whose ID is not exclude_id."""
    sims = ret.scores(nl)
    return next(ret.codes[i] for i in np.argsort(-sims, kind="stable") if ids[i] != exclude_id)

raw = json.load(open(src / "Benchmarks" / files[lang]))
out = {"train": [], "test": []}
for row in raw["train"]:
    nl, code = row.get("NL Utterance"), row.get("Code")
    if isinstance(nl, str) and nl.strip() and isinstance(code, str) and code.strip():
        rid = str(row.get("ID"))
        if rid in val_ids:
            nb = ranked(fit_train, nl.strip())
        else:   # train rows: nearest row of another question
            nb = nearest_other(fit_train, train_ids, nl.strip(), rid)
        row = dict(row, **{"NL Utterance": nl.strip() + SEP + nb.strip()})
    out["train"].append(row)
for row in raw["test"]:
    nl, code = row.get("NL Utterance"), row.get("Code")
    if isinstance(nl, str) and nl.strip():
        nb = ranked(fit_full, nl.strip())
        row = dict(row, **{"NL Utterance": nl.strip() + SEP + nb.strip()})
    out["test"].append(row)
(dst / "Benchmarks").mkdir(parents=True, exist_ok=True)
json.dump(out, open(dst / "Benchmarks" / files[lang], "w"))
if not (dst / "Pretraining Data").exists():
    os.symlink(src / "Pretraining Data", dst / "Pretraining Data")
print(len(out["train"]), len(out["test"]), out["train"][0]["NL Utterance"])
