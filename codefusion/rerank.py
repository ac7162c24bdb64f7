"""Retrieve, then rerank: a trained model's preference among real training programs, fused with TF-IDF's order.

Sampling asks a model to write a program from noise; reranking asks it only to prefer one of the programs that
retrieval found for the request, an easier task for a model too small to write well. Not the paper's method (its
CodeFusion generates): a hybrid, reported as such (results/rerank/, where each choice below was made on val).

- Pool: the programs of the nearest training utterances, one per program as the metric sees it
  (`metrics.program_key`: a Bash template, a Python AST, a CF rule's tokens), the first `POOL`.
- CodeFusion's score of a program: minus H's cross-entropy on it once N has denoised its embedding noised to
  `TIMESTEPS` fixed timesteps spread over the schedule (no self-conditioning input), averaged. The noise is one draw
  per timestep, seeded by the prompt and shared by every program in the pool (common random numbers), so a
  program's score depends on the prompt and the program alone.
- The AR baseline's score: the teacher-forced log-likelihood of the program and its end token.
- Fusion: z(similarity) + weight * z(score), z-scored within the pool; ties keep TF-IDF's order. Neither order
  alone beat retrieval at top-1 on val; their fusion did, by a few tasks, and on test by less than chance
  for CodeFusion (the AR model's scores do better).
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
import torch.nn.functional as F

from codefusion import bash, metrics
from codefusion.errors import CodeFusionError

POOL = 20
TIMESTEPS = 10
WEIGHT = 1.5


def pool(retriever, lang: str, prompt: str, size: int = POOL, search: int = 400) -> list[tuple[str, float]]:
    """(program, similarity) for the first `size` distinct programs by the metric's normal form, nearest first
    (the first program found stands for its form)."""
    seen, out = set(), []
    for code, sim in retriever.search(prompt, search):
        key = metrics.program_key(lang, code)
        if key not in seen:
            seen.add(key)
            out.append((code, sim))
            if len(out) == size:
                break
    return out


def _code_ids(model, programs: list[str]) -> torch.Tensor:
    from codefusion.trainer import encode_codes   # the trainer's own fixed-length, pad-filled rows

    return encode_codes(model.tokenizer, programs, model.config.code_len)[0].to(next(model.parameters()).device)


@torch.no_grad()
def codefusion_scores(model, prompt: str, programs: list[str], timesteps: int = TIMESTEPS) -> list[float]:
    """Minus H's mean cross-entropy on each program after denoising it from `timesteps` noise levels."""
    ids = _code_ids(model, programs)
    n, device = len(programs), ids.device
    memory, pad_mask, prompt_ids = model.encode_prompts([prompt], device)
    x0 = model.embedding(ids)
    g = torch.Generator().manual_seed(zlib.crc32(prompt.encode("utf-8")))
    noise = torch.randn((timesteps, 1) + tuple(x0.shape[1:]), generator=g).to(device=device, dtype=x0.dtype)
    levels = torch.tensor([int((i + 0.5) * model.diffusion.T / timesteps) for i in range(timesteps)], device=device)
    t = levels.repeat_interleave(n)                                   # timestep-major: row = i * n + program
    rows = timesteps * n
    x_t = model.diffusion.q_sample(x0.repeat(timesteps, 1, 1), t,
                                   noise.expand(-1, n, -1, -1).reshape(rows, *x0.shape[1:]))
    mem, mask, pids = memory.expand(rows, -1, -1), pad_mask.expand(rows, -1), prompt_ids.expand(rows, -1)
    _, scores = model.read(model.denoise(x_t, t, mem, mask), mem, mask, pids)
    ce = F.cross_entropy(scores.transpose(1, 2).float(), ids.repeat(timesteps, 1), reduction="none").mean(1)
    return (-ce.view(timesteps, n).mean(0)).tolist()


@torch.no_grad()
def autoregressive_scores(model, prompt: str, programs: list[str]) -> list[float]:
    """The teacher-forced log-likelihood of each program and its end token."""
    ids = _code_ids(model, programs)
    n = len(programs)
    memory, pad_mask, _ = model.encode_prompts([prompt], ids.device)
    out, labels = model.teacher_forced(ids, memory.expand(n, -1, -1), pad_mask.expand(n, -1))
    nll = F.cross_entropy(out.logits.transpose(1, 2).float(), labels, reduction="none", ignore_index=-100)
    return (-nll.sum(1)).tolist()


def program_scores(model, prompt: str, programs: list[str]) -> list[float]:
    """How much `model` prefers each program for the prompt (higher is better; comparable within one prompt)."""
    if not programs:
        return []
    if model.config.architecture == "autoregressive":
        return autoregressive_scores(model, prompt, programs)
    return codefusion_scores(model, prompt, programs)


def fuse(similarities: list[float], scores: list[float], weight: float = WEIGHT) -> list[tuple[int, float]]:
    """(index in the pool, fused value), best first, by z(similarity) + weight * z(score); ties keep the pool's
    order. z-scoring within the pool puts TF-IDF's cosines and a model's log-probabilities on one scale."""
    z = lambda x: (x - x.mean()) / (x.std() + 1e-9)  # noqa: E731
    fused = z(np.asarray(similarities, dtype=float)) + weight * z(np.asarray(scores, dtype=float))
    return sorted(((j, float(f)) for j, f in enumerate(fused)), key=lambda jf: -jf[1])


class Reranker:
    """Reorders a retrieval pool by a checkpoint's scores fused with the similarities. templates (Bash): the model
    was trained on NL2Bash templates, so it scores each program's template; a config saying so (`train
    --bash-templates`) turns it on, the flag is for models trained on results/template/make_data.py's folders."""

    def __init__(self, model, weight: float = WEIGHT, templates: bool = False):
        if not weight >= 0:
            raise CodeFusionError(f"the rerank weight must be 0 or more, got {weight!r}")
        if templates and model.config.language != "bash":
            raise CodeFusionError("scoring templates is defined for Bash (NL2Bash templates) only, "
                                  f"not {model.config.language}")
        self.model, self.weight, self.templates = model, weight, templates or model.config.bash_templates

    def __call__(self, prompt: str, found: list[tuple[str, float]]) -> list[tuple[str, float]]:
        """The pool's (program, similarity) pairs reordered, each with its fused value instead."""
        programs = [code for code, _ in found]
        texts = [bash.template(c) for c in programs] if self.templates else programs   # as the model trained on them
        scores = program_scores(self.model, prompt, texts)
        return [(programs[j], value) for j, value in fuse([sim for _, sim in found], scores, self.weight)]
