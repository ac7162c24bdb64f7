"""The benchmark's smoke run (structure and sane values, never timings) and the sampler's fast path."""

from __future__ import annotations

import json

import pytest
import torch

from codefusion.model import _layer


@pytest.fixture(scope="module")
def smoke_report(tiny_bash_checkpoint, data_dir, tmp_path_factory):
    from codefusion.bench import main

    out = tmp_path_factory.mktemp("bench")
    rc = main(["--smoke", "--checkpoint", str(tiny_bash_checkpoint), "--data-dir", str(data_dir),
               "--out", str(out / "bench.json"), "--markdown", str(out / "bench.md")])
    assert rc == 0
    return json.loads((out / "bench.json").read_text()), (out / "bench.md").read_text()


def test_smoke_report_has_every_setting_with_sane_values(smoke_report):
    report, _ = smoke_report
    steps, ks = report["steps"], report["k"]
    assert {(r["steps"], r["k"]) for r in report["latency"]} == {(s, k) for s in steps for k in ks}
    for r in report["latency"]:
        assert r["median_s"] > 0 and len(r["runs_s"]) == report["repeats"]
    tp = report["throughput"]
    assert tp["denoiser_step_s"] > 0 and tp["scheduler_step_s"] > 0 and tp["matmul_peak"]["gflops"] > 0
    assert tp["matmul_peak"]["best_s"] <= tp["matmul_peak"]["median_s"]  # the peak is the fastest run
    # The ratio is the denoiser's rate over the peak matmul's: both are timings, so on a loaded machine either can
    # come out slow and the ratio has no fixed bound; check that it is the ratio the report's own figures give.
    assert tp["peak_ratio"] > 0
    assert tp["peak_ratio"] == pytest.approx(tp["gflops"] / tp["matmul_peak"]["gflops"])
    assert tp["gflops"] == pytest.approx(tp["flops"]["per_step"] / tp["denoiser_step_s"] / 1e9)
    assert tp["flops_counted"] in (None, tp["flops"]["per_step"])
    assert [r["steps"] for r in report["quality"]["by_steps"]] == steps
    for r in report["quality"]["by_steps"]:
        assert set(r["top_k"]) == {str(k) for k in ks}
        assert all(0 <= v <= 100 for v in r["top_k"].values())
        assert r["top_k"][str(min(ks))] <= r["top_k"][str(max(ks))]
    assert report["recommended_steps"] in steps
    mem = report["memory"]
    assert 0 < mem["rss_after_load_mib"] <= mem["peak_rss_latency_mib"] <= mem["peak_rss_mib"]


def test_markdown_has_a_row_per_step_count(smoke_report):
    report, md = smoke_report
    rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| Steps")]
    assert len(rows) == len(report["steps"])
    for steps, row in zip(report["steps"], rows):
        assert row.startswith(f"| {steps} ") or row.startswith(f"| **{steps}** (default)")
    assert f"Recommended default: {report['recommended_steps']} steps" in md


