"""`python -m codefusion.train` with t drawn with density rising in t: t = floor(T u^(1/P)), P from $T_POWER (1: uniform).

    T_POWER=2 PYTHONPATH=. python results/draw_recall/train_tpow.py --lang bash ... (the flags of the link it replaces)
"""
import os
import sys

import torch

from codefusion import diffusion

P = float(os.environ["T_POWER"])


def sample_timesteps(self, n, device=None):
    u = torch.rand(n, device=device)
    return (self.T * u.pow(1.0 / P)).long().clamp_(max=self.T - 1)


diffusion.GaussianDiffusion.sample_timesteps = sample_timesteps
from codefusion.train import main  # noqa: E402
sys.exit(main())
