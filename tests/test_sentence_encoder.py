"""A frozen pre-trained reader of the prompt beside E (`--sentence-encoder`, model.SentenceEncoder), with a tiny
randomly initialised BERT saved to a folder standing in for all-MiniLM-L6-v2."""

from __future__ import annotations

import json

import pytest
import torch

from codefusion.config import preset
from codefusion.errors import CodeFusionError
from codefusion.model import CodeFusion

from conftest import save_tiny_bert, train_tiny

WORDS = "find all files in the current directory list remove copy print count lines of text".split()


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("tinybert"), WORDS, hidden_size=24)


def tiny_model(**kw) -> CodeFusion:
    """A tiny Bash model (E's BPE fitted on WORDS), eval mode, drawn from seed 0."""
    from codefusion.tokenization import train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer([" ".join(WORDS)] * 4 + ["ls -l | wc -l"], vocab_size=300)
    torch.manual_seed(0)
    model = CodeFusion(preset("tiny", "bash", vocab_size=len(tokenizer), **kw)).eval()
    model.tokenizer = tokenizer
    return model


def test_its_states_follow_e_s_and_are_never_copied(bert_dir):
    plain, model = tiny_model(copy_head=True), tiny_model(copy_head=True, sentence_encoder=str(bert_dir))
    prompts = ["find all files", "count lines of text in the current directory"]
    e_s, e_pad, e_ids = plain.encode_prompts(prompts)
    memory, pad, ids = model.encode_prompts(prompts)
    n = e_s.shape[1]
    assert torch.equal(memory[:, :n], e_s) and torch.equal(pad[:, :n], e_pad) and torch.equal(ids[:, :n], e_ids)
    # [CLS] + WordPiece tokens + [SEP] of each prompt, width N's, the shorter one padded; nothing there to copy
    assert memory.shape[1] == n + 2 + 8 and memory.shape[2] == model.config.width
    assert pad[:, n:].sum(-1).tolist() == [5, 0]
    assert (ids[:, n:] == model.config.pad_token_id).all()
    # the null prompt of guidance reads nothing of it
    _, null_pad, _ = model.encode_null_prompts(2)
    assert null_pad[:, 1:].all() and not null_pad[:, 0].any()
    # the frozen encoder is neither trained nor saved: only its projection is
    names = [k for k, p in model.named_parameters()]
    assert [k for k in names if k.startswith("sentence.")] == ["sentence.proj.weight", "sentence.proj.bias"]
    assert model.num_parameters_by_part()["sentence encoder projection"] == 24 * 64 + 64


def test_states_are_cached_and_do_not_depend_on_the_batch(bert_dir, monkeypatch):
    model = tiny_model(sentence_encoder=str(bert_dir))
    model.sentence.states(["find all files"])
    assert not model.sentence.cache, "kept in eval mode: a server would keep every request"
    model.train()
    alone = model.sentence.states(["find all files"])[0]
    model.sentence.cache.clear()
    batched = model.sentence.states(["count lines of text in the current directory", "find all files"])[1]
    torch.testing.assert_close(alone, batched, rtol=1e-5, atol=1e-5)
    encoder = model.sentence.frozen[0]
    monkeypatch.setattr(encoder, "forward", lambda *a, **k: pytest.fail("a cached prompt was encoded again"))
    assert torch.equal(model.sentence.states(["find all files"])[0], batched)
    # past the limit new prompts are encoded but not kept (pre-training's masked snippets are all different)
    monkeypatch.undo()
    monkeypatch.setattr(type(model.sentence), "CACHE_LIMIT", 2)
    model.sentence.states(["print text", "copy all files"])
    assert len(model.sentence.cache) == 2 and "print text" not in model.sentence.cache


