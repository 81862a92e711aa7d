"""Real-time state: the scorer and the thresholds its lanes apply, refreshed together.

In real time there is no batch to rank within, so the capacity is applied through thresholds
(serving/selection.py `Thresholds`): the risk cut-offs and the exploration draw cut-off of the latest scoring
batch made with the same model (or, before any batch, of the most recent declarations in the warehouse scored
as one batch). A declaration from that batch gets the same lane both ways.
"""
from __future__ import annotations

import threading
import time

from features.data.contract import LABEL_FIELDS
from serving.scorer import Scorer
from serving.selection import Thresholds

THRESHOLD_WINDOW = 5_000  # recent declarations scored to learn thresholds when no batch was scored yet
BOOKKEEPING = ("batch_id", "row_number", "row_hash", "ingested_at", "label_batch_id")


class ServiceState:
    """The scorer and its real-time thresholds, refreshed together."""

    def __init__(self, scorer: Scorer):
        self.scorer = scorer
        self.thresholds: Thresholds | None = None
        self._thresholds_for: tuple | None = None
        self._refreshed_at = -float("inf")
        self._lock = threading.Lock()

    def pin(self, thresholds: Thresholds) -> None:
        """Use these thresholds until the champion or the decision log changes (for benchmarks and tests)."""
        self.thresholds = thresholds
        self._thresholds_for = (self.scorer.version, self.scorer.warehouse.counts()["decisions"])

    def refresh(self) -> None:
        """Reload the champion and relearn thresholds when needed, at most every reload_seconds."""
        if time.monotonic() - self._refreshed_at < self.scorer.reload_seconds:
            return
        with self._lock:
            self._refreshed_at = time.monotonic()
            self.scorer.refresh_model()
            if not self.scorer.ready:
                return
            key = (self.scorer.version, self.scorer.warehouse.counts()["decisions"])
            if key != self._thresholds_for:
                self.thresholds = learn_thresholds(self.scorer)
                self._thresholds_for = key


def learn_thresholds(scorer: Scorer) -> Thresholds | None:
    """The cut-offs of the latest batch scored with the scorer's model, else of the most recent declarations."""
    policy, warehouse = scorer.policy, scorer.warehouse
    latest = warehouse.read(
        "SELECT * FROM decisions WHERE batch_id = (SELECT batch_id FROM decisions WHERE model_version = ? "
        "ORDER BY decided_at DESC LIMIT 1) AND risk_score IS NOT NULL", [scorer.version])
    if latest.empty:
        recent = warehouse.read(f"SELECT * FROM declarations ORDER BY declaration_date DESC LIMIT {THRESHOLD_WINDOW}")
        if recent.empty:
            return None
        # Every stored field but the labels and bookkeeping: extras (xcat_/xnum_) included, as the model may use them.
        recent = recent.drop(columns=[c for c in (*LABEL_FIELDS, *BOOKKEEPING) if c in recent])
        latest = scorer.score(recent, explain_lanes=()).assign(batch_id="recent-declarations")
    return Thresholds.from_decisions(latest, policy.rank_by, policy.seed)
