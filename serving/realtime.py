"""Real-time state: the scorer, the thresholds its lanes apply and the log of its answers.

In real time there is no batch to rank within, so the capacity is applied through thresholds
(serving/selection.py `Thresholds`): the risk cut-offs and the exploration draw cut-off of the latest scoring
batch made with the same model and lane policy, of at least the policy's `threshold_min_rows` rows (a handful of
rows would set the cut-offs by chance). Before any such batch they come from the most recent declarations in the
warehouse scored as one batch. A declaration from that batch gets the same lane both ways.

The service reads the warehouse only to refresh its snapshot (the scorer's `ScoringContext` and the thresholds);
while another process holds the file, the last snapshot keeps serving. Every answer is appended to the decision
log (`DecisionLog`) from a background thread, so a call never waits on the warehouse.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from features.contract import LABEL_FIELDS
from features.warehouse import STORED_BOOKKEEPING, WAREHOUSE_ERRORS, Refreshing, Warehouse, failure_text
from serving.scorer import DETAIL_COLUMNS, OUTPUT_COLUMNS, Scorer
from serving.selection import Thresholds

THRESHOLD_WINDOW = 5_000  # recent declarations scored to learn thresholds when no batch was scored yet
SNAPSHOT_WAIT_S = 0.2  # a refresh waits this long for a warehouse another process holds, then keeps the last snapshot
log = logging.getLogger("aduana.serving")


@dataclass(frozen=True)
class ThresholdSource:
    """What thresholds are learned from, as read from the warehouse: the latest scoring batch of enough rows made
    with the model and lane policy, else (`batch` empty) the most recent declarations, unscored."""

    model_version: str | None
    policy_hash: str
    batch: pd.DataFrame
    recent: pd.DataFrame | None


class ServiceState:
    """The scorer and its real-time thresholds, refreshed together from the warehouse (a snapshot of it)."""

    def __init__(self, scorer: Scorer):
        self.scorer = scorer
        scorer.snapshot_wait = SNAPSHOT_WAIT_S  # a request never waits long on another process's lock
        # The thresholds and where they came from (/readyz shows it), learned again when the key changes.
        self._thresholds: Refreshing[tuple[Thresholds, dict] | None] = Refreshing(
            self._read_source, build=self._learn, version=self._key, what="snapshot and thresholds")
        self._refreshed_at = -float("inf")
        self._lock = threading.Lock()
        self._digest: tuple[object, str] | None = None

    @property
    def ready(self) -> bool:
        """A champion and a warehouse snapshot to score against."""
        return self.scorer.ready and self.scorer.has_snapshot

    @property
    def thresholds(self) -> Thresholds | None:
        return self._thresholds.value[0] if self._thresholds.value is not None else None

    @property
    def thresholds_source(self) -> dict | None:
        """Where the thresholds came from (/readyz shows it)."""
        return self._thresholds.value[1] if self._thresholds.value is not None else None

    @property
    def warehouse_error(self) -> str | None:
        """Why the last thresholds refresh could not read the warehouse."""
        return self._thresholds.error

    @property
    def policy_hash(self) -> str:
        """The lane policy's digest, recorded with each answer (computed once per policy object)."""
        policy = self.scorer.policy
        if self._digest is None or self._digest[0] is not policy:
            self._digest = (policy, policy.digest())
        return self._digest[1]

    def pin(self, thresholds: Thresholds) -> None:
        """Use these thresholds until the champion or the latest scoring batch changes (benchmarks and tests)."""
        reader = self.scorer.reader()
        with reader.process_lock():
            key = self._key(reader)
        self._thresholds.put((thresholds, {"from": "pinned", "batch_id": thresholds.batch_id,
                                           "model_version": self.scorer.version, "policy_hash": self.policy_hash}), key)

    def _key(self, warehouse: Warehouse) -> tuple:
        """What the thresholds depend on: the model, the lane policy and the batch they would be learned from."""
        least = self.scorer.policy.threshold_min_rows
        return (self.scorer.version, self.policy_hash,
                warehouse.decisions.latest_batch_id(self.scorer.version, self.policy_hash, least))

    def refresh(self, wait: bool = True) -> None:
        """Reload the champion, the snapshot and the thresholds when needed, at most every reload_seconds.

        With `wait=False` (readiness probes), a refresh already under way in another thread is not waited for.
        A warehouse that cannot be read leaves the last snapshot and thresholds in place."""
        if time.monotonic() - self._refreshed_at < self.scorer.reload_seconds:
            return
        if not self._lock.acquire(blocking=wait):
            return
        try:
            self._refreshed_at = time.monotonic()
            self.scorer.refresh_model()
            if not self.scorer.ready:
                return
            with contextlib.suppress(WAREHOUSE_ERRORS):  # no snapshot yet: the scorer's snapshot_error says why
                self.scorer.context()
                self._thresholds.get(self.scorer.reader(), max_age=0)  # this refresh is the schedule
        finally:
            self._lock.release()

    def _read_source(self, warehouse: Warehouse) -> ThresholdSource:
        least = self.scorer.policy.threshold_min_rows
        latest = warehouse.decisions.latest_batch(self.scorer.version, self.policy_hash, least)
        recent = warehouse.recent_declarations(max(THRESHOLD_WINDOW, least)) if latest.empty else None
        return ThresholdSource(self.scorer.version, self.policy_hash, latest, recent)

    def _learn(self, source: ThresholdSource) -> tuple[Thresholds, dict] | None:
        """New thresholds from `source`; those held are kept only when the new ones rest on fewer rows than the
        policy asks for and the held ones were learned for the same model and lane policy (a small source never
        replaces a full one, and thresholds of another model's scores or another capacity never outlive it)."""
        learned = learn_thresholds(self.scorer, source)
        held = self.thresholds_source or {}
        same = (held.get("model_version"), held.get("policy_hash")) == (source.model_version, source.policy_hash)
        if learned is not None and not learned[1]["enough"] and self.thresholds is not None and same:
            log.warning("keeping the real-time thresholds of %s: the new source %s is smaller", held, learned[1])
            return self._thresholds.value
        return learned


