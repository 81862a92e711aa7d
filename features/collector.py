"""Python's cyclic garbage collector held off while a batch is built.

A batch's reasons and decision records are hundreds of thousands of small lists and dicts, none of them in a
reference cycle. Each allocation past the collector's thresholds starts a collection, and a full one walks every
object the process holds: measured on 200,000 declarations, a fifth of the reasons' time and two thirds of the
output's assembly went to collections that found nothing. Reference counting still frees everything as usual; a
cycle made meanwhile is collected after, at the next collection.
"""
from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic cyclic collection inside the block (it was on: it is on again after, however the block ends)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
