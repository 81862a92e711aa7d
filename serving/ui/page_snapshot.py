"""`PageSnapshot`: what /ui shows, read from the warehouse the way the scorer reads its snapshot
(features/warehouse/snapshot.py `Refreshing`): under the process's warehouse lock, waiting at most the scorer's
`snapshot_wait` for another process, at most every `reload_seconds`; while the file is busy the last read keeps
serving, so the page never blocks on a writer."""
from __future__ import annotations

from datetime import UTC, datetime

from features.warehouse import Warehouse
from features.warehouse.snapshot import Refreshing
from serving.post_clearance import audit_findings
from serving.scorer import Scorer
from serving.ui.page_data import PageData, summarise_batch


class PageSnapshot:
    """What /ui shows, read from the warehouse the way the scorer reads its snapshot (see the module docstring)."""

    def __init__(self, scorer: Scorer):
        self.scorer = scorer
        self._held: Refreshing[PageData] = Refreshing(self._read, self._build, version=_version, what="page data")

    @property
    def error(self) -> str | None:
        """Why the last refresh could not read the warehouse (None after a good one)."""
        return self._held.error

    def get(self) -> PageData | None:
        """The page's data, refreshed when due; None only while there is none and the warehouse cannot be read."""
        return self._held.get(self.scorer.reader(), self.scorer.reload_seconds)

    @staticmethod
    def _read(warehouse: Warehouse) -> tuple:
        return (warehouse.decisions.latest_scoring_batch(), warehouse.audits.latest(), warehouse.ratings.latest(),
                audit_findings(warehouse))

    def _build(self, read: tuple) -> PageData:
        batch, audit, ratings, findings = read
        policy = self.scorer.policy
        return PageData(batch=summarise_batch(batch, policy.rank_by, policy.seed), audit=audit, ratings=ratings,
                        read_at=datetime.now(UTC), audit_findings=findings)


def _version(warehouse: Warehouse) -> tuple:
    return tuple(sorted(warehouse.counts().items()))