def learn_thresholds(scorer: Scorer, source: ThresholdSource) -> tuple[Thresholds, dict] | None:
    """The cut-offs of the latest batch scored with the scorer's model and lane policy of at least the policy's
    `threshold_min_rows` rows, else of the most recent declarations scored as one batch; with where they came from
    (`enough`: whether that source holds the policy's minimum). None when the warehouse holds no declaration."""
    policy, latest = scorer.policy, source.batch
    least = policy.threshold_min_rows
    if latest.empty:
        if source.recent.empty:
            return None
        # Every stored field but the labels and bookkeeping: extras (xcat_/xnum_) included, as the model may use them.
        recent = source.recent.drop(columns=[c for c in (*LABEL_FIELDS, *STORED_BOOKKEEPING) if c in source.recent])
        latest = scorer.score(recent, explain_lanes=()).assign(batch_id="recent-declarations")
        described = {"from": "recent declarations", "rows": len(latest)}
    else:
        described = {"from": "scoring batch", "batch_id": str(latest["batch_id"].iloc[0]), "rows": len(latest)}
    thresholds = Thresholds.from_decisions(latest, policy.rank_by, policy.seed)
    return thresholds, {**described, "min_rows": least, "enough": len(latest) >= least,
                        "model_version": source.model_version, "policy_hash": source.policy_hash}


# The columns of a real-time answer as the decision log stores it (features/warehouse/decisions.py DECISIONS_DDL).
DECISION_LOG_COLUMNS = ("batch_id", "decided_at", "position", *OUTPUT_COLUMNS, *DETAIL_COLUMNS, "policy_hash",
                        "source", "request_id", "thresholds_batch_id")


