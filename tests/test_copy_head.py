"""H's copy path (`--copy-head on`): a pointer over the prompt beside the vocabulary."""

from __future__ import annotations

import pytest
import torch

from codefusion.config import preset
from codefusion.errors import CodeFusionError
from codefusion.loss import codefusion_loss
from codefusion.model import CodeFusion, token_classes

from conftest import train_tiny


def copy_model(**kw) -> CodeFusion:
    torch.manual_seed(0)
    return CodeFusion(preset("tiny", "cf", vocab_size=64, copy_head=True, **kw)).eval()


def test_token_classes_join_a_word_with_its_spaced_and_cased_forms():
    from codefusion.tokenization import train_bpe_tokenizer

    tok = train_bpe_tokenizer(["contain Bull", "TextContains(Bull)", "a bull market", "Bull"] * 50, vocab_size=300)
    classes = token_classes(tok, 300)
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("ĠBull", "Bull", "Ġbull")}
    assert all(i != tok.unk_token_id for i in ids.values()), ids
    assert classes[ids["ĠBull"]] == classes[ids["Bull"]] == classes[ids["Ġbull"]] == min(ids.values())
    for special in tok.all_special_ids:   # never merged: pad must stay pad
        assert classes[special] == special
    assert classes[tok.convert_tokens_to_ids("Ġ")] == tok.convert_tokens_to_ids("Ġ")   # bare whitespace: its own
    assert (classes[len(tok):] == torch.arange(len(tok), 300)).all()   # ids the tokenizer lacks: their own


def test_copy_head_gives_log_probabilities_and_copies_within_a_class():
    model = copy_model()
    head = model.pointer
    head.classes[[40, 41]] = 40   # 40 and 41: one word, spaced and not
    torch.manual_seed(1)
    b, n, s, v, w = 3, 4, 6, 64, model.config.width
    logits, hidden, memory = torch.randn(b, n, v), torch.randn(b, n, w), torch.randn(b, s, w)
    prompt = torch.tensor([[41, 9, 9, 9, 9, 9], [41, 12, 13, 0, 0, 0], [0] * 6])
    logp = head(logits, hidden, memory, prompt)
    assert torch.allclose(logp.logsumexp(-1), torch.zeros(b, n), atol=1e-5)
    assert torch.allclose(logp[2], logits[2].log_softmax(-1)), "a row of pads has nothing to copy: H only generates"
    # Gate fully open and every position pointing at prompt token 41: all mass on its class {40, 41}, split by
    # H's own logits within the class.
    with torch.no_grad():
        head.gate.bias.fill_(50.0)
    p = head(logits, hidden, memory, torch.full((1, s), 41).expand(b, s).clone())[:2].exp()
    assert torch.allclose(p[..., 40] + p[..., 41], torch.ones(2, n), atol=1e-4)
    assert torch.allclose(p[..., 40] / p[..., 41], (logits[:2, :, 40] - logits[:2, :, 41]).exp(), rtol=1e-3)
    # The pointer's choice moves with D's states: another hidden state, another split over the prompt.
    mixed = head(logits, hidden, memory, prompt)[0].exp()
    assert (mixed[:, 9] > 0.01).all() and not torch.allclose(mixed, head(logits, -hidden, memory, prompt)[0].exp())


def test_copy_head_runs_in_float32_under_mixed_precision():
    """`--mixed-precision bf16` trains under autocast: the copy path's scatters need one dtype and its log-sum-exp
    over the vocabulary needs float32, so it must give exactly what it gives without autocast."""
    model = copy_model()
    head = model.pointer
    torch.manual_seed(1)
    logits, hidden, memory = torch.randn(2, 4, 64), torch.randn(2, 4, model.config.width), torch.randn(2, 6, model.config.width)
    prompt = torch.tensor([[41, 9, 9, 12, 0, 0], [7, 8, 9, 10, 11, 12]])
    plain = head(logits, hidden, memory, prompt)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = head(logits.bfloat16(), hidden.bfloat16(), memory, prompt)
    assert mixed.dtype == torch.float32
    # the inputs were rounded to bfloat16 (8 bits) on the way in; the head itself adds no rounding of its own
    again = head(logits.bfloat16().float(), hidden.bfloat16().float(), memory, prompt)
    assert torch.equal(mixed, again)
    assert torch.allclose(mixed, plain, atol=0.1)