def test_quality_can_be_reused_only_from_a_matching_report(smoke_report, tiny_bash_checkpoint, data_dir, tmp_path):
    from codefusion.bench import main

    report, _ = smoke_report
    previous = tmp_path / "previous.json"
    previous.write_text(json.dumps(report))
    common = ["--smoke", "--checkpoint", str(tiny_bash_checkpoint), "--data-dir", str(data_dir), "--threads", "1",
              "--quality-from", str(previous)]
    assert main([*common, "--out", str(tmp_path / "again.json")]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["quality"]["by_steps"] == report["quality"]["by_steps"] and again["machine"]["threads"] == 1
    assert main([*common, "--steps", "2", "--out", str(tmp_path / "refused.json")]) == 2


def test_recommendation_is_the_fewest_steps_within_tolerance():
    from codefusion.bench import recommend

    rows = [{"steps": s, "top_k": {"1": q1, "5": q5}}
            for s, q1, q5 in [(5, 30.0, 50.0), (10, 39.5, 58.0), (20, 40.0, 60.0), (1200, 40.0, 60.5)]]
    assert recommend(rows, tolerance=1.0) == 20   # 10 steps is within 1 at top-1 but not at top-5
    assert recommend(rows, tolerance=3.0) == 10


def test_denoiser_flops_formula_matches_the_flop_counter(tiny_bash_checkpoint):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from codefusion.bench import denoiser_flops
    from codefusion.sampler import _Run, load_model

    model = load_model(tiny_bash_checkpoint, device="cpu")
    with torch.inference_mode():
        run = _Run(model, ["list files", "count the lines of a file"], 3, 5, 0, "ddim")
        t = torch.full((run.x_t.shape[0],), 600, dtype=torch.long)
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            model.denoise(run.x_t, t, run.memory, run.pad_mask, run.x_t, cache=run.n_cache)
    assert counter.get_total_flops() == denoiser_flops(model.config, 6, run.memory.shape[1])["per_step"]


def test_cached_cross_attention_matches_the_stock_layers(tiny_bash_checkpoint):
    """The sampler's K/V-cached path computes what nn.TransformerDecoderLayer computes, padding included."""
    from codefusion.errors import CodeFusionError
    from codefusion.sampler import load_model

    model = load_model(tiny_bash_checkpoint, device="cpu")
    torch.manual_seed(0)
    with torch.inference_mode():
        ids, attn = model.tokenize_prompts(["list files", "find every txt file below this folder and delete it"])
        memory, pad = model.encode(ids, attn).repeat_interleave(2, 0), (attn == 0).repeat_interleave(2, 0)
        assert pad.any()
        n_cache, d_cache = model.memory_caches(memory, pad)
        x = torch.randn(4, model.config.code_len, model.config.embed_dim)
        t = torch.tensor([1199, 800, 30, 0])
        torch.testing.assert_close(model.denoise(x, t, memory, pad, x, cache=n_cache),
                                   model.denoise(x, t, memory, pad, x))
        torch.testing.assert_close(model.decode(x, memory, pad, cache=d_cache), model.decode(x, memory, pad))
        # and the stock modules themselves, one layer written out
        h, layer = torch.randn(4, model.config.code_len, model.config.width), model.denoiser.layers[0]
        torch.testing.assert_close(_layer(layer, h, n_cache.kv[0], n_cache.mask),
                                   layer(h, memory, memory_key_padding_mask=pad))
    model.train()
    with pytest.raises(CodeFusionError, match="eval mode"):
        model.denoise(x, t, memory, pad, x, cache=n_cache)


def _zero_dropout(model):
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if isinstance(getattr(m, "dropout", None), float):   # attention dropout (nn.MultiheadAttention, T5Attention)
            m.dropout = 0.0
    return model.train()


def test_fast_cpu_training_computes_what_the_stock_layers_and_transformers_t5_compute(tiny_bash_checkpoint):
    """--fast-cpu-training runs N and D through `_layer` (products written out on CPU) and E through
    `_t5_attention`: with dropout off they compute what the stock modules and transformers' eager T5 attention
    compute, gradients included, padding (E, cross-attention) and the AR decoder's causal mask included."""
    from codefusion.autoregressive import ARBaseline
    from codefusion.cpu_training import T5_ATTENTION, Dropout, fast_cpu_training
    from codefusion.sampler import load_model

    stock = _zero_dropout(load_model(tiny_bash_checkpoint, device="cpu"))
    model = _zero_dropout(fast_cpu_training(load_model(tiny_bash_checkpoint, device="cpu")))
    assert isinstance(model.denoiser.layers[0].dropout1, Dropout) and model.state_dict().keys() == stock.state_dict().keys()
    torch.manual_seed(0)
    ids, attn = model.tokenize_prompts(["list files", "find every txt file below this folder and delete it"])
    pad = attn == 0
    memory = model.encode(ids, attn)
    torch.testing.assert_close(memory, stock.encode(ids, attn))
    x = torch.randn(2, model.config.code_len, model.config.embed_dim, requires_grad=True)
    t = torch.tensor([900, 10])
    for ours, theirs in ((model.denoise(x, t, memory, pad, x), stock.denoise(x, t, memory, pad, x)),
                         (model.decode(x, memory, pad), stock.decode(x, memory, pad))):
        torch.testing.assert_close(ours, theirs)
        torch.testing.assert_close(torch.autograd.grad(ours.square().sum(), x, retain_graph=True)[0],
                                   torch.autograd.grad(theirs.square().sum(), x, retain_graph=True)[0])
    assert model.encoder.config._attn_implementation == T5_ATTENTION
    ar = _zero_dropout(fast_cpu_training(ARBaseline(model.config.replace(architecture="autoregressive"))))
    assert ar.t5.config._attn_implementation == T5_ATTENTION
    labels = torch.randint(5, model.config.vocab_size, (2, 6))
    for t5, run in ((model.encoder, lambda: model.encoder(input_ids=ids, attention_mask=attn).last_hidden_state),
                    (ar.t5, lambda: ar.t5(input_ids=ids, attention_mask=attn, labels=labels).logits)):
        for training in (True, False):
            t5.train(training)
            outs = []
            for impl in (T5_ATTENTION, "eager"):
                t5.config._attn_implementation = impl
                outs.append(run())
            t5.config._attn_implementation = T5_ATTENTION
            torch.testing.assert_close(*outs)
    later = labels.clone()
    later[:, 4] = 9   # the decoder reads labels shifted right: logits up to position 4 must not see it
    torch.testing.assert_close(ar.t5(input_ids=ids, attention_mask=attn, labels=later).logits[:, :5], outs[0][:, :5])


def test_fast_dropout_draws_a_bernoulli_mask_from_the_seeded_generator():
    from codefusion.cpu_training import Dropout, dropout

    x = torch.ones(400, 1000, requires_grad=True)
    torch.manual_seed(3)
    y = dropout(x, 0.1)
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(0.9, abs=0.003)   # 400k draws: sd 0.0005
    assert torch.allclose(y[kept], torch.tensor(65536 / (65536 - 6554)))   # p is rounded to 6554 / 65536
    assert y.mean().item() == pytest.approx(1.0, abs=0.004)                 # unbiased
    assert kept[:, :500].float().mean().item() == pytest.approx(kept[:, 500:].float().mean().item(), abs=0.005)
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())   # the gradient passes where the value did, scaled alike
    torch.manual_seed(3)
    assert torch.equal(dropout(x, 0.1), y)   # a seeded run repeats (and --resume restores the generator)
    assert not torch.equal(dropout(x, 0.1), y)
    assert dropout(x, 0.1, training=False) is x and dropout(x, 0.0) is x
    assert not dropout(torch.ones(7), 1.0).any()
    assert dropout(torch.ones(3, 5, dtype=torch.bfloat16), 0.5).dtype == torch.bfloat16
    layer = Dropout(0.3).eval()
    assert layer(x) is x and isinstance(layer, torch.nn.Dropout)


