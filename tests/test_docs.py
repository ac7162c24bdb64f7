"""The READMEs point at files (reports, figures, scripts) as evidence: every one they name must exist in the repo."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ["README.md", "results/README.md"]
# A repository path in a code span: `results/vote/bash_vote40_val.json`, `assets/edit_distance_{cf,bash}.png`.
CODE_PATH = re.compile(r"`((?:results|checkpoints|assets|tests|codefusion|\.ci)/[^`\s]*)`")
LINK = re.compile(r"\]\(([^)#\s]+)\)")


def expand_braces(path: str) -> list[str]:
    """Shell-style {a,b} alternatives, as the READMEs write families of reports."""
    m = re.search(r"\{([^{}]*)\}", path)
    if not m:
        return [path]
    return [p for alt in m.group(1).split(",") for p in expand_braces(path[:m.start()] + alt + path[m.end():])]


def named_paths(text: str) -> list[str]:
    out = []
    for m in CODE_PATH.finditer(text):
        path = m.group(1).split("::")[0].rstrip(".,;:")   # a pytest id names its file
        if "<" in path:                                     # a template such as checkpoints/<lang>/
            continue
        out += expand_braces(path)
    return out


def exists(path: str) -> bool:
    # A trailing * or a stem such as results/copy_head/cf_copy2_trainseed0_test_seed* names a family of files.
    return any(ROOT.glob(path)) or any(ROOT.glob(path.rstrip("*") + "*"))


def test_brace_expansion_and_path_finding():
    assert expand_braces("a/{x,y}_{1,2}.json") == ["a/x_1.json", "a/x_2.json", "a/y_1.json", "a/y_2.json"]
    assert named_paths("see `results/a.json`, `tests/t.py::test_x` and `checkpoints/<lang>/`") == [
        "results/a.json", "tests/t.py"]


@pytest.mark.parametrize("doc", DOCS)
def test_every_path_a_readme_names_exists(doc):
    text = (ROOT / doc).read_text(encoding="utf-8")
    paths = named_paths(text)
    assert len(paths) > 10, "the pattern no longer finds the README's paths"
    missing = sorted({p for p in paths if not exists(p)})
    assert not missing, f"{doc} names files that are not in the repo: {missing}"


@pytest.mark.parametrize("doc", DOCS)
def test_every_relative_link_in_a_readme_resolves(doc):
    base = (ROOT / doc).parent
    text = (ROOT / doc).read_text(encoding="utf-8")
    links = [t for t in LINK.findall(text) if "://" not in t]
    assert links, "no relative links found"
    missing = [t for t in links if not (base / t).exists()]
    assert not missing, f"{doc} links to missing files: {missing}"
