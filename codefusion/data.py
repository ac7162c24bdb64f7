"""The paper's released data, read in its upstream layout.

A data folder looks like microsoft/prose-benchmarks' `CodeFusion/` directory:

    DIR/Benchmarks/{Python,Bash,CFRule}Benchmarks.json   {"train": [...], "test": [...]}
    DIR/Pretraining Data/{Bash,ConditionalFormatting}Snippets.txt

It is never bundled with the project: pass `--data-dir DIR` or set `CODEFUSION_DATA`.
Known noise is handled here, once, so every consumer sees clean rows:
null utterances and empty codes are dropped (and counted), surrounding whitespace
(NL2Bash's trailing newlines) is stripped.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import random
import sys
import sysconfig
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from codefusion import LANGUAGES
from codefusion.errors import CodeFusionError

ENV_VAR = "CODEFUSION_DATA"
BENCHMARK_FILES = {"python": "PythonBenchmarks.json", "bash": "BashBenchmarks.json", "cf": "CFRuleBenchmarks.json"}
SNIPPET_FILES = {"bash": "BashSnippets.txt", "cf": "ConditionalFormattingSnippets.txt"}
DOWNLOAD_HINT = (
    "Download the CodeFusion folder of https://github.com/microsoft/prose-benchmarks "
    "(it holds Benchmarks/ and 'Pretraining Data/') and pass its path with --data-dir or the "
    f"{ENV_VAR} environment variable."
)


@dataclass
class Example:
    """One (utterance, code) pair. `data` is the CF rule's table (rows, header first) or None."""

    id: str
    nl: str
    code: str
    data: list | None = None
    labels: list | None = None


@dataclass
class LoadReport:
    kept: int = 0
    dropped: dict = field(default_factory=dict)  # reason -> count

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


def check_language(lang: str) -> str:
    if lang not in LANGUAGES:
        raise CodeFusionError(f"unknown language {lang!r}: choose one of {', '.join(LANGUAGES)}")
    return lang


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data folder from the argument, else $CODEFUSION_DATA; a clear error if it is not one."""
    raw = data_dir if data_dir not in (None, "") else os.environ.get(ENV_VAR)
    if not raw:
        raise CodeFusionError(f"no data folder given. {DOWNLOAD_HINT}")
    path = Path(raw).expanduser()
    if not (path / "Benchmarks").is_dir():
        raise CodeFusionError(f"{path} is not a CodeFusion data folder: it has no Benchmarks/ subfolder. {DOWNLOAD_HINT}")
    return path


def _parse_table(raw) -> list | None:
    """CF rows store their table as a Python-literal string; parse it without eval."""
    if raw is None or isinstance(raw, list):
        return raw
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return None
    return value if isinstance(value, list) else None


@lru_cache(maxsize=16)
def _read_benchmark(path: str, mtime: float) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            content = json.load(f)
    except json.JSONDecodeError as e:
        raise CodeFusionError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(content, dict) or not all(isinstance(content.get(s), list) for s in ("train", "test")):
        raise CodeFusionError(f"{path} must hold a JSON object with 'train' and 'test' lists")
    return content


def load_benchmark(lang: str, split: str, data_dir=None, report: LoadReport | None = None) -> list[Example]:
    """Rows of the paper's benchmark for `lang` ("train" or "test"), cleaned."""
    check_language(lang)
    if split not in ("train", "test"):
        raise CodeFusionError(f"unknown split {split!r}: the released benchmarks have 'train' and 'test'")
    path = resolve_data_dir(data_dir) / "Benchmarks" / BENCHMARK_FILES[lang]
    if not path.is_file():
        raise CodeFusionError(f"missing benchmark file {path}. {DOWNLOAD_HINT}")
    rows = _read_benchmark(str(path), path.stat().st_mtime)[split]
    report = report if report is not None else LoadReport()
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            report.drop("not an object")
            continue
        nl, code = row.get("NL Utterance"), row.get("Code")
        if not isinstance(nl, str) or not nl.strip():
            report.drop("null or empty utterance")  # 79 train / 23 test CoNaLa rows have no rewritten intent
            continue
        if not isinstance(code, str) or not code.strip():
            report.drop("empty code")  # e.g. CF test id 740
            continue
        out.append(Example(
            id=str(row.get("ID", i)), nl=nl.strip(), code=code.strip(),
            data=_parse_table(row.get("Data")) if lang == "cf" else None,
            labels=_parse_table(row.get("Labels")) if lang == "cf" else None,
        ))
    report.kept += len(out)
    return out


