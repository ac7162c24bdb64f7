"""CodeFusion: a diffusion model that writes code from natural language (Singh et al., EMNLP 2023)."""

from codefusion.errors import CodeFusionError

LANGUAGES = ("python", "bash", "cf")
LANGUAGE_NAMES = {"python": "Python", "bash": "Bash", "cf": "CF rules"}
# Named here rather than in diffusion.py and sampler.py so that the command lines can refuse a bad name before torch
# is imported (seconds).
SAMPLERS = ("ddim", "dpm++", "ddpm")
RANKINGS = ("score", "vote", "mean-score")

__all__ = ["CodeFusionError", "LANGUAGES", "LANGUAGE_NAMES", "RANKINGS", "SAMPLERS"]
