"""Package a finished training run as a bundled checkpoint: weights, config, tokenizer and a run summary.

    python -m codefusion.bundle --run runs/cf --out checkpoints/cf

The optimizer state and the per-step log stay behind; `training_summary.json` keeps what a reader needs
(config, parameter counts, plan, final and validation losses, time, throughput, the exact command).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from pathlib import Path

from codefusion.config import CodeFusionConfig
from codefusion.errors import CodeFusionError

MODEL_FILES = ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def summarize_log(log_path: Path) -> dict:
    """The run's start record, its last training and validation losses, and its wall time."""
    if not log_path.is_file():
        raise CodeFusionError(f"no run log at {log_path}")
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    start = next((r for r in records if r.get("event") == "start"), None)
    end = [r for r in records if r.get("event") == "end"]
    if start is None or not end:
        raise CodeFusionError(f"{log_path} is not the log of a finished run (no start or end record)")
    steps = [r for r in records if "total" in r]
    vals = [r for r in records if "val_loss" in r]
    last = {s: next((r for r in reversed(steps) if r["stage"] == s), None) for s in ("pretrain", "finetune")}
    return {
        "language": start["config"]["language"], "parameters": start["params"], "stage_steps": start["stage_steps"],
        "batch_size": start["batch_size"], "lr": start["lr"], "seed": start["seed"], "device": start["device"],
        "cpu_capability": start.get("cpu_capability"),   # runs logged before session 38 did not record it
        "data": {k: start[k] for k in ("train_pairs", "val_pairs", "pretrain_snippets", "truncated_codes")},
        "final_loss": {s: ({k: round(r[k], 4) for k in ("total", "denoise", "decoder", "ce")} if r else None)
                       for s, r in last.items()},
        "val_loss": [{"step": r["step"], "val_loss": round(r["val_loss"], 4)} for r in vals],
        "seconds": sum(r["seconds"] for r in end),  # a resumed run has one end record per session
        "examples_per_s": steps[-1]["examples_per_s"] if steps else None,
        "resumed": sum(r.get("event") == "resume" for r in records),
    }


def train_command(trained: dict) -> str:
    """The training command line of a run, from the arguments its trainer saved (seed 0 included)."""
    skip = ("out", "data_dir", "resume", "quiet", "overwrite")
    flags = [f"--{k.replace('_', '-')}" + ("" if v is True else f" {shlex.quote(str(v))}")
             for k, v in trained.items() if v is not None and v is not False and k not in skip]
    return "python -m codefusion.train " + " ".join(flags) + " --data-dir DIR --out OUT"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m codefusion.bundle", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="a finished training output folder")
    p.add_argument("--out", required=True, help="the bundled checkpoint folder (replaced)")
    p.add_argument("--command", default=None, help="the training command to record (default: from the run's args)")
    p.add_argument("--sentence-case-prompts", action="store_true",
                   help="sample with each prompt's first letter upper-cased, as the trainer's flag of that name does "
                        "(for a model trained on sentence-case prompts)")
    args = p.parse_args(argv)
    run, out = Path(args.run), Path(args.out)
    try:
        summary = summarize_log(run / "log.jsonl")
        trained = json.loads((run / "state" / "trainer_state.json").read_text())["args"]
        missing = [f for f in MODEL_FILES[:3] if not (run / f).is_file()]
        if missing:
            raise CodeFusionError(f"{run} has no {', '.join(missing)}")
    except (CodeFusionError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary["command"] = args.command or train_command(trained)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in MODEL_FILES:
        if (run / f).is_file():
            shutil.copy2(run / f, tmp / f)
    if args.sentence_case_prompts:  # an inference setting: the weights are untouched
        config = CodeFusionConfig.from_dict(json.loads((tmp / "config.json").read_text()))
        (tmp / "config.json").write_text(config.replace(sentence_case_prompts=True).to_json())
        summary["bundled_with"] = "--sentence-case-prompts"
    (tmp / "training_summary.json").write_text(json.dumps(summary, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(f"bundled {run} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
