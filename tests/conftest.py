"""Shared fixtures: the data folder and tiny checkpoints trained on the fly (seconds each)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("CODEFUSION_DATA") or ROOT.parent / "shared" / "data" / "codefusion")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "Benchmarks").is_dir():
        pytest.fail(f"test data not found at {DATA_DIR}: set CODEFUSION_DATA to the CodeFusion data folder")
    return DATA_DIR


def make_chatty(src: Path, out: Path) -> Path:
    """A copy of a tiny checkpoint whose head never picks a special token (pad, bos, eos, unk, mask):
    every candidate is then a full-length, non-empty program (few-step tiny models mostly predict padding)."""
    from safetensors.torch import load_file, save_file

    out.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file():
            shutil.copy(f, out / f.name)
    state = load_file(str(out / "model.safetensors"))
    state["head.bias"][:5] = -1e4
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def save_tiny_bert(out: Path, words: list[str], hidden_size: int, seed: int = 0) -> Path:
    """A randomly initialised one-layer BERT with a WordPiece vocabulary of `words` (and BERT's specials), saved as
    Transformers saves a model: the stand-in for all-MiniLM-L6-v2 in the sentence-encoder tests."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    torch.manual_seed(seed)
    BertModel(BertConfig(vocab_size=5 + len(words), hidden_size=hidden_size, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=2 * hidden_size, max_position_embeddings=64)).save_pretrained(out)
    BertTokenizerFast(str(out / "vocab.txt")).save_pretrained(out)
    return out


def run_python(*args: str, env: dict | None = None, stdin: str | None = None,
               timeout: int = 300) -> subprocess.CompletedProcess:
    """`python ARGS` in a fresh process from the repository root, importing this checkout's codefusion, one torch
    thread; `env` adds to (or overrides) this process's environment."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=full_env, input=stdin,
                          timeout=timeout, cwd=ROOT)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_tiny(data_dir: Path, out: Path, lang: str, steps: int = 30, *extra: str) -> Path:
    from codefusion.train import main

    rc = main(["--lang", lang, "--preset", "tiny", "--max-steps", str(steps), "--data-dir", str(data_dir),
               "--out", str(out), "--quiet", "--snippet-limit", "500", "--eval-every", "1000", *extra])
    assert rc == 0
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint_factory(data_dir, tmp_path_factory):
    """tiny_checkpoint_factory(lang) -> folder of a tiny model trained for a few steps (cached per language)."""
    cache: dict[str, Path] = {}

    def make(lang: str) -> Path:
        if lang not in cache:
            cache[lang] = train_tiny(data_dir, tmp_path_factory.mktemp(f"tiny_{lang}"), lang)
        return cache[lang]

    return make


@pytest.fixture(scope="session")
def tiny_bash_checkpoint(tiny_checkpoint_factory) -> Path:
    return tiny_checkpoint_factory("bash")


@pytest.fixture(scope="session")
def tiny_cf_checkpoint(tiny_checkpoint_factory) -> Path:
    return tiny_checkpoint_factory("cf")