class DecisionLog:
    """Real-time answers on their way to the warehouse's `decisions` table, beside the batch decisions.

    `record` appends to a buffer in memory (microseconds: a call pays nothing for its record). A background thread
    writes the buffer in one transaction every `flush_seconds`, sooner past `flush_rows`. Opening the DuckDB file
    and writing costs some 50 ms of CPU, which on a small machine delays the calls a flush overlaps, so the default
    interval is a few seconds rather than one (`make bench` times calls with the log on and off).

    While the warehouse is busy (another process writing it) the rows stay buffered and the next flush retries;
    rows are keyed by their batch id (one per call) and position, so a retried flush adds nothing twice. The buffer
    is bounded: when it holds `max_rows`, the API refuses to score (503) rather than answer without a record.
    `close` (the app's shutdown) writes what is left, retrying for up to `close_timeout` seconds; rows it still
    cannot write go to a spill file beside the warehouse, which the next `start` reads back, so a clean shutdown
    loses nothing. A crash loses at most the last `flush_seconds` of answers."""

    def __init__(self, warehouse: Warehouse, flush_seconds: float = 5.0, flush_rows: int = 1_000,
                 max_rows: int = 50_000, close_timeout: float = 30.0, write_wait: float = 0.5):
        self.warehouse = warehouse.waiting_at_most(write_wait)
        self.spill_path = warehouse.path.with_name(warehouse.path.name + ".pending-decisions.jsonl")
        self.flush_seconds, self.flush_rows, self.max_rows = flush_seconds, flush_rows, max_rows
        self.close_timeout = close_timeout
        self.last_error: str | None = None
        self._rows: list[dict] = []
        self._lock = threading.Lock()  # the buffer
        self._flushing = threading.Lock()  # one flush at a time
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None
        self._spilled = False  # rows were read back from the spill file and are not all written yet

    @property
    def pending(self) -> int:
        return len(self._rows)

    @property
    def full(self) -> bool:
        return len(self._rows) >= self.max_rows

    def record(self, answers: list[dict], request_id: str, policy_hash: str, thresholds_batch_id: str | None) -> None:
        """Buffer one request's answers (the scorer's output records, in request order: the score output, the
        reason list and the contributions, which the log keeps). `request_id` may be the
        client's own (X-Request-ID); the rows' batch_id is the server's, unique to this call."""
        at = datetime.now(UTC).replace(tzinfo=None)
        batch_id = f"rt-{uuid.uuid4().hex}"
        rows = [{**a, "batch_id": batch_id, "request_id": request_id, "position": i, "decided_at": at,
                 "policy_hash": policy_hash, "thresholds_batch_id": thresholds_batch_id, "source": "api"}
                for i, a in enumerate(answers)]
        with self._lock:
            self._rows.extend(rows)
            pending = len(self._rows)
        if self._thread is None:
            self.start()
        if pending >= self.flush_rows:
            self._wake.set()

    def start(self) -> None:
        """Start the background writer (once), after reading back rows a previous shutdown could not write."""
        with self._lock:
            if self._thread is not None:
                return
            if self.spill_path.exists():
                self._rows[:0] = _read_spill(self.spill_path)
                self._spilled = True
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="aduana-decision-log", daemon=True)
            self._thread.start()
        atexit.register(self.close)  # an app stopped without its shutdown (or none run) still writes its rows

    def _run(self) -> None:
        with contextlib.suppress(AttributeError, OSError):  # background work: requests get the CPU first
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)  # Linux: a thread's own nice value
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            if self._rows and not self._stop.is_set():
                self.flush()

    def flush(self) -> int:
        """Write the buffered rows in one transaction. Returns the rows written (0 when the warehouse is busy:
        they stay buffered)."""
        with self._flushing:
            with self._lock:
                rows, self._rows = self._rows, []
            if not rows:
                return 0
            try:
                frame = pd.DataFrame.from_records(rows, columns=list(DECISION_LOG_COLUMNS)).astype(
                    {"position": "int64", "risk_score": "float64", "expected_revenue": "float64",
                     "contribution_base": "float64"})
                with self.warehouse.process_lock():
                    self.warehouse.decisions.append_answers(frame)
            except Exception as exc:  # noqa: BLE001 - whatever went wrong, the rows are kept for the next try
                with self._lock:
                    self._rows[:0] = rows
                error = failure_text(exc)
                if error != self.last_error:
                    (log.warning if isinstance(exc, WAREHOUSE_ERRORS) else log.error)(
                        "decision log: %d rows kept for the next flush: %s", len(self._rows), error)
                self.last_error = error
                return 0
            if self.last_error is not None:
                log.info("decision log: writing again")
            self.last_error = None
            if self._spilled and not self._rows:
                self.spill_path.unlink(missing_ok=True)
                self._spilled = False
            return len(rows)

    def close(self) -> None:
        """Stop the writer and write what is left, retrying while the warehouse is busy; spill what still fails."""
        atexit.unregister(self.close)
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        deadline = time.monotonic() + self.close_timeout
        while self._rows and not self.flush() and time.monotonic() < deadline:
            time.sleep(0.2)
        with self._lock:
            rows = list(self._rows)
        if rows:
            _write_spill(self.spill_path, rows)
            self._spilled = True
            log.error("decision log: %d rows could not be written; kept in %s for the next start", len(rows),
                      self.spill_path)

    def discard(self) -> None:
        """Drop the buffered rows (tests)."""
        with self._lock:
            self._rows.clear()


def _write_spill(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as fh:
        for row in rows:
            fh.write(json.dumps({**row, "decided_at": row["decided_at"].isoformat()}) + "\n")
    tmp.replace(path)


def _read_spill(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{**r, "decided_at": datetime.fromisoformat(r["decided_at"])} for r in rows]