def test_train_step_benchmark_trains_in_memory_and_reports_its_settings(tiny_bash_checkpoint, data_dir, capsys):
    import hashlib

    import measure_train_step

    digest = lambda: hashlib.sha256((tiny_bash_checkpoint / "model.safetensors").read_bytes()).hexdigest()  # noqa: E731
    before = digest()
    rc = measure_train_step.main(["--checkpoint", str(tiny_bash_checkpoint), "--data-dir", str(data_dir),
                                  "--steps", "3", "--warmup", "1", "--batch-size", "4"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["steps"] == 3 and report["batch_size"] == 4 and report["compile"] is False
    assert 0 < report["median_s"] < 60
    assert report["examples_per_s"] == pytest.approx(4 / report["median_s"], rel=0.05)   # median_s is rounded
    assert digest() == before   # nothing written back to the checkpoint
    rc = measure_train_step.main(["--checkpoint", str(tiny_bash_checkpoint), "--data-dir", str(data_dir),
                                  "--steps", "2", "--warmup", "0", "--batch-size", "4", "--mixed-precision", "bf16",
                                  "--matmul-precision", "medium"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and report["mixed_precision"] == "bf16" and report["steps"] == 2 and report["median_s"] > 0
    assert report["matmul_precision"] == "medium" and torch.get_float32_matmul_precision() == "highest"
    with pytest.raises(SystemExit):
        measure_train_step.main(["--checkpoint", str(tiny_bash_checkpoint), "--steps", "0"])
    assert "--steps and --batch-size must be at least 1" in capsys.readouterr().err
