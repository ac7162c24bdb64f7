"""Classifier-free guidance: the null prompt, prompt dropout in training, and the guided sampler."""

from __future__ import annotations

import json

import pytest
import torch

from codefusion.errors import CodeFusionError

from conftest import train_tiny
from test_core import losses

PROMPTS = ["list all files in the current directory", "remove the file named a.txt"]


@pytest.fixture(scope="module")
def model(tiny_bash_checkpoint):
    from codefusion.sampler import load_model

    return load_model(tiny_bash_checkpoint)


@torch.no_grad()
def test_null_rows_read_one_mask_token_with_nothing_to_copy_and_leave_the_others_alone(model):
    cfg = model.config
    memory, pad, ids = model.encode_prompts(PROMPTS)
    n_memory, n_pad, n_ids = model.encode_prompts(PROMPTS, null_rows=torch.tensor([False, True]))
    assert torch.allclose(n_memory[0], memory[0]) and torch.equal(n_pad[0], pad[0]) and torch.equal(n_ids[0], ids[0])
    assert n_pad[1].tolist() == [False] + [True] * (pad.shape[1] - 1), "the null prompt is one position"
    assert (n_ids[1] == cfg.pad_token_id).all(), "the copy head must find nothing to copy in the null prompt"
    # The null prompt is the same whatever text it replaced, and what sampling encodes once for a batch.
    null_memory, null_pad, null_ids = model.encode_null_prompts(3)
    assert null_memory.shape == (3, 1, cfg.width) and not null_pad.any() and (null_ids == cfg.pad_token_id).all()
    assert torch.allclose(n_memory[1, 0], null_memory[0, 0], atol=1e-6)
    assert not torch.allclose(memory[1, 0], n_memory[1, 0])


@torch.no_grad()
def test_guidance_extrapolates_from_the_null_prompts_estimate(model):
    from codefusion.sampler import _Run, generate

    def first_estimate(guidance):
        run = _Run(model, PROMPTS[:1], 3, 4, 7, "ddim", guidance=guidance)
        x_T = run.x_t.clone()
        next(iter(run.steps()))
        return x_T, run.x0_hat

    x_T, plain = first_estimate(1.0)
    t = torch.full((3,), model.config.diffusion_steps - 1)
    memory, pad, _ = model.encode_prompts(PROMPTS[:1] * 3)
    null_memory, null_pad, _ = model.encode_null_prompts(3)
    cond = model.denoise(x_T, t, memory, pad)
    null = model.denoise(x_T, t, null_memory, null_pad)
    assert torch.allclose(plain, cond, atol=1e-5)
    assert torch.allclose(first_estimate(0.0)[1], null, atol=1e-5), "w = 0 is the unconditional model"
    assert torch.allclose(first_estimate(2.5)[1], null + 2.5 * (cond - null), atol=1e-4)
    # w = 1 is the plain sampler; another w changes what it writes for an untrained null prompt.
    default = [c.text for c in generate(model, PROMPTS[0], k=3, steps=4)[0]]
    assert [c.text for c in generate(model, PROMPTS[0], k=3, steps=4, guidance=1)[0]] == default


@pytest.mark.parametrize("bad", [-0.5, 10.5, float("nan"), float("inf"), True, "2", None])
def test_bad_guidance_is_refused_with_a_clear_message(model, bad):
    from codefusion.sampler import generate, stream

    with pytest.raises(CodeFusionError, match="guidance must be a number from 0 to 10"):
        generate(model, PROMPTS[0], guidance=bad)
    with pytest.raises(CodeFusionError, match="guidance must be"):
        next(stream(model, PROMPTS[0], guidance=bad))


def test_prompt_dropout_trains_on_the_null_prompt_in_that_share_of_rows(data_dir, tmp_path, monkeypatch, capsys):
    from codefusion.train import main
    from codefusion.trainer import PairData, batch_loss, validation_loss

    run = train_tiny(data_dir, tmp_path / "pd", "cf", 6, "--stage", "finetune", "--prompt-dropout", "0.5",
                     "--save-every", "3")
    plain = train_tiny(data_dir, tmp_path / "plain", "cf", 6, "--stage", "finetune")
    assert json.loads((run / "config.json").read_text())["prompt_dropout"] == 0.5
    assert losses(run / "log.jsonl") != pytest.approx(losses(plain / "log.jsonl"), rel=1e-5)
    from codefusion.sampler import load_model

    model = load_model(run)
    seen = []
    real = model.encode_prompts
    monkeypatch.setattr(model, "encode_prompts", lambda p, d=None, null_rows=None: seen.append(null_rows) or real(p, d, null_rows))
    data = PairData(["color cells above 5"] * 400, torch.full((400, model.config.code_len), 7))
    torch.manual_seed(0)
    batch_loss(model, data, list(range(400)), pretrain=False, device="cpu", prompt_dropout=0.5)
    assert 0.4 < seen[-1].float().mean() < 0.6
    validation_loss(model, data, "cpu")
    assert seen[-1] is None, "validation reads every prompt"
    # A resumed run keeps its share; a link started with --init from a checkpoint takes the new one.
    base = ["--lang", "cf", "--preset", "tiny", "--stage", "finetune", "--max-steps", "6", "--data-dir", str(data_dir),
            "--quiet", "--eval-every", "1000"]
    part = tmp_path / "part"
    assert main(base + ["--out", str(part), "--prompt-dropout", "0.5", "--stop-after", "3"]) == 0
    assert main(base + ["--out", str(part), "--resume", "--prompt-dropout", "0.2"]) == 2
    assert "started with --prompt-dropout 0.5, not 0.2" in capsys.readouterr().err
    assert main(base + ["--out", str(tmp_path / "link"), "--init", str(plain), "--prompt-dropout", "0.25"]) == 0
    assert json.loads((tmp_path / "link" / "config.json").read_text())["prompt_dropout"] == 0.25
    for argv, message in ((["--prompt-dropout", "1"], "--prompt-dropout must be in"),
                          (["--prompt-dropout", "0.1", "--architecture", "autoregressive"], "has none")):
        with pytest.raises(SystemExit):
            main(["--lang", "cf", "--out", str(tmp_path / "x"), *argv])
        assert message in capsys.readouterr().err


def test_evaluate_guides_checkpoints_only(tiny_bash_checkpoint, data_dir, tmp_path, capsys):
    from codefusion.evaluate import main

    out = tmp_path / "g.json"
    assert main(["--lang", "bash", "--split", "val", "--data-dir", str(data_dir), "--checkpoint",
                 str(tiny_bash_checkpoint), "--limit", "4", "--steps", "2", "--guidance", "2", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert "guidance 2" in report["system"] and report["config"]["guidance"] == 2
    plain = tmp_path / "plain.json"   # the same run unguided: another system, never pooled with it as a seed
    assert main(["--lang", "bash", "--split", "val", "--data-dir", str(data_dir), "--checkpoint",
                 str(tiny_bash_checkpoint), "--limit", "4", "--steps", "2", "--seed", "1", "--out", str(plain)]) == 0
    from codefusion.report import main as report_main

    capsys.readouterr()
    assert report_main(["--mean-over-seeds", str(out), str(plain)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| CodeFusion")]
    assert len(rows) == 2 and sum("guidance 2" in row for row in rows) == 1
    assert main(["--lang", "bash", "--data-dir", str(data_dir), "--baseline", "retrieval", "--guidance", "2",
                 "--out", str(out)]) == 2
    assert "needs --checkpoint" in capsys.readouterr().err