def _copy_task(gen, n, low, high, prompt_len=6, code_len=8):
    """Prompts of filler tokens with a marker (5) before one target token; the program is that token alone."""
    prompt = torch.randint(6, 21, (n, prompt_len), generator=gen)
    pos = torch.randint(1, prompt_len, (n,), generator=gen)
    target = torch.randint(low, high, (n,), generator=gen)
    rows = torch.arange(n)
    prompt[rows, pos - 1], prompt[rows, pos] = 5, target
    code = torch.zeros(n, code_len, dtype=torch.long)
    code[:, 0] = target
    return prompt, code


def _train_and_read(copy_head: bool, steps: int = 300) -> dict[str, float]:
    torch.manual_seed(0)
    model = CodeFusion(preset("tiny", "cf", vocab_size=64, code_len=8, copy_head=copy_head)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):   # targets 21..42 only
        prompt, code = _copy_task(gen, 32, 21, 43)
        loss = codefusion_loss(model, code, model.encode(prompt, torch.ones_like(prompt)), None, prompt_ids=prompt)
        opt.zero_grad()
        loss.total.backward()
        opt.step()
    model.eval()
    acc = {}
    with torch.no_grad():
        for name, (low, high) in {"seen": (21, 43), "unseen": (43, 64)}.items():
            prompt, code = _copy_task(torch.Generator().manual_seed(1), 200, low, high)
            memory = model.encode(prompt, torch.ones_like(prompt))
            x_t = torch.randn(200, 8, model.config.embed_dim, generator=torch.Generator().manual_seed(2))
            t = torch.full((200,), model.config.diffusion_steps - 1)   # pure noise: only the prompt names the token
            x0 = model.denoise(x_t, t, memory, None)
            x0 = model.denoise(x_t, t, memory, None, x0)
            read = model.read(x0, memory, None, prompt if copy_head else None)[1].argmax(-1)
            acc[name] = (read[:, 0] == code[:, 0]).float().mean().item()
    return acc


def test_copy_head_writes_tokens_never_seen_as_targets():
    """Without the copy head a token that never was a training target has no trained output: 0% of them are
    written. With it, the same model learns *where* the token is and writes most unseen ones."""
    plain, copying = _train_and_read(False), _train_and_read(True)
    assert plain["seen"] > 0.95 and copying["seen"] > 0.95
    assert plain["unseen"] < 0.02, plain
    assert copying["unseen"] > 0.5, copying


def test_copy_head_trains_saves_and_samples_end_to_end(data_dir, tmp_path):
    from codefusion.probe import token_accuracy
    from codefusion.sampler import generate

    run = train_tiny(data_dir, tmp_path / "copy", "cf", 12, "--copy-head", "on")
    model = CodeFusion.from_pretrained(run)
    assert model.config.copy_head and model.num_parameters_by_part()["H copy path"] > 0
    assert torch.equal(model.pointer.classes, token_classes(model.tokenizer, model.config.vocab_size))
    assert (model.pointer.classes != torch.arange(model.config.vocab_size)).sum() > 50, "the trainer set the classes"
    cands = generate(model, ["Color cells that contain Bull", "Highlight values above 5"], k=2, steps=3, seed=0)
    assert [len(c) for c in cands] == [2, 2] and all(c.score <= 0 for row in cands for c in row)
    rows = token_accuracy(model, ["Color cells that contain Bull", "Highlight values above 5"],
                          ["TextContains(Bull)", "GreaterThan(5)"], timesteps=[600])
    assert 0 <= rows[0]["prompt"] <= 100 and rows[0]["tokens"] > 0
    x0 = torch.zeros(1, model.config.code_len, model.config.embed_dim)
    with pytest.raises(CodeFusionError, match="prompt_ids"):
        model.read(x0, torch.zeros(1, 3, model.config.width))


