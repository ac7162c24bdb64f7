"""Dump every draw of a checkpoint on a split (40 DDIM draws of 20 steps per task, text and score), so rankings can
be compared offline on the same draws (mbr.py).

    PYTHONPATH=. python results/mbr/draws.py CHECKPOINT SPLIT SEED OUT.json [N_TASKS]   (data: $CODEFUSION_DATA)
"""
import json
import sys
import time

import torch

from codefusion import sampler
from codefusion.data import load_split

DRAWS = 40
ckpt, split, seed, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
n = int(sys.argv[5]) if len(sys.argv) > 5 else None
model = sampler.load_model(ckpt, device="cpu")
examples = load_split(model.config.language, split, None)[:n]
rows, t0 = [], time.time()
torch.set_grad_enabled(False)
for s in range(0, len(examples), 8):   # 8 prompts per batch, as the evaluator batches them: the same noise
    batch = examples[s:s + 8]
    run = sampler._Run(model, [e.nl for e in batch], 5, 20, seed, "ddim", True, DRAWS)
    for _ in run.steps():
        pass
    cands = run.decode(with_rounding=False)
    for i, e in enumerate(batch):
        own = sorted(cands[i * DRAWS:(i + 1) * DRAWS], key=lambda c: -c.score)
        rows.append({"nl": e.nl, "gold": e.code, "draws": [[c.text, float(c.score)] for c in own]})
    print(s + len(batch), round(time.time() - t0, 1), flush=True)
json.dump({"checkpoint": ckpt, "split": split, "seed": seed, "sampler": "ddim", "steps": 20,
           "draws_per_task": DRAWS, "tasks": rows}, open(out, "w"))
