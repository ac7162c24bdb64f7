"""Rerank retrieved Bash programs by a trained model's own score (see DECISIONS.md here).

Per task: the TF-IDF nearest training programs, one per template, the first POOL of them; each is scored by
CodeFusion (minus its training loss, averaged over fixed timesteps) or by the AR model (log-likelihood), and the
pool is re-sorted. Writes one JSON with top-1/3/5 of every order and each task's ranks.

Usage: python results/rerank/rerank.py --split val --out r.json [--codefusion CK ...] [--ar CK ...]
         [--templated CK ...]   (checkpoints trained on templates: they score the template, not the raw command)
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F

from codefusion import metrics, rerank
from codefusion.data import load_split
from codefusion.evaluate import RETRIEVAL_FIT_SPLIT, select_tasks
from codefusion.retrieval import TfidfRetriever
from codefusion.sampler import load_model
from codefusion.trainer import encode_codes

POOL, TIMESTEPS, SEARCH, RRF_K = 20, 10, 400, 60


@torch.no_grad()
def codefusion_scores(model, nl: str, codes: list[str], seed: int) -> tuple[list[float], list[float]]:
    """Minus the three-term loss and minus the cross-entropy alone, per program, mean over TIMESTEPS timesteps (the
    package's `rerank.codefusion_scores` is the second, chosen on val, with its noise seeded by the prompt)."""
    n, T = len(codes), model.diffusion.T
    ids = encode_codes(model.tokenizer, codes, model.config.code_len)[0]
    memory, pad_mask, prompt_ids = model.encode_prompts([nl])
    g = torch.Generator().manual_seed(seed)
    ts = [int((i + 0.5) * T / TIMESTEPS) for i in range(TIMESTEPS)]
    x0 = model.embedding(ids)                                            # (n, L, d)
    noise = torch.randn((TIMESTEPS, 1) + x0.shape[1:], generator=g)      # one draw per timestep, shared
    x0 = x0.repeat(TIMESTEPS, 1, 1)                                      # rows: timestep-major
    t = torch.tensor(ts).repeat_interleave(n)
    x_t = model.diffusion.q_sample(x0, t, noise.expand(-1, n, -1, -1).reshape(x0.shape))
    rows = x0.shape[0]
    mem, mask = memory.expand(rows, -1, -1), pad_mask.expand(rows, -1)
    pids = prompt_ids.expand(rows, -1)
    x0_hat = model.denoise(x_t, t, mem, mask)
    d_s, scores = model.read(x0_hat, mem, mask, pids)
    unit = model.config.embed_scale ** 2
    denoise = ((x0_hat - x0) ** 2).mean((1, 2)) / unit
    decoder = ((d_s - x0) ** 2).mean((1, 2)) / unit if model.decoder is not None else torch.zeros(rows)
    ce = F.cross_entropy(scores.transpose(1, 2), ids.repeat(TIMESTEPS, 1), reduction="none").mean(1)
    total = (denoise + decoder + ce).view(TIMESTEPS, n).mean(0)
    return (-total).tolist(), (-ce.view(TIMESTEPS, n).mean(0)).tolist()


def rank_of_first_hit(order: list[str], ex) -> int | None:
    for i, code in enumerate(order[:5]):
        if metrics.is_correct("bash", code, ex):
            return i + 1
    return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--split", default="val")
    p.add_argument("--subset", type=int, default=None)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--codefusion", nargs="*", default=[])
    p.add_argument("--ar", nargs="*", default=[])
    p.add_argument("--templated", nargs="*", default=[])
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_grad_enabled(False)
    tasks = select_tasks(load_split("bash", args.split, args.data_dir), args.limit, args.subset)
    retriever = TfidfRetriever.from_examples(load_split("bash", RETRIEVAL_FIT_SPLIT[args.split], args.data_dir))
    models = {f"codefusion:{c}": load_model(c, lang="bash") for c in args.codefusion}
    models.update({f"ar:{c}": load_model(c, lang="bash") for c in args.ar})
    orders: dict[str, list[int | None]] = {"retrieval": [], "retrieval, one per template": [], "pool recall": []}
    seconds: dict[str, float] = {}
    per_task = []
    for i, ex in enumerate(tasks):
        found = rerank.pool(retriever, "bash", ex.nl, POOL, SEARCH)
        pool = [(c, metrics.bash_any_template(c), sim) for c, sim in found]
        raw = [c for c, _, _ in pool]
        hits = [metrics.is_correct("bash", c, ex) for c in raw]
        retrieval_rank = rank_of_first_hit([c for c, _ in retriever.search(ex.nl, 5)], ex)
        orders["retrieval"].append(retrieval_rank)
        orders["retrieval, one per template"].append(next((j + 1 for j, h in enumerate(hits[:5]) if h), None))
        orders["pool recall"].append(1 if any(hits) else None)
        row = {"id": ex.id, "hits": [j for j, h in enumerate(hits) if h], "sims": [round(s, 5) for _, _, s in pool],
               "retrieval_rank": retrieval_rank, "scores": {}}
        for name, model in models.items():
            path = name.split(":", 1)[1]
            texts = [tpl for _, tpl, _ in pool] if path in args.templated else raw
            start = time.perf_counter()
            if name.startswith("ar:"):
                variants = {name: rerank.autoregressive_scores(model, ex.nl, texts)}
            else:
                total, ce = codefusion_scores(model, ex.nl, texts, seed=i)
                variants = {name: total, name + " (ce only)": ce}
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
            for vname, sc in variants.items():
                row["scores"][vname] = [round(x, 5) for x in sc]
                model_order = sorted(range(len(raw)), key=lambda j: -sc[j])   # stable: ties keep TF-IDF order
                # Reciprocal rank fusion (Cormack et al., 2009; its usual k = 60) of the model's and TF-IDF's orders.
                model_rank = {j: r for r, j in enumerate(model_order)}
                fused = sorted(range(len(raw)), key=lambda j: -(1 / (RRF_K + 1 + j) + 1 / (RRF_K + 1 + model_rank[j])))
                for oname, order in ((vname, model_order), (vname + ", fused with TF-IDF (RRF)", fused)):
                    orders.setdefault(oname, []).append(next((r + 1 for r, j in enumerate(order[:5]) if hits[j]), None))
        per_task.append(row)
        if (i + 1) % 50 == 0:
            print(i + 1, {k: round(metrics.top_k(v, 1), 1) for k, v in orders.items()}, flush=True)
    summary = {name: {f"top{k}": round(metrics.top_k(ranks, k), 2) for k in (1, 3, 5)}
               for name, ranks in orders.items()}
    summary["pool recall"] = {f"recall@{POOL}": summary.pop("pool recall")["top1"]}
    out = {"split": args.split, "n_tasks": len(tasks), "subset": args.subset, "limit": args.limit, "pool": POOL,
           "timesteps": TIMESTEPS, "templated": args.templated, "summary": summary,
           "seconds_per_task": {k: round(v / len(tasks), 4) for k, v in seconds.items()}, "tasks": per_task}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps({"summary": summary, "seconds_per_task": out["seconds_per_task"]}, indent=1))


if __name__ == "__main__":
    main()
