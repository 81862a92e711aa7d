"""What a command prints: its result (text, or JSON with --json) and its one-line error."""
from __future__ import annotations

import json
import sys

from flows import bars


def emit(result: dict | list, as_json: bool, text: str) -> None:
    """The command's result on stdout: JSON with --json, else `text` (flows/render.py's)."""
    bars.finish()
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(text)


def fail(message: str, code: int, kind: str, as_json: bool) -> None:
    """One line on stderr; with --json, the same as an object on stdout, so a script always reads JSON."""
    print(f"aduana: error: {message}", file=sys.stderr)
    if as_json:
        print(json.dumps({"error": {"type": kind, "message": message, "exit_code": code}}))
    sys.exit(code)
