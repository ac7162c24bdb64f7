"""Retrieval-augmented prompts on NL2Bash templates (session 53; rule in DECISIONS.md here): copies of the data
folder whose Bash utterances read `<utterance> ### <template of a retrieved training program>`.

    PYTHONPATH=. python results/rag_template/make_data.py SRC_DATA_DIR OUT_DIR [MAX_RANK]

OUT_DIR/train: every train row's program is its template (as results/template/make_data.py), prompts augmented with
the template of the nearest train-slice row of another question (another ID). OUT_DIR/eval_rankJ (J = 1..MAX_RANK,
default 5): the same prompts for train rows, but the val slice and test keep their raw golds (the metric templates
both sides), and a val or test row reads the template of the J-th distinct nearest program of the retrieval
baseline's own index (train slice for val, the full train file for test). A research script, not the package."""
import json
import sys
from pathlib import Path

import numpy as np

from codefusion import metrics
from codefusion.data import BENCHMARK_FILES, SNIPPET_FILES, load_benchmark, load_snippets, resolve_data_dir, train_val_split
from codefusion.retrieval import TfidfRetriever

SEP = " ### "


def nearest(ret: TfidfRetriever, nl: str, max_rank: int) -> list[str]:
    """The programs of ranks 1..max_rank, distinct, nearest first (the last one found repeated, when fewer are
    distinct): searched once per row for every copy."""
    found = [code for code, _ in ret.search(nl, max_rank)]
    return found + found[-1:] * (max_rank - len(found))


def nearest_other(ret: TfidfRetriever, ids: list[str], nl: str, exclude_id: str) -> str:
    """The program of the most similar indexed row whose ID is not exclude_id (never its own answer)."""
    sims = ret.scores(nl)
    return next(ret.codes[i] for i in np.argsort(-sims, kind="stable") if ids[i] != exclude_id)


def main(src: str, out: str, max_rank: int = 5) -> None:
    src, out = resolve_data_dir(src), Path(out)
    full = load_benchmark("bash", "train", src)
    train, val = train_val_split(full)
    val_ids, train_ids = {e.id for e in val}, [e.id for e in train]
    fit_train, fit_full = TfidfRetriever.from_examples(train), TfidfRetriever.from_examples(full)
    raw = json.loads((src / "Benchmarks" / BENCHMARK_FILES["bash"]).read_text(encoding="utf-8"))
    snippets = [metrics.bash_any_template(s) for s in load_snippets("bash", src)]
    template = metrics.bash_any_template

    def augmented(nl: str, program: str) -> str:
        return nl.strip() + SEP + template(program)

    def usable(row) -> bool:
        return all(isinstance(row.get(f), str) and row[f].strip() for f in ("NL Utterance", "Code"))

    train_rows = {}   # rank-independent: a train-slice row's prompt is the same in every copy
    for i, row in enumerate(raw["train"]):
        if usable(row) and str(row.get("ID", i)) not in val_ids:
            nb = nearest_other(fit_train, train_ids, row["NL Utterance"].strip(), str(row.get("ID", i)))
            train_rows[i] = dict(row, **{"NL Utterance": augmented(row["NL Utterance"], nb)})

    def write(folder: Path, bench: dict) -> None:
        (folder / "Benchmarks").mkdir(parents=True, exist_ok=True)
        (folder / "Pretraining Data").mkdir(parents=True, exist_ok=True)
        (folder / "Benchmarks" / BENCHMARK_FILES["bash"]).write_text(json.dumps(bench), encoding="utf-8")
        (folder / "Pretraining Data" / SNIPPET_FILES["bash"]).write_text("\n".join(snippets) + "\n", encoding="utf-8")

    def neighbours(ret: TfidfRetriever, row) -> list[str] | None:
        nl = row.get("NL Utterance")
        return nearest(ret, nl.strip(), max_rank) if isinstance(nl, str) and nl.strip() else None

    val_near = {i: neighbours(fit_train, row) for i, row in enumerate(raw["train"]) if i not in train_rows and usable(row)}
    test_near = [neighbours(fit_full, row) for row in raw["test"]]
    for rank in range(1, max_rank + 1):
        rows = []
        for i, row in enumerate(raw["train"]):
            if i in train_rows:
                rows.append(train_rows[i])
            elif i in val_near:   # a val row: the retrieval baseline's rank-th program
                rows.append(dict(row, **{"NL Utterance": augmented(row["NL Utterance"], val_near[i][rank - 1])}))
            else:
                rows.append(row)
        test = [row if near is None else dict(row, **{"NL Utterance": augmented(row["NL Utterance"], near[rank - 1])})
                for row, near in zip(raw["test"], test_near)]
        write(out / f"eval_rank{rank}", {"train": rows, "test": test})
        if rank == 1:   # training copy: every train row (val slice too, for a comparable val loss) a template
            write(out / "train", {"train": [dict(r, Code=template(r["Code"]) + "\n") if usable(r) else r for r in rows],
                                  "test": test})
    print(f"{len(train_rows)} augmented train rows, {len(val)} val, {len(raw['test'])} test, ranks 1-{max_rank} in {out}")


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__.strip().splitlines()[3].strip())
    main(*sys.argv[1:3], *(int(a) for a in sys.argv[3:]))