def train_val_split(examples: list[Example], val_fraction: float = 0.05) -> tuple[list[Example], list[Example]]:
    """Hold out a validation slice of train, grouped by ID so that no question leaks across.

    Membership depends only on the ID's hash, so it is the same on every machine and run.
    """
    def bucket(ex: Example) -> float:
        return int(hashlib.sha1(ex.id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF

    train = [e for e in examples if bucket(e) >= val_fraction]
    val = [e for e in examples if bucket(e) < val_fraction]
    return train, val


def load_split(lang: str, split: str, data_dir=None) -> list[Example]:
    """'train' (minus the held-out slice), 'val' (the held-out slice), 'test', or 'train_full'."""
    if split == "test":
        return load_benchmark(lang, "test", data_dir)
    full = load_benchmark(lang, "train", data_dir)
    if split == "train_full":
        return full
    train, val = train_val_split(full)
    if split == "train":
        return train
    if split == "val":
        return val
    raise CodeFusionError(f"unknown split {split!r}: choose train, val, test or train_full")


def _first_occurrences(texts) -> list[str]:
    return list(dict.fromkeys(t for t in texts if t))


def load_snippets(lang: str, data_dir=None, limit: int | None = None, seed: int = 0, transform=None) -> list[str]:
    """Code-only pre-training corpus, deduplicated (the CF file repeats ~3.5k rules 226k times).

    `transform` (e.g. Bash's templating) maps each snippet before deduplication and the seeded draw of `limit`.
    """
    check_language(lang)
    if lang == "python":
        snippets = python_stdlib_statements()
    else:
        path = resolve_data_dir(data_dir) / "Pretraining Data" / SNIPPET_FILES[lang]
        if not path.is_file():
            raise CodeFusionError(f"missing pre-training file {path}. {DOWNLOAD_HINT}")
        with open(path, encoding="utf-8", errors="replace") as f:
            snippets = _first_occurrences(line.strip() for line in f)
    if transform is not None:   # distinct snippets can map to one, so deduplicate again
        snippets = _first_occurrences(transform(s).strip() for s in snippets)
    if limit is not None and len(snippets) > limit:
        snippets = random.Random(seed).sample(snippets, limit)
    return snippets


@lru_cache(maxsize=1)
def python_stdlib_statements(max_chars: int = 200) -> list[str]:
    """Single-line statements from the standard library's own source: Python's pre-training corpus.

    Upstream never released PythonSnippets.txt. We take every simple statement (assignments,
    calls, returns, imports...) that fits on one line, re-rendered with ast.unparse so the style
    matches CoNaLa's one-liners, and deduplicate. Sorted, so the corpus is the same on every run.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    simple = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr, ast.Return, ast.Import, ast.ImportFrom,
              ast.Raise, ast.Assert, ast.Delete)
    out = set()
    for path in sorted(root.glob("*.py")) + sorted(root.glob("*/*.py")):
        if "test" in path.parts[-2:][0] or path.name.startswith("test"):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, simple) and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
                try:
                    text = ast.unparse(node)
                except Exception:  # unparse of exotic nodes: skip, never fail the corpus
                    continue
                if "\n" not in text and 8 <= len(text) <= max_chars:
                    out.add(text)
    if not out:
        raise CodeFusionError(f"found no Python statements under the standard library at {root}")
    return sorted(out)


if __name__ == "__main__":  # quick look: python -m codefusion.data DIR
    d = sys.argv[1] if len(sys.argv) > 1 else None
    for lang in LANGUAGES:
        for split in ("train", "test"):
            r = LoadReport()
            rows = load_benchmark(lang, split, d, r)
            print(lang, split, r.kept, r.dropped)
        print(lang, "snippets", len(load_snippets(lang, d)))