def test_copy_head_trains_in_bfloat16(data_dir, tmp_path, monkeypatch, capsys):
    """The bundled CF recipe with `--mixed-precision bf16` (the faster route on a CPU with bfloat16 instructions,
    see README: Speed): it crashed in the copy path's scatter before H ran that path in float32. On a CPU that emulates bfloat16 (here made to
    look like one) the run still trains, after a warning that says how much slower it is and what to do."""
    import json

    from accelerate.state import AcceleratorState

    from codefusion import trainer

    monkeypatch.setattr(trainer, "cpu_low_precision_slowdown", lambda dtype: 40.0 if dtype == torch.bfloat16 else 1.0)
    # Accelerate fixes one precision per process; the other tests in this process train in float32.
    AcceleratorState._reset_state()
    try:
        run = train_tiny(data_dir, tmp_path / "bf16", "cf", 6, "--copy-head", "on", "--copy-augment", "0.5",
                         "--mixed-precision", "bf16", "--eval-every", "6")
    finally:
        AcceleratorState._reset_state()
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    losses = [r["total"] for r in records if "total" in r]
    assert len(losses) == 6 and all(0 < x < 100 for x in losses)
    assert [r["val_loss"] for r in records if "val_loss" in r][0] > 0
    assert CodeFusion.from_pretrained(run).config.copy_head
    err = capsys.readouterr().err
    assert "no bfloat16 arithmetic" in err and "40x as long as in float32" in err and "Leave out --mixed-precision" in err


def test_emulated_precision_is_measured_and_warned_about_only_where_it_applies():
    from codefusion.trainer import EMULATED_SLOWDOWN, cpu_low_precision_slowdown, emulated_precision_warning

    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    ratio = cpu_low_precision_slowdown(torch.bfloat16, size=32, reps=3)
    assert 0 < ratio < float("inf")                       # a measurement on this CPU, whichever kind it is
    # The trainer measures after seeding: the run's own draws (init, timesteps, noise) must not move. From session
    # 38 to 48 they did, and the Python recipe stopped repeating the checkpoint it had bundled.
    assert torch.equal(torch.rand(3), expected)
    cpu, calls = torch.device("cpu"), []

    def slow(dtype):
        calls.append(dtype)
        return 52.0

    assert emulated_precision_warning(None, cpu, slow) is None and emulated_precision_warning("no", cpu, slow) is None
    assert emulated_precision_warning("bf16", torch.device("cuda"), slow) is None
    assert calls == []                                     # nothing measured where autocast is off or on a GPU
    assert emulated_precision_warning("bf16", cpu, lambda dtype: EMULATED_SLOWDOWN) is None   # fast enough: quiet
    assert emulated_precision_warning("bf16", cpu, lambda dtype: 0.6) is None
    assert "52x" in emulated_precision_warning("bf16", cpu, slow) and calls == [torch.bfloat16]
    assert "no float16 arithmetic" in emulated_precision_warning("fp16", cpu, slow) and calls[-1] == torch.float16


def test_copy_head_is_refused_where_it_has_no_meaning(tmp_path):
    from codefusion.train import main

    with pytest.raises(CodeFusionError, match="decoder_layers"):
        preset("tiny", "cf", copy_head=True, decoder_layers=0)
    with pytest.raises(SystemExit):
        main(["--lang", "cf", "--out", str(tmp_path / "x"), "--copy-head", "on", "--architecture", "autoregressive"])


