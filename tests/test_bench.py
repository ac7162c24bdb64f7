"""The benchmark's smoke run (structure and sane values, never timings) and the sampler's fast path."""

from __future__ import annotations

import json

import pytest
import torch


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
    model.train()
    with pytest.raises(CodeFusionError, match="eval mode"):
        model.denoise(x, t, memory, pad, x, cache=n_cache)


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
