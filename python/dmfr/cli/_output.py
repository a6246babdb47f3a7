"""The `--json` contract of the Python verbs (docs/service.md, "The Python verbs' JSON contract").

With `--json` a verb's last stdout line is exactly one compact JSON object: its result, or, when it
fails on bad input (a DmfrError), `{"error": {"type": ..., "message": ...}}` (exit code 2). Anything
a verb prints before it (progress, notes) stays on earlier lines, so a caller reads the last line.
The service (ts/service/python-cli.ts) relies on this; human output is unchanged without --json.
"""
from __future__ import annotations

import json
import sys


def emit_json(obj: dict) -> None:
    """Print `obj` as one compact JSON line (non-finite floats are not JSON: they become null)."""
    sys.stdout.write(json.dumps(_finite(obj), separators=(",", ":"), allow_nan=False) + "\n")
    sys.stdout.flush()


def emit_error(exc: BaseException) -> None:
    emit_json({"error": {"type": type(exc).__name__, "message": str(exc)}})


def _finite(value):
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
