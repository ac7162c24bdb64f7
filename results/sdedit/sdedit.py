"""Retrieval-initialised CodeFusion (SDEdit), the session-47 experiment in val.md: start denoising from the
noised embeddings of each task's five nearest training programs instead of from pure noise.

    PYTHONPATH=. python results/sdedit/sdedit.py LANG SPLIT CHECKPOINT T0[,T0...] STEPS SELFCOND [SEED [LIMIT]]

A research script, not part of the package: it reaches into the sampler's private _Run."""
import sys
import time

import torch

from codefusion import sampler as S
from codefusion.data import load_split
from codefusion.retrieval import TfidfRetriever
from codefusion.trainer import encode_codes
from codefusion.evaluate import score_task, summarize, Answer

lang, split, ckpt = sys.argv[1], sys.argv[2], sys.argv[3]
t0s = [int(x) for x in sys.argv[4].split(",")]
steps = int(sys.argv[5]); selfcond = sys.argv[6] == "1"; seed = int(sys.argv[7]) if len(sys.argv) > 7 else 0
limit = int(sys.argv[8]) if len(sys.argv) > 8 else None
torch.set_num_threads(1)
model = S.load_model(ckpt, lang=lang)
fit = "train_full" if split == "test" else "train"
ret = TfidfRetriever.from_examples(load_split(lang, fit))
exs = load_split(lang, split)[:limit]
K = 5
base = None
for t0 in t0s:
    recs_model, recs_ret = [], []
    start = time.time()
    for b in range(0, len(exs), 8):
        batch = exs[b:b+8]
        found = [ret.search(ex.nl, K) for ex in batch]
        codes = []
        for f in found:
            cs = [c for c, _ in f]
            cs += [cs[-1]] * (K - len(cs))
            codes += cs
        with torch.inference_mode():
            N = max(1, round(model.config.diffusion_steps * steps / t0))
            run = S._Run(model, [ex.nl for ex in batch], K, N, seed, "ddim")
            ids, _ = encode_codes(model.tokenizer, codes, model.config.code_len)
            x0 = model.embedding(ids.to(run.x_t.device)).to(run.x_t.dtype)
            tt = torch.full((x0.shape[0],), t0, dtype=torch.long)
            run.x_t = model.diffusion.q_sample(x0, tt, run.x_t)
            run.timesteps = [t for t in run.timesteps if t <= t0]
            if selfcond:
                run.x0_hat = x0
            for _ in run.steps():
                pass
            cands = run.decode(False)
        for i, ex in enumerate(batch):
            cs = cands[i*K:(i+1)*K]
            recs_model.append(score_task(lang, ex, [Answer(c.text, c.score) for c in cs], K, 0.0))
            if base is None:
                recs_ret.append(score_task(lang, ex, [Answer(c) for c, _ in found[i]], K, 0.0))
    s = summarize(lang, recs_model, [1, 3, 5])
    print(f"t0={t0} steps={len(run.timesteps)} selfcond={selfcond}: top {[round(v,2) for v in s['top_k'].values()]} valid {s['validity']:.1f} ({time.time()-start:.0f}s)", flush=True)
    if base is None:
        base = summarize(lang, recs_ret, [1, 3, 5])
        print(f"retrieval: top {[round(v,2) for v in base['top_k'].values()]} valid {base['validity']:.1f}", flush=True)
