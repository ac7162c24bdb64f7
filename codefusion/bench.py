"""Speed and quality-versus-steps benchmark of one checkpoint on the current machine.

    python -m codefusion.bench --checkpoint DIR --data-dir DIR [--steps 5 10 20 50 200 1200] [--k 1 5] \
        [--repeats 5] [--quality-tasks 50] [--sampler ddim] [--threads N] --out bench.json [--markdown bench.md]
    python -m codefusion.bench --smoke --checkpoint TINY --data-dir DIR --out bench.json   # CI: seconds

What is measured (all in one process, in this order):
- latency: `sampler.generate` end to end (tokenise, encode, denoise, decode, candidate texts) for one
  prompt, for each k and step count: median of --repeats runs after one warm-up run (for more than 50
  steps the warm-up runs 50: same tensor shapes, shorter loop). Run r uses validation prompt r.
- memory: the process's peak resident set size (`resource.getrusage(...).ru_maxrss`, the kernel's
  high-water mark: Python, torch, weights, tokenizer and data together), read after the latency runs
  (one request at a time, as a demo serves them) and again at the end (quality runs batch 8 prompts).
- throughput: the denoiser's achieved GFLOP/s at the largest k (one prompt, k noise draws): median
  wall time of one denoiser call against its FLOPs (`denoiser_flops`, cross-checked with
  torch.utils.flop_counter), as a share of the fp32 matmul peak measured here (median of --matmul-repeats
  n x n `torch.mm`, same thread count). The diffusers scheduler step is timed on its own for comparison.
- quality: the language's metric (`evaluate.score_task`, i.e. `metrics.is_correct`) on the first
  --quality-tasks tasks of the validation slice (`data.load_split(lang, "val")`, never test), top-k for
  each k, at each step count, with the same seed at every step count (so the curve compares the same
  noise draws), 8 prompts per batch as the evaluator runs them.
- recommended steps: the smallest measured step count whose top-k is within --tolerance points of the
  largest step count's, for every k.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

from codefusion import LANGUAGE_NAMES, SAMPLERS, metrics
from codefusion.data import load_split, resolve_data_dir
from codefusion.errors import CodeFusionError, run_cli

FULL = dict(steps=[5, 10, 20, 50, 200, 1200], k=[1, 5], repeats=5, quality_tasks=50, matmul_n=2048,
            matmul_repeats=10, step_calls=30)
SMOKE = dict(steps=[1, 3], k=[1, 2], repeats=2, quality_tasks=3, matmul_n=256, matmul_repeats=3, step_calls=3)
WARMUP_MAX_STEPS = 50
QUALITY_BATCH = 8  # prompts per generate() call, as codefusion.evaluate runs them


def median_time(fn, repeats: int) -> tuple[float, list[float]]:
    """Median seconds of `repeats` calls of fn, and every call's seconds (warm it up first where that matters)."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs), runs


def peak_rss_mib() -> float:
    """The process's resident-set high-water mark so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ----------------------------------------------------------------------------- FLOPs

def denoiser_flops(config, batch: int, memory_len: int) -> dict[str, int]:
    """FLOPs (2 per multiply-add) of one denoiser call on `batch` sequences, as the sampler runs it.

    With B = batch, L = code_len, M = prompt tokens, w = width, f = ff, e = embed_dim, n = layers,
    i = e (2e with self-conditioning):
      linear = 2BLiw (in_proj) + 16Bw^2 (time MLP, w -> 4w -> w) + 2BLwe (out_proj)
               + n * 2BL(6w^2 + 2wf)   (self-attn Q,K,V,out: 4w^2; cross-attn Q,out: 2w^2; FFN: 2wf)
      attention = n * (4BL^2 w + 4BLMw)   (QK^T and AV, self and cross)
    The cross-attention K/V projections of E_s (n * 4BMw^2) are computed once per request, not per
    step (model.MemoryCache), so they are reported apart. Norms, GELU, softmax and adds are left out
    (a few percent of the work, none of it matmul).
    """
    b, n_tok, m, w, f, e = batch, config.code_len, memory_len, config.width, config.ff, config.embed_dim
    n = config.denoiser_layers
    i = e * (2 if config.self_condition else 1)
    linear = (2 * b * n_tok * i * w + 16 * b * w * w + 2 * b * n_tok * w * e
              + n * 2 * b * n_tok * (6 * w * w + 2 * w * f))
    attention = n * (4 * b * n_tok * n_tok * w + 4 * b * n_tok * m * w)
    return {"linear": linear, "attention": attention, "per_step": linear + attention,
            "cross_kv_once": n * 4 * b * m * w * w}


def counted_flops(model, run) -> int | None:
    """torch.utils.flop_counter's count of one denoiser call (attention through SDPA's math backend,
    whose matmuls it can see; the fused CPU kernel is invisible to it). None if it fails."""
    try:
        import torch
        from torch.nn.attention import SDPBackend, sdpa_kernel
        from torch.utils.flop_counter import FlopCounterMode

        t = torch.full((run.x_t.shape[0],), run.timesteps[0], dtype=torch.long, device=run.x_t.device)
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            model.denoise(run.x_t, t, run.memory, run.pad_mask, run.x_t, cache=run.n_cache)
        return int(counter.get_total_flops())
    except Exception as e:  # a cross-check only: report why instead of failing the benchmark
        print(f"FlopCounterMode cross-check failed: {e}", file=sys.stderr)
        return None


def matmul_peak(n: int, repeats: int) -> dict:
    """GFLOP/s of an n x n fp32 torch.mm (after one warm-up), this process's thread count, from the fastest of the
    repeats: a peak, which another process's load can only lower, so the fastest run is the best estimate of it."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)
    median, runs = median_time(lambda: torch.mm(a, b, out=out), repeats)
    return {"n": n, "repeats": repeats, "median_s": median, "best_s": min(runs), "gflops": 2 * n ** 3 / min(runs) / 1e9}


