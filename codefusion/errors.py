"""User-facing errors: one exception type whose message names the problem (and the file)."""


class CodeFusionError(ValueError):
    """Bad input, data or checkpoint. The message is meant for the user, not a traceback reader."""
