"""Noise-temperature probe (session 58): the evaluator, with x_T drawn from N(0, TAU^2 I) instead of N(0, I).

    TAU=0.6 PYTHONPATH=. python results/noise_scale/probe.py --lang bash --split val --checkpoint checkpoints/bash \
        --seed 0 --out val_tau0.6_seed0.json

Every other argument is the evaluator's. Not in the package: see DECISIONS.md here. `summarize` writes the
summaries of a folder of such reports (files named <prefix>tau<TAU>_seed<SEED>.json) into one JSON."""
import json
import os
import re
import sys
from pathlib import Path

import codefusion.sampler as sampler

TAU = float(os.environ.get("TAU", "1"))
SUMMARY_KEYS = ("top_k", "validity", "bleu_top1", "diversity", "edit_distance_top1")   # what summarize keeps
_init = sampler._Run.__init__


def _cold_init(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self.x_t = self.x_t * TAU   # the sampler's own draw, scaled: the same noise direction at every τ


def summarize(folder: str, prefix: str, out: str) -> None:
    runs = {}
    for f in sorted(Path(folder).glob(f"{prefix}tau*_seed*.json")):
        tau, seed = re.fullmatch(rf"{re.escape(prefix)}tau([0-9.]+)_seed(\d+)\.json", f.name).groups()
        s = json.loads(f.read_text())["summary"]
        runs.setdefault(tau, {})[seed] = {key: s.get(key) for key in SUMMARY_KEYS}
    Path(out).write_text(json.dumps({"tau": runs}, indent=1) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["summarize"]:
        summarize(*sys.argv[2:5])
        sys.exit(0)
    sampler._Run.__init__ = _cold_init
    from codefusion.evaluate import main

    sys.exit(main(sys.argv[1:]))