# --- copy augmentation (train --copy-augment) -----------------------------------------------------------
@pytest.mark.parametrize("lang, nl, code, kept", [
    ("cf", "Color cells that contain Bull or Bear", "OR(TextContains(Bull), TextContains(Bear))", ["OR", "TextContains"]),
    ("cf", "Highlight cells between 25 and 250 in column 2", "Between(c[2], 25, 250)", ["Between", "c[2]"]),
    ("python", "normalize a pandas dataframe `df` by row", "df.div(df.sum(axis=1), axis=0)", [".div(", ".sum(axis=1)"]),
    ("python", "prepend string 'hello' to all items in list 'a'", "['hello{0}'.format(i) for i in a]", [".format(i) for i in "]),
    ("bash", "Use 'top' to monitor process 'a.out'", "top -b -p `pidof a.out`", ["top -b -p `pidof "]),
])
def test_copy_augmentation_renames_spelt_literals_in_request_and_program_alike(lang, nl, code, kept):
    import random

    from codefusion.augment import LITERALS, augment_pair
    from codefusion.metrics import is_valid

    seen = set()
    for seed in range(5):
        new_request, new_code = augment_pair(lang, nl, code, random.Random(seed), ["river", "stone", "lamp"])
        assert new_code != code and new_request != nl
        assert all(part in new_code for part in kept), new_code   # operators, columns, methods, utilities stay
        assert is_valid(lang, new_code) == is_valid(lang, code)
        # every literal that changed in the program changed the same way in the request
        old = {code[a:b] for a, b in LITERALS[lang](code)}
        new = {new_code[a:b] for a, b in LITERALS[lang](new_code)}
        for fresh in new - old:
            assert fresh in new_request, (fresh, new_request)
        seen.add(new_code)
    assert len(seen) > 1, "the RNG draws the fresh literals"
    assert augment_pair(lang, nl, code, random.Random(3), ["lamp"]) == augment_pair(lang, nl, code, random.Random(3),
                                                                                  ["lamp"])


def test_copy_augmentation_leaves_unspelt_literals_and_keeps_shapes():
    import random

    from codefusion.augment import augment_pair, fresh_like

    # the request does not spell "Complete": nothing to copy, nothing changes
    assert augment_pair("cf", "Style finished rows", "TextEquals(Complete)", random.Random(0), ["x"]) == \
        ("Style finished rows", "TextEquals(Complete)")
    # Python copies only what the request quotes: `sort` and `key` are in its words, not in quotes
    request, code = augment_pair("python", "sort list `items` by key", "items.sort(key=len)", random.Random(0), ["lamp"])
    assert code.endswith(".sort(key=len)") and "sort" in request and "`items`" not in request
    rng = random.Random(0)
    for text in ("10707", "0.5", "Complete", "ABC", "my_var2", "$D$9", "asc.em-direct@dupont.com"):
        fresh = fresh_like(text, rng, ["river"])
        assert fresh != text and len(fresh) >= 1
        assert fresh.replace(".", "").isdigit() == text.replace(".", "").isdigit()
        assert fresh.isidentifier() == text.isidentifier(), (text, fresh)


def test_copy_augmented_training_resumes_exactly_and_refuses_another_share(data_dir, tmp_path, capsys):
    from codefusion.train import main
    from test_core import losses

    copy = ["--copy-head", "on", "--copy-augment", "0.5"]
    full = train_tiny(data_dir, tmp_path / "full", "cf", 6, "--stage", "finetune", "--save-every", "3", *copy)
    plain = train_tiny(data_dir, tmp_path / "plain", "cf", 6, "--stage", "finetune", "--save-every", "3", *copy[:2])
    assert losses(plain / "log.jsonl") != pytest.approx(losses(full / "log.jsonl"), rel=1e-5), "it changed the batches"
    part = tmp_path / "part"
    base = ["--lang", "cf", "--preset", "tiny", "--stage", "finetune", "--max-steps", "6", "--data-dir", str(data_dir),
            "--out", str(part), "--quiet", "--eval-every", "1000", "--save-every", "3"]
    assert main(base + copy + ["--stop-after", "3", "--save-fp16"]) == 0
    assert main(base + ["--resume", "--copy-augment", "0.2"]) == 2
    assert "started with --copy-augment 0.5, not 0.2" in capsys.readouterr().err
    assert main(base + ["--resume"]) == 0   # the saved share is kept
    assert losses(part / "log.jsonl") == pytest.approx(losses(full / "log.jsonl"), rel=1e-5)
    from safetensors.torch import load_file   # and so is the 16-bit export the run began with
    assert load_file(part / "model.safetensors")["embedding.weight"].dtype == torch.float16
    with pytest.raises(SystemExit):
        main(["--lang", "cf", "--out", str(tmp_path / "x"), "--copy-augment", "1.5"])
