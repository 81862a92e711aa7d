"""Progress of a long step, told to whoever shows it.

A step calls `advance(what, done, total)` as it goes and once more with `done == total` when it ends (early, for
a fit that stops early). It may say what it counts (`unit`, e.g. "boosting rounds") and what it has just done
(`label`, e.g. "price bands"). Below flows/ nothing knows how it is shown: the flows draw a bar on a terminal and
write a line now and then elsewhere. `quiet`, the default everywhere, shows nothing.
"""
from __future__ import annotations

from typing import Protocol


class Advance(Protocol):
    def __call__(self, what: str, done: int, total: int, *, unit: str = "", label: str = "") -> None: ...


def quiet(what: str, done: int, total: int, *, unit: str = "", label: str = "") -> None:
    """Show nothing."""
