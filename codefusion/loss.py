"""The paper's three-part training loss.

    L = || ε̂_t - ε_t ||  +  || D_s - L(y) ||  -  log p(y | D_s)

N predicts x̂0, so its error is measured on x̂0 by default ("x0"): the ε-error is the same quantity
weighted by ab_t / (1 - ab_t), which under the sqrt schedule is ~30 at small t and ~0 at large t,
so ε-weighting wastes the signal of the noisy steps (Diffusion-LM and GENIE also regress x0).
`noise_target="eps"` gives the paper's literal ε form. Pad positions count in every term: the
model must learn where the program ends.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class LossTerms:
    total: torch.Tensor
    denoise: torch.Tensor
    decoder: torch.Tensor
    ce: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        return {k: float(getattr(self, k).detach()) for k in ("total", "denoise", "decoder", "ce")}


def codefusion_loss(model, code_ids: torch.Tensor, memory: torch.Tensor, memory_pad_mask: torch.Tensor | None,
                    t: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                    noise_target: str = "x0", self_condition_prob: float = 0.5, unroll_prob: float = 0.0,
                    prompt_ids: torch.Tensor | None = None) -> LossTerms:
    """One training step's loss for a batch of code token ids (B, code_len) given E_s (B, S, width) and, for a
    model with the copy head, the prompt's token ids (B, S) that it may copy (rows of pad copy nothing).

    unroll_prob > 0: in self-conditioned batches, that share of the rows is trained on N's own earlier
    tokens (`unrolled_step`) instead of on q_sample of the gold program."""
    if unroll_prob and noise_target == "eps":
        raise ValueError("unrolled rows are noised from N's own tokens, not the gold ones: their ε has no target")
    diffusion = model.diffusion
    x0 = model.embedding(code_ids)
    if t is None:
        t = diffusion.sample_timesteps(x0.shape[0], x0.device)
    if noise is None:
        noise = torch.randn_like(x0)
    x_t = diffusion.q_sample(x0, t, noise)

    x0_prev = None
    if model.config.self_condition and torch.rand(()) < self_condition_prob:
        # Self-conditioning: train N to refine its own earlier estimate, as sampling will ask it to.
        with torch.no_grad():
            if unroll_prob > 0:
                x_t, x0_prev = unrolled_step(model, x0, t, noise, memory, memory_pad_mask, unroll_prob, prompt_ids)
            else:
                x0_prev = model.denoise(x_t, t, memory, memory_pad_mask).detach()
    x0_hat = model.denoise(x_t, t, memory, memory_pad_mask, x0_prev)

    # Embedding errors are measured in units of L's RMS, so a smaller embed_scale keeps the terms' balance.
    unit = model.config.embed_scale ** 2
    if noise_target == "eps":
        denoise = F.mse_loss(diffusion.eps_from_x0(x_t, t, x0_hat), noise)
    else:
        denoise = F.mse_loss(x0_hat, x0) / unit
    d_s, scores = model.read(x0_hat, memory, memory_pad_mask, prompt_ids)
    # Without D (the ablation) D_s is x̂0 itself, whose error the first term already counts.
    decoder = F.mse_loss(d_s, x0) / unit if model.decoder is not None else torch.zeros((), device=x0.device)
    ce = F.cross_entropy(scores.flatten(0, 1), code_ids.flatten())
    return LossTerms(total=denoise + decoder + ce, denoise=denoise, decoder=decoder, ce=ce)


def unrolled_step(model, x0, t, noise, memory, memory_pad_mask, unroll_prob: float, prompt_ids=None):
    """x_t and the self-conditioning input x̂0 built from N's own earlier tokens, for a random `unroll_prob`
    share of the rows (one unrolled step, after SUNDAE's step-unrolled denoising).

    Plain training noises the gold program, so N learns that at low noise the tokens in x_t are right. The
    clamped sampler instead steps x_t from the tokens N, D and H read at the noisier steps before, and with
    clamping those settle early: late in sampling x_t is a clear view of N's own early, often wrong, program,
    which it then keeps (the edit distance to the gold stays flat). Here a chosen row is noised to a noisier
    timestep s (uniform in t..T-1), denoised once and read through D and H, as the sampler does; x_t is
    those tokens' embeddings noised to t, and that x̂0 is the self-conditioning input, while the target stays
    the gold program, so N learns to correct what it wrote earlier. Other rows keep plain self-conditioning."""
    diffusion = model.diffusion
    rows = torch.rand(t.shape[0], device=t.device) < unroll_prob
    earlier = t + (torch.rand(t.shape, device=t.device) * (diffusion.T - t)).long()   # in t..T-1
    s = torch.where(rows, earlier, t)
    x_s = diffusion.q_sample(x0, s, noise)   # rows not chosen: s = t, the plain x_t
    x0_prev = model.denoise(x_s, s, memory, memory_pad_mask)
    x_t = x_s.clone()
    if rows.any():   # D and H only where their tokens are used
        mask = None if memory_pad_mask is None else memory_pad_mask[rows]
        ids = None if prompt_ids is None else prompt_ids[rows]
        read = model.read(x0_prev[rows], memory[rows], mask, ids)[1].argmax(-1)
        x_t[rows] = diffusion.q_sample(model.embedding(read), t[rows], noise[rows])
    return x_t, x0_prev.detach()
