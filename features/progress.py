"""Progress of a long step, told to whoever shows it.

A step calls `advance(what, done, total)` as it goes and once more with `done == total` when it ends (early, for
a fit that stops early). Below flows/ nothing knows how it is shown: the flows draw a bar on a terminal and write
a line now and then elsewhere. `quiet`, the default everywhere, shows nothing.
"""
from __future__ import annotations

from collections.abc import Callable

Advance = Callable[[str, int, int], None]


def quiet(what: str, done: int, total: int) -> None:
    """Show nothing."""