# ----------------------------------------------------------------------------- measurements

def measure_latency(model, prompts: list[str], steps_list, ks, repeats: int, sampler: str) -> list[dict]:
    from codefusion.sampler import generate

    rows = []
    for k in ks:
        for steps in steps_list:
            generate(model, prompts[0], k=k, steps=min(steps, WARMUP_MAX_STEPS), seed=0, sampler=sampler)
            runs = []
            for r in range(repeats):
                start = time.perf_counter()
                generate(model, prompts[r % len(prompts)], k=k, steps=steps, seed=0, sampler=sampler)
                runs.append(time.perf_counter() - start)
            rows.append({"steps": steps, "k": k, "median_s": statistics.median(runs), "runs_s": runs})
            print(f"latency k={k} steps={steps}: {rows[-1]['median_s']:.3f} s", file=sys.stderr)
    return rows


def measure_throughput(model, prompt: str, k: int, sampler: str, calls: int, peak: dict) -> dict:
    """Per-step cost at k candidates: one denoiser call, one scheduler step, and their FLOP rate."""
    import torch

    from codefusion.sampler import _Run

    with torch.inference_mode():
        run = _Run(model, [prompt], k, 20, 0, sampler)
        t = run.timesteps[len(run.timesteps) // 2]
        tt = torch.full((run.x_t.shape[0],), t, dtype=torch.long, device=run.x_t.device)
        x0 = model.denoise(run.x_t, tt, run.memory, run.pad_mask, None, cache=run.n_cache)
        denoise = lambda: model.denoise(run.x_t, tt, run.memory, run.pad_mask, x0, cache=run.n_cache)  # noqa: E731
        denoise()
        step_s, _ = median_time(denoise, calls)
        scheduler = model.diffusion.make_scheduler(sampler, 20)
        scheduler.step(x0, t, run.x_t)
        scheduler_s, _ = median_time(lambda: scheduler.step(x0, t, run.x_t), calls)
        flops = denoiser_flops(model.config, run.x_t.shape[0], run.memory.shape[1])
        gflops = flops["per_step"] / step_s / 1e9
        return {"k": k, "batch": run.x_t.shape[0], "memory_len": run.memory.shape[1], "calls": calls,
                "denoiser_step_s": step_s, "scheduler_step_s": scheduler_s, "flops": flops,
                "flops_counted": counted_flops(model, run), "gflops": gflops,
                "matmul_peak": peak, "peak_ratio": gflops / peak["gflops"]}


def measure_quality(model, lang: str, examples, steps_list, ks, sampler: str) -> list[dict]:
    from codefusion.evaluate import Answer, score_task
    from codefusion.sampler import generate

    k = max(ks)
    rows = []
    for steps in steps_list:
        start, records = time.perf_counter(), []
        for i in range(0, len(examples), QUALITY_BATCH):
            batch = examples[i:i + QUALITY_BATCH]
            out = generate(model, [ex.nl for ex in batch], k=k, steps=steps, seed=0, sampler=sampler)
            records += [score_task(lang, ex, [Answer(c.text, c.score) for c in cands], k, 0.0)
                        for ex, cands in zip(batch, out)]
        solved = [r["solved_at"] for r in records]
        valid = [r["top1_valid"] for r in records if r["gold_valid"]]
        rows.append({"steps": steps, "top_k": {str(kk): metrics.top_k(solved, kk) for kk in ks},
                     "validity": 100.0 * sum(valid) / len(valid) if valid else None,
                     # still moves when top-k sits at 0 (an undertrained checkpoint): 0 = the gold code
                     "edit_distance_top1": statistics.mean(r["top1_edit_distance"] for r in records),
                     "seconds": time.perf_counter() - start})
        print(f"quality steps={steps}: {rows[-1]['top_k']}", file=sys.stderr)
    return rows


def reused_quality(path, checkpoint, sampler: str, settings: dict, examples) -> list[dict]:
    """The quality rows of an earlier report, refused unless it measured exactly what this run would."""
    try:
        old = json.loads(Path(path).read_text(encoding="utf-8"))
        same = (old["checkpoint"] == str(checkpoint) and old["sampler"] == sampler and old["steps"] == settings["steps"]
                and old["k"] == settings["k"] and old["quality"]["task_ids"] == [ex.id for ex in examples])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CodeFusionError(f"--quality-from {path}: not a readable bench report ({e})") from None
    if not same:
        raise CodeFusionError(f"--quality-from {path} measured another checkpoint, sampler, step list, k or task list")
    return old["quality"]["by_steps"]


def recommend(quality: list[dict], tolerance: float) -> int:
    """The smallest step count whose top-k, for every k, is within `tolerance` points of the largest step count's."""
    ref = max(quality, key=lambda r: r["steps"])
    ok = [r["steps"] for r in quality
          if all(r["top_k"][k] >= ref["top_k"][k] - tolerance for k in ref["top_k"])]
    return min(ok)


# ----------------------------------------------------------------------------- report

def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def format_markdown(report: dict) -> str:
    """A steps-by-k table (median seconds, top-k on the validation slice) and a summary of the rest."""
    ks = report["k"]
    lat = {(r["steps"], r["k"]): r["median_s"] for r in report["latency"]}
    qual = {r["steps"]: r for r in report["quality"]["by_steps"]}
    rec = report["recommended_steps"]
    head = (["Steps"] + [f"k={k} median s" for k in ks] + [f"Top-{k} %" for k in ks]
            + ["Valid top-1 %", "Top-1 edit distance"])
    lines = [f"**{LANGUAGE_NAMES[report['language']]}** (`{report['checkpoint']}`, {report['sampler']}, "
             f"{report['machine']['threads']} threads, {report['machine']['cpu']}; quality: "
             f"{report['quality']['metric_short']}, first {report['quality']['n_tasks']} validation tasks)",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for steps in report["steps"]:
        q = qual[steps]
        name = f"**{steps}** (default)" if steps == rec else str(steps)
        cells = ([name] + [f"{lat[(steps, k)]:.3f}" for k in ks] + [f"{q['top_k'][str(k)]:.1f}" for k in ks]
                 + ["–" if q["validity"] is None else f"{q['validity']:.1f}"]
                 + ["–" if q.get("edit_distance_top1") is None else f"{q['edit_distance_top1']:.3f}"])
        lines.append("| " + " | ".join(cells) + " |")
    tp, mem = report["throughput"], report["memory"]
    n = tp["matmul_peak"]["n"]
    counted = tp["flops_counted"]
    check = ("FlopCounterMode unavailable" if counted is None else
             "FlopCounterMode agrees" if counted == tp["flops"]["per_step"] else
             f"FlopCounterMode counts {counted / 1e9:.3f}")
    lines += ["",
              f"Denoiser at k={tp['k']}: {tp['flops']['per_step'] / 1e9:.3f} GFLOP per step ({check}) in "
              f"{tp['denoiser_step_s'] * 1e3:.2f} ms = {tp['gflops']:.1f} GFLOP/s, "
              f"{100 * tp['peak_ratio']:.0f}% of this machine's fp32 matmul peak "
              f"({tp['matmul_peak']['gflops']:.1f} GFLOP/s, {n}x{n} torch.mm); "
              f"scheduler step {tp['scheduler_step_s'] * 1e3:.3f} ms. "
              f"Peak RSS {mem['peak_rss_latency_mib']:.0f} MiB serving one request at a time "
              f"({mem['peak_rss_mib']:.0f} MiB after the batched quality runs). "
              f"Recommended default: {rec} steps (smallest within {report['tolerance']:g} point(s) of "
              f"{max(report['steps'])} steps at every top-k)."]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m codefusion.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="a checkpoint folder or Hub repo id")
    p.add_argument("--data-dir", default=None, help="the CodeFusion data folder (else $CODEFUSION_DATA)")
    p.add_argument("--smoke", action="store_true", help="tiny settings for CI (explicit flags still win)")
    p.add_argument("--steps", type=int, nargs="+", default=None, help=f"step counts (default {FULL['steps']})")
    p.add_argument("--k", type=int, nargs="+", default=None, help=f"candidate counts (default {FULL['k']})")
    p.add_argument("--repeats", type=int, default=None, help=f"timed runs per setting (default {FULL['repeats']})")
    p.add_argument("--quality-tasks", type=int, default=None,
                   help=f"validation tasks scored per step count (default {FULL['quality_tasks']})")
    p.add_argument("--matmul-n", type=int, default=None, help=f"size of the peak matmul (default {FULL['matmul_n']})")
    p.add_argument("--matmul-repeats", type=int, default=None, help=f"(default {FULL['matmul_repeats']})")
    p.add_argument("--step-calls", type=int, default=None,
                   help=f"timed denoiser calls for the FLOP rate (default {FULL['step_calls']})")
    p.add_argument("--sampler", default="ddim", choices=SAMPLERS, help="ddim (default), dpm++ or ddpm")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--tolerance", type=float, default=1.0, help="points of top-k the default may lose (1.0)")
    p.add_argument("--quality-from", default=None,
                   help="reuse the quality section of an earlier report of the same checkpoint, sampler, steps, k "
                        "and tasks (quality does not depend on threads; 1200 steps are the slow part)")
    p.add_argument("--out", required=True, help="where to write the JSON report")
    p.add_argument("--markdown", default=None, help="also write the markdown table here")
    return p


def _settings(args) -> dict:
    base = SMOKE if args.smoke else FULL
    s = {key: getattr(args, key) if getattr(args, key) is not None else value for key, value in base.items()}
    s["steps"], s["k"] = sorted(set(s["steps"])), sorted(set(s["k"]))
    for key in ("repeats", "quality_tasks", "matmul_n", "matmul_repeats", "step_calls"):
        if s[key] < 1:
            raise CodeFusionError(f"--{key.replace('_', '-')} must be at least 1, got {s[key]}")
    if min(s["steps"]) < 1 or min(s["k"]) < 1:
        raise CodeFusionError("--steps and --k must be at least 1")
    return s


def run(args) -> dict:
    """Benchmark as the parsed arguments say; returns the report (also written to --out)."""
    import torch   # here, not at the top: --help and argument errors answer without loading torch

    threads = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)  # leave the caller's process as it was


