"""The noise process: Gaussian diffusion on code embeddings with the sqrt schedule. It holds no weights.

Training uses `q_sample`; sampling uses a diffusers scheduler built on the same beta table
(`make_scheduler`), so few-step DDIM / DPM-Solver come for free and stay consistent with training.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from codefusion import SAMPLERS
from codefusion.errors import CodeFusionError


def sqrt_alpha_bar(t: np.ndarray, offset: float = 1e-4) -> np.ndarray:
    """Diffusion-LM's sqrt schedule: alpha_bar(t) = 1 - sqrt(t + s), t in [0, 1]."""
    return 1.0 - np.sqrt(t + offset)


def sqrt_betas(T: int = 1200, offset: float = 1e-4, max_beta: float = 0.999) -> np.ndarray:
    """Betas such that prod(1 - beta) follows the sqrt schedule (Diffusion-LM's betas_for_alpha_bar).

    The sqrt curve reaches 0 a hair before t = 1, so the last betas are capped at max_beta:
    x_T is then pure noise, which is what sampling starts from.
    """
    t1 = np.arange(T) / T
    t2 = np.arange(1, T + 1) / T
    betas = 1.0 - sqrt_alpha_bar(t2, offset) / sqrt_alpha_bar(t1, offset)
    return np.clip(betas, 0.0, max_beta)


class GaussianDiffusion:
    """q(x_t | x_0) = N(sqrt(ab_t) x_0, (1 - ab_t) I) with t in {0, ..., T-1}."""

    def __init__(self, T: int = 1200, schedule: str = "sqrt", offset: float = 1e-4):
        if schedule != "sqrt":
            raise CodeFusionError(f"unknown noise schedule {schedule!r}: only 'sqrt' is implemented")
        self.T = T
        self.offset = offset
        self.betas = sqrt_betas(T, offset)
        self.alphas_cumprod = torch.tensor(np.cumprod(1.0 - self.betas), dtype=torch.float32)

    def sample_timesteps(self, n: int, device=None) -> torch.Tensor:
        return torch.randint(0, self.T, (n,), device=device)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        ab = self.alphas_cumprod.to(x0.device)[t].view(-1, *([1] * (x0.dim() - 1)))
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def eps_from_x0(self, x_t: torch.Tensor, t: torch.Tensor, x0_hat: torch.Tensor) -> torch.Tensor:
        """The noise implied by a clean-sample prediction: the paper's ε̂_t for a model that predicts x̂0."""
        ab = self.alphas_cumprod.to(x_t.device)[t].view(-1, *([1] * (x_t.dim() - 1)))
        return (x_t - ab.sqrt() * x0_hat) / (1 - ab).sqrt()

    def make_scheduler(self, sampler: str = "ddim", steps: int = 20):
        """A diffusers scheduler over this beta table, set to `steps` inference steps (1..T)."""
        if sampler not in SAMPLERS:
            raise CodeFusionError(f"unknown sampler {sampler!r}: choose one of {', '.join(SAMPLERS)}")
        if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= self.T:
            raise CodeFusionError(f"steps must be an integer from 1 to {self.T}, got {steps!r}")
        from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler  # slow import: only when sampling

        common = dict(num_train_timesteps=self.T, trained_betas=self.betas.tolist(), prediction_type="sample",
                      timestep_spacing="trailing")  # trailing: the first step starts from t = T-1, pure noise
        if sampler == "ddim":
            sched = DDIMScheduler(clip_sample=False, set_alpha_to_one=True, **common)
        elif sampler == "ddpm":
            sched = DDPMScheduler(clip_sample=False, variance_type="fixed_small", **common)
        else:
            sched = DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2,
                                                lower_order_final=True, **common)
        sched.set_timesteps(steps)
        return sched


def inference_timesteps(scheduler, steps: int) -> list[int]:
    """Exactly `steps` timesteps. diffusers' trailing spacing builds them with a float arange that can add a
    last one at t = -1 (e.g. 7 of 1200); we stop before it, which is harmless: what we keep is x̂0."""
    return [int(t) for t in scheduler.timesteps[:steps]]


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (as in DDPM / Transformer positions)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return torch.nn.functional.pad(emb, (0, dim % 2))
