"""User-facing errors: one exception type whose message names the problem (and the file)."""

from __future__ import annotations

import sys
from collections.abc import Callable


class CodeFusionError(ValueError):
    """Bad input, data or checkpoint. The message is meant for the user, not a traceback reader."""


def run_cli(body: Callable[[], object]) -> int:
    """Run a command-line entry point's body: a CodeFusionError becomes `error: ...` and exit code 2."""
    try:
        body()
    except CodeFusionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