def _run(args) -> dict:
    import torch

    from codefusion.sampler import check_request, load_model

    s = _settings(args)
    model = load_model(args.checkpoint, device="cpu")
    check_request(["x"], max(s["k"]), max(s["steps"]), args.sampler, model.config.diffusion_steps)
    lang = model.config.language
    examples = load_split(lang, "val", resolve_data_dir(args.data_dir))[: s["quality_tasks"]]
    if not examples:
        raise CodeFusionError(f"the {lang} validation slice is empty")
    rss_load = peak_rss_mib()
    prompts = [ex.nl for ex in examples]

    latency = measure_latency(model, prompts, s["steps"], s["k"], s["repeats"], args.sampler)
    rss_latency = peak_rss_mib()
    peak = matmul_peak(s["matmul_n"], s["matmul_repeats"])
    throughput = measure_throughput(model, prompts[0], max(s["k"]), args.sampler, s["step_calls"], peak)
    if args.quality_from:
        quality = reused_quality(args.quality_from, args.checkpoint, args.sampler, s, examples)
    else:
        quality = measure_quality(model, lang, examples, s["steps"], s["k"], args.sampler)

    report = {
        "checkpoint": str(args.checkpoint), "language": lang, "sampler": args.sampler, "seed": 0,
        "steps": s["steps"], "k": s["k"], "repeats": s["repeats"], "tolerance": args.tolerance,
        "machine": {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
                    "interop_threads": torch.get_num_interop_threads(), "torch": torch.__version__,
                    "python": platform.python_version()},
        "model": {"config": model.config.to_dict(), "parameters": model.num_parameters_by_part()},
        "latency": latency,
        "throughput": throughput,
        "memory": {"rss_after_load_mib": rss_load, "peak_rss_latency_mib": rss_latency, "peak_rss_mib": peak_rss_mib(),
                   "how": "resource.getrusage(RUSAGE_SELF).ru_maxrss: the process's resident-set high-water mark"},
        "quality": {"split": "val", "n_tasks": len(examples), "task_ids": [ex.id for ex in examples],
                    "metric": metrics.METRIC_NAMES[lang], "metric_short": metrics.METRIC_NAMES[lang].split(" (")[0],
                    "by_steps": quality, "reused_from": args.quality_from},
        "recommended_steps": recommend(quality, args.tolerance),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    if args.markdown:
        Path(args.markdown).write_text(format_markdown(report) + "\n", encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; CodeFusionError becomes `error: ...` and exit code 2."""
    args = build_parser().parse_args(argv)

    def body():
        print(format_markdown(run(args)))
        print(f"\nwrote {args.out}")
    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
