"""Retrieve, then rerank (codefusion.rerank): the fusion, both models' scores, and the evaluator's --rerank."""

import json

import pytest
import torch

from codefusion import metrics, rerank
from codefusion.data import load_split
from codefusion.errors import CodeFusionError
from codefusion.evaluate import main
from codefusion.retrieval import TfidfRetriever
from codefusion.sampler import load_model

from conftest import train_tiny


@pytest.fixture(scope="module")
def bash_model(tiny_bash_checkpoint):
    return load_model(tiny_bash_checkpoint)


@pytest.fixture(scope="module")
def bash_ar(data_dir, tmp_path_factory):
    folder = train_tiny(data_dir, tmp_path_factory.mktemp("ar"), "bash", 30, "--architecture", "autoregressive")
    return load_model(folder)


def test_fusion_weighs_the_two_orders():
    sims, scores = [0.9, 0.5, 0.4, 0.1], [-9.0, -1.0, -5.0, -0.5]
    assert [j for j, _ in rerank.fuse(sims, scores, 0)] == [0, 1, 2, 3]        # TF-IDF's order
    assert [j for j, _ in rerank.fuse(sims, scores, 1e6)] == [3, 1, 2, 0]      # the model's
    fused = rerank.fuse(sims, scores, 1.0)
    assert [v for _, v in fused] == sorted((v for _, v in fused), reverse=True)
    assert sorted(j for j, _ in fused) == [0, 1, 2, 3]
    # ties (equal z-scores) keep the pool's order; a pool of one is itself
    assert [j for j, _ in rerank.fuse([0.5, 0.5, 0.5], [-1.0, -1.0, -1.0])] == [0, 1, 2]
    assert [j for j, _ in rerank.fuse([0.3], [-2.0])] == [0]


def test_codefusion_score_depends_on_the_prompt_and_program_alone(bash_model):
    prompt = "find all text files in the current directory"
    a, b, c = "find . -name '*.txt'", "ls -la", "grep -r foo ."
    first = rerank.program_scores(bash_model, prompt, [a, b, c])
    again = rerank.program_scores(bash_model, prompt, [c, a])
    assert again == pytest.approx([first[2], first[0]], abs=1e-5)
    assert all(s < 0 for s in first)                                           # minus a cross-entropy
    other = rerank.program_scores(bash_model, "remove the empty directories", [a])
    assert other[0] != pytest.approx(first[0], abs=1e-6)
    assert rerank.program_scores(bash_model, prompt, []) == []


def test_codefusion_prefers_real_programs_to_token_soup(bash_model, data_dir):
    # (the AR score is a log-likelihood, pinned to the model's own loss below; a 30-step model's differs by length)
    train = load_split("bash", "train", data_dir)[:8]
    soup = " ".join(["}}}} ;;;; ~~~~ @@@@ %%%% ^^^^ ]]]] [[[[ ???? ````"] * 10)   # as long as a program may be
    scores = [rerank.program_scores(bash_model, ex.nl, [ex.code, soup]) for ex in train]
    assert sum(real > other for real, other in scores) >= 7


def test_ar_score_is_the_teacher_forced_log_likelihood(bash_ar):
    prompt, program = "list files", "ls -l /tmp"
    score = rerank.program_scores(bash_ar, prompt, [program])[0]
    ids = rerank._code_ids(bash_ar, [program])
    memory, pad_mask, _ = bash_ar.encode_prompts([prompt])
    with torch.no_grad():
        mean_ce = float(bash_ar.loss(ids, memory, pad_mask).ce)
    n_tokens = int((ids != bash_ar.config.pad_token_id).sum()) + 1            # and the end token
    assert score == pytest.approx(-mean_ce * n_tokens, rel=1e-4)


def test_reranker_refuses_bad_settings(bash_model, tiny_cf_checkpoint):
    with pytest.raises(CodeFusionError, match="0 or more"):
        rerank.Reranker(bash_model, weight=-0.5)
    with pytest.raises(CodeFusionError, match="Bash"):
        rerank.Reranker(load_model(tiny_cf_checkpoint), templates=True)


def test_pool_holds_one_program_per_template(data_dir):
    retriever = TfidfRetriever.from_examples(load_split("bash", "train", data_dir))
    found = rerank.pool(retriever, "bash", "find all files named core and delete them")
    keys = [metrics.program_key("bash", code) for code, _ in found]
    assert len(found) == rerank.POOL and len(set(keys)) == len(keys)
    assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)
    assert found[0][0] == retriever.search("find all files named core and delete them", 1)[0][0]


def test_evaluator_reranks_the_retrieval_pool(tiny_bash_checkpoint, tmp_path, data_dir):
    def evaluate(*extra):
        out = tmp_path / "r.json"
        assert main(["--lang", "bash", "--split", "val", "--limit", "6", "--baseline", "retrieval", "--data-dir",
                     str(data_dir), "--out", str(out), *extra]) == 0
        return json.loads(out.read_text(encoding="utf-8"))

    retriever = TfidfRetriever.from_examples(load_split("bash", "train", data_dir))
    tasks = load_split("bash", "val", data_dir)[:6]
    as_pool = evaluate("--rerank", str(tiny_bash_checkpoint), "--rerank-weight", "0")
    for task, ex in zip(as_pool["tasks"], tasks):     # weight 0: the pool's own order
        assert [c["text"] for c in task["candidates"]] == [c for c, _ in rerank.pool(retriever, "bash", ex.nl)[:5]]
    fused = evaluate("--rerank", str(tiny_bash_checkpoint), "--rerank-templates")
    assert fused["system"].startswith("retrieval (TF-IDF over train), nearest 20 reranked by CodeFusion fused with "
                                      "TF-IDF (weight 1.5, scoring templates)")
    assert fused["config"]["rerank_weight"] == 1.5 and fused["config"]["weights"]
    for task, ex in zip(fused["tasks"], tasks):
        pool = [c for c, _ in rerank.pool(retriever, "bash", ex.nl)]
        texts = [c["text"] for c in task["candidates"]]
        assert len(texts) == 5 and set(texts) <= set(pool)
        assert [c["score"] for c in task["candidates"]] == sorted((c["score"] for c in task["candidates"]),
                                                                    reverse=True)


def test_a_templated_reranker_scores_the_templates_the_model_trained_on(tiny_bash_checkpoint, monkeypatch):
    """--bash-templates trains on `bash.template` (stripped): a trailing quoted space must not reach the scorer."""
    seen = []
    monkeypatch.setattr(rerank, "program_scores", lambda model, prompt, texts: seen.extend(texts) or [0.0] * len(texts))
    ranked = rerank.Reranker(load_model(tiny_bash_checkpoint), templates=True)(
        "number the lines", [("grep -v '^2 ' file | cut -d' ' -f2- | nl -w1 -s' '", 0.5), ("ls /tmp", 0.2)])
    assert seen == ["grep -v ARG ARG | cut -d  -f2- | nl -w1 -s", "ls ARG"]
    assert [code for code, _ in ranked] == ["grep -v '^2 ' file | cut -d' ' -f2- | nl -w1 -s' '", "ls /tmp"]