def test_trains_saves_and_loads_with_a_fresh_projection_from_init(data_dir, tmp_path, bert_dir):
    from safetensors import safe_open
    from safetensors.torch import load_file

    from codefusion.bundle import model_card, published_files
    from codefusion.sampler import generate

    base = train_tiny(data_dir, tmp_path / "base", "bash", 4)
    run = train_tiny(data_dir, tmp_path / "run", "bash", 4, "--stage", "finetune", "--init", str(base),
                     "--sentence-encoder", str(bert_dir), "--save-fp16")
    model, before = CodeFusion.from_pretrained(run), CodeFusion.from_pretrained(base)
    assert model.config.sentence_encoder == "sentence_encoder"
    saved = load_file(str(run / "model.safetensors"))
    assert set(saved) - set(load_file(str(base / "model.safetensors"))) == {"sentence.proj.weight", "sentence.proj.bias"}
    # the projection was trained (it started where torch's init put it; any step moves it)
    assert float(saved["sentence.proj.bias"].abs().sum()) > 0
    assert not torch.equal(model.denoiser.in_proj.weight, before.denoiser.in_proj.weight)
    cands = generate(model, ["find all files", "count lines"], k=2, steps=3, seed=0)
    assert [len(c) for c in cands] == [2, 2]
    again = generate(CodeFusion.from_pretrained(run), ["find all files", "count lines"], k=2, steps=3, seed=0)
    assert [[c.token_ids for c in row] for row in again] == [[c.token_ids for c in row] for row in cands]
    # the checkpoint carries its reader (16-bit with --save-fp16), names it by that copy and publishes it
    assert json.loads((run / "config.json").read_text())["sentence_encoder"] == "sentence_encoder"
    assert sorted(f for f in published_files(run) if f.startswith("sentence_encoder/")) == sorted(
        f"sentence_encoder/{f.name}" for f in (run / "sentence_encoder").iterdir())
    with safe_open(str(run / "sentence_encoder" / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    assert "frozen pre-trained sentence encoder, saved with the weights in `sentence_encoder/`" in model_card(run, "you/x")


def test_bad_sentence_encoders_are_refused_clearly(tmp_path, data_dir, bert_dir, capsys):
    from codefusion.train import main

    with pytest.raises(CodeFusionError, match="could not load the sentence encoder .*nowhere"):
        CodeFusion(preset("tiny", "bash", sentence_encoder=str(tmp_path / "nowhere")))
    run = train_tiny(data_dir, tmp_path / "with", "bash", 2, "--sentence-encoder", str(bert_dir))
    capsys.readouterr()
    assert main(["--lang", "bash", "--preset", "tiny", "--stage", "finetune", "--max-steps", "1", "--data-dir",
                 str(data_dir), "--out", str(tmp_path / "again"), "--init", str(run),
                 "--sentence-encoder", str(tmp_path / "other")]) == 2
    assert "already reads prompts with the sentence encoder saved with it: drop --sentence-encoder" in capsys.readouterr().err


def test_the_ar_baseline_reads_with_it_too_for_equal_inputs(data_dir, tmp_path, bert_dir):
    """The comparison's other side: the AR model's decoder cross-attends to its encoder's states and the same
    frozen reader's, projected to its (narrower) width; decoding starts from exactly what training read."""
    from transformers import DynamicCache, EncoderDecoderCache

    from codefusion.autoregressive import ARBaseline
    from codefusion.model import load_folder

    run = train_tiny(data_dir, tmp_path / "ar", "bash", 3, "--architecture", "autoregressive",
                     "--sentence-encoder", str(bert_dir))
    model = load_folder(run).eval()
    assert isinstance(model, ARBaseline) and model.config.sentence_encoder == "sentence_encoder"
    assert model.num_parameters_by_part()["sentence encoder projection"] == 24 * 64 + 64   # to encoder_width 64
    prompts = ["find all files", "count lines of text in the current directory"]
    memory, pad, _ = model.encode_prompts(prompts)
    ids, attn = model.tokenize_prompts(prompts)
    n = ids.shape[1]
    torch.testing.assert_close(memory[:, :n], model.encode(ids, attn))
    assert memory.shape == (2, n + 10, model.config.encoder_width) and pad[:, n:].sum(-1).tolist() == [5, 0]
    beams = model.generate_candidates(prompts, k=2, seed=0)
    again = load_folder(run).eval().generate_candidates(prompts, k=2, seed=0)
    assert [[c.token_ids for c in row] for row in again] == [[c.token_ids for c in row] for row in beams]
    # without a reader the states handed to generate are the encoder's own: the same beams as from input ids
    plain = load_folder(train_tiny(data_dir, tmp_path / "plain", "bash", 1, "--architecture", "autoregressive")).eval()
    ids, attn = plain.tokenize_prompts(prompts)
    out = plain.t5.generate(input_ids=ids, attention_mask=attn, num_beams=2, num_return_sequences=2, do_sample=False,
                            past_key_values=EncoderDecoderCache(DynamicCache(), DynamicCache()),
                            max_new_tokens=plain.config.code_len + 1)
    cands = plain.generate_candidates(prompts, k=2, seed=0)
    eos = plain.eos_token_id
    expected = sorted(tuple(t for t in (r[: r.index(eos)] if eos in r else r) if t != plain.config.pad_token_id)
                      for r in out[:, 1:].tolist())
    assert sorted(tuple(c.token_ids) for row in cands for c in row) == expected
