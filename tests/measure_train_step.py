"""Seconds per training step (fine-tuning batch: loss, backward, AdamW) of a checkpoint's shapes, on this machine.

    python tests/measure_train_step.py --checkpoint checkpoints/bash --steps 60 [--compile] [--threads 2] [--mixed-precision bf16] [--matmul-precision medium] [--fast-cpu-training]

Trains a copy of the checkpoint (in memory; nothing is written) on its language's training pairs with the
trainer's own `batch_loss`, and prints the median and mean seconds per step after `--warmup` steps. With
`--compile` N, D and E go through `torch.compile` first (the warm-up then includes compilation); with
`--mixed-precision bf16` the loss runs under bfloat16 autocast and with `--matmul-precision medium` the matrix
products take bfloat16 inputs, and `--fast-cpu-training` swaps in the faster CPU dropout and attention, as the
trainer's flags of those names do. Not a test
(no timing assertions in CI): a benchmark script, as the README says.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--steps", type=int, default=60, help="timed steps")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation happens here)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--compile", action="store_true", help="torch.compile N, D and E")
    ap.add_argument("--mixed-precision", default="no", choices=["no", "bf16"],
                    help="bf16: the loss under bfloat16 autocast, as `train --mixed-precision bf16` on a CPU")
    ap.add_argument("--matmul-precision", default="highest", choices=["highest", "high", "medium"],
                    help="as `train --matmul-precision`")
    ap.add_argument("--fast-cpu-training", action="store_true", help="as `train --fast-cpu-training`")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.batch_size < 1:
        ap.error("--steps and --batch-size must be at least 1, --warmup at least 0")
    import torch

    from codefusion.cpu_training import fast_cpu_training
    from codefusion.data import load_split
    from codefusion.sampler import load_model
    from codefusion.trainer import PairData, batch_loss, encode_codes, matmul_precision

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = load_model(args.checkpoint, device="cpu").float().train()   # a folder or a Hub repo id
    if args.fast_cpu_training:
        fast_cpu_training(model)
    pairs = load_split(model.config.language, "train", args.data_dir)
    codes, _ = encode_codes(model.tokenizer, [e.code for e in pairs], model.config.code_len)
    data = PairData([e.nl for e in pairs], codes)
    if args.compile:
        for part in (model.denoiser, model.decoder, model.encoder):
            if part is not None:
                part.compile()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times, t_start = [], time.perf_counter()
    with matmul_precision(args.matmul_precision):   # as the trainer does; a caller in this process keeps its own
        for step in range(args.warmup + args.steps):
            idx = data.batch_indices(step, args.batch_size, args.seed)
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.mixed_precision == "bf16"):
                terms = batch_loss(model, data, idx, False, "cpu")
            optimizer.zero_grad(set_to_none=True)
            terms.total.backward()
            optimizer.step()
            times.append(time.perf_counter() - t0)
            if step == args.warmup - 1:
                print(f"warm-up ({args.warmup} steps): {time.perf_counter() - t_start:.1f} s", file=sys.stderr)
    timed = times[args.warmup:]
    print(json.dumps({"checkpoint": args.checkpoint, "compile": args.compile,
                      "mixed_precision": args.mixed_precision, "matmul_precision": args.matmul_precision,
                      "fast_cpu_training": args.fast_cpu_training, "threads": torch.get_num_threads(),
                      "batch_size": args.batch_size, "steps": len(timed),
                      "median_s": round(statistics.median(timed), 4), "mean_s": round(statistics.mean(timed), 4),
                      "examples_per_s": round(args.batch_size / statistics.median(timed), 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
