"""`PageSnapshot`: what /ui shows, read from the warehouse the way the scorer reads its snapshot: under the
process's warehouse lock, waiting at most the scorer's `snapshot_wait` for another process, at most every
`reload_seconds`; while the file is busy the last read keeps serving, so the page never blocks on a writer."""
from __future__ import annotations

import math
import threading
import time
from datetime import UTC, datetime

from features.warehouse import WAREHOUSE_ERRORS
from serving.scorer import Scorer
from serving.ui.data import PageData, summarise_batch


class PageSnapshot:
    """What /ui shows, read from the warehouse the way the scorer reads its snapshot (see the module docstring)."""

    def __init__(self, scorer: Scorer):
        self.scorer = scorer
        self.data: PageData | None = None
        self.error: str | None = None  # why the last refresh could not read the warehouse
        self._version: tuple | None = None
        self._checked_at = -math.inf
        self._lock = threading.Lock()

    def get(self) -> PageData | None:
        """The page's data, refreshed when due; None only while there is none and the warehouse cannot be read."""
        due = self.data is None or time.monotonic() - self._checked_at >= self.scorer.reload_seconds
        if due and self._lock.acquire(blocking=self.data is None):  # a refresh under way: serve the last read
            try:
                self._refresh()
            finally:
                self._lock.release()
        return self.data

    def _refresh(self) -> None:
        self._checked_at = time.monotonic()
        warehouse = self.scorer.reader()
        policy = self.scorer.policy
        try:
            with warehouse.process_lock():
                counts = warehouse.counts()
                version = tuple(sorted(counts.items()))
                if self.data is not None and version == self._version:
                    self.error = None
                    return
                batch = warehouse.decisions.latest_scoring_batch()
                audit = warehouse.audits.latest()
                ratings = warehouse.ratings.latest()
        except WAREHOUSE_ERRORS as exc:
            self.error = f"{type(exc).__name__}: {str(exc)[:200]}"
            return
        self.data = PageData(batch=summarise_batch(batch, policy.rank_by, policy.seed), audit=audit, ratings=ratings,
                             read_at=datetime.now(UTC))
        self._version, self.error = version, None

