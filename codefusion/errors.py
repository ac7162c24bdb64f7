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


def hub_errors() -> tuple[type[BaseException], ...]:
    """What a Hub call raises when the network or the Hub fails: huggingface_hub's errors (HTTP status, missing
    repo or file, offline cache miss), OS errors, and the HTTP client's own (connection refused, timeout):
    httpx2's under huggingface_hub 2, httpx's under 1."""
    import importlib

    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    errors = [HfHubHTTPError, LocalEntryNotFoundError, OSError]
    for client in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(client).HTTPError)
        except ImportError:
            pass
    return tuple(errors)
