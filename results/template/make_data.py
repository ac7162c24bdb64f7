"""Write a copy of the CodeFusion data folder whose Bash programs are NL2Bash templates (arguments -> ARG).

The Bash metric compares templates (utilities, flags and structure; every argument a placeholder), so a model
trained on templates spends none of its capacity on file names and patterns, as Tellina (Lin et al., 2018) split
NL2Bash into template prediction and argument filling. Train and snippets are templated; test is copied as is
(the metric templates both sides).

Usage: python results/template/make_data.py SRC_DATA_DIR OUT_DIR
"""
import json
import sys
from pathlib import Path

from codefusion import metrics
from codefusion.data import BENCHMARK_FILES, SNIPPET_FILES, load_snippets, resolve_data_dir
from codefusion.errors import CodeFusionError


def main(src: str, out: str) -> None:
    src, out = resolve_data_dir(src), Path(out)  # a clear error when SRC is not a data folder
    (out / "Benchmarks").mkdir(parents=True, exist_ok=True)
    (out / "Pretraining Data").mkdir(parents=True, exist_ok=True)
    bench = json.loads((src / "Benchmarks" / BENCHMARK_FILES["bash"]).read_text(encoding="utf-8"))
    bench["train"] = [dict(row, Code=metrics.bash_any_template(row["Code"]) + "\n") for row in bench["train"]]
    (out / "Benchmarks" / BENCHMARK_FILES["bash"]).write_text(json.dumps(bench), encoding="utf-8")
    snippets = [metrics.bash_any_template(s) for s in load_snippets("bash", src)]  # the trainer's reader: stripped, deduplicated
    (out / "Pretraining Data" / SNIPPET_FILES["bash"]).write_text("\n".join(snippets) + "\n", encoding="utf-8")
    print(f"{len(bench['train'])} training pairs and {len(snippets)} snippets templated into {out}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    try:
        main(*sys.argv[1:])
    except CodeFusionError as e:
        sys.exit(f"error: {e}")
