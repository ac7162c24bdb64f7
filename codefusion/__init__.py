"""CodeFusion: a diffusion model that writes code from natural language (Singh et al., EMNLP 2023)."""

from codefusion.errors import CodeFusionError

LANGUAGES = ("python", "bash", "cf")
LANGUAGE_NAMES = {"python": "Python", "bash": "Bash", "cf": "CF rules"}

__all__ = ["CodeFusionError", "LANGUAGES", "LANGUAGE_NAMES"]
