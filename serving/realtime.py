"""Real-time state: the scorer, the thresholds its lanes apply and the log of its answers.

In real time there is no batch to rank within, so the capacity is applied through thresholds
(serving/selection.py `Thresholds`): the risk cut-offs and the exploration draw cut-off of the latest scoring
batch made with the same model and lane policy, of at least the policy's `threshold_min_rows` rows (a handful of
rows would set the cut-offs by chance). Before any such batch they come from the most recent declarations in the
warehouse scored as one batch. A declaration from that batch gets the same lane both ways.

The service reads the warehouse only to refresh its snapshot (the scorer's `ScoringContext` and the thresholds), with
the champion, at the start of each reload slot on a thread of its own (no request waits on it); while another process
holds the file, the last snapshot keeps serving. Every answer is made durable in the operational decision log
(`DecisionLog`) before it is given; the warehouse receives a copy in the background, so a call never waits on the
warehouse.
"""
from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd

from features.contract import LABEL_FIELDS
from features.warehouse import (
    STORED_BOOKKEEPING,
    WAREHOUSE_ERRORS,
    OperationalLog,
    Refreshing,
    Warehouse,
    failure_text,
)
from serving.decision_copy import LOCATOR, copy_once
from serving.scorer import Scorer, reload_slot
from serving.selection import Thresholds

THRESHOLD_WINDOW = 5_000  # recent declarations scored to learn thresholds when no batch was scored yet
COPIER_STOP_S = 60.0  # how long a shutdown waits for the copier's copy under way before it kills it
SNAPSHOT_WAIT_S = 0.2  # a refresh waits this long for a warehouse another process holds, then keeps the last snapshot
REFRESHER_STOP_S = 60.0  # how long a shutdown waits for the refresher's refresh under way
SLOT_MARGIN_S = 0.01  # the refresher wakes this long after a slot starts, so that the clock reads the new slot
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
        self._slot: float | None = None  # the reload slot of the last refresh
        self._lock = threading.Lock()
        self._digest: tuple[object, str] | None = None
        self._refresher: tuple[threading.Thread, threading.Event] | None = None

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

    def refresh(self, wait: bool = True, patient: bool = False) -> None:
        """Reload the champion, the snapshot and the thresholds when needed, once per reload slot: every worker
        process refreshes in the same slots (serving/scorer.py `reload_slot`).

        With `wait=False` (readiness probes), a refresh already under way in another thread is not waited for.
        A warehouse that cannot be read leaves the last snapshot and thresholds in place; a request's refresh waits
        `SNAPSHOT_WAIT_S` for another process's lock, a `patient` one (the service starting) the warehouse's own
        wait."""
        slot = reload_slot(self.scorer.reload_seconds)
        if slot == self._slot:
            return
        if not self._lock.acquire(blocking=wait):
            return
        try:
            self._slot = slot
            self.scorer.refresh_model()
            if not self.scorer.ready:
                return
            with contextlib.suppress(WAREHOUSE_ERRORS):  # no snapshot yet: the scorer's snapshot_error says why
                self.scorer.context(patient, check=True)  # this refresh is the schedule
                self._thresholds.get(self.scorer.reader(patient), max_age=0)
        finally:
            self._lock.release()

    def refresh_for_request(self, wait: bool = True) -> None:
        """A request's refresh: none where the refresher keeps what is held (`start_refresher`), else `refresh`."""
        if self._refresher is None or not self.ready:
            self.refresh(wait)

    def start_refresher(self) -> None:
        """Refresh at the start of each reload slot on a thread of its own, so that no request waits on the champion's
        load, the warehouse's checks or a snapshot rebuilt after an ingest: requests refresh only while nothing is held
        yet. A zero period (every call a slot of its own) keeps the refresh in the request."""
        if self.scorer.reload_seconds <= 0 or self._refresher is not None:
            return
        stop = threading.Event()
        thread = threading.Thread(target=self._refresh_each_slot, args=(stop,), name="aduana-refresher", daemon=True)
        self._refresher = (thread, stop)
        self.scorer.refreshed_apart = True
        thread.start()

    def stop_refresher(self, timeout: float = REFRESHER_STOP_S) -> None:
        """Stop the refresher (a refresh under way ends first, up to `timeout` seconds)."""
        if self._refresher is not None:
            thread, stop = self._refresher
            stop.set()
            thread.join(timeout)
            self._refresher, self.scorer.refreshed_apart = None, False

    def _refresh_each_slot(self, stop: threading.Event) -> None:
        period = self.scorer.reload_seconds
        while not stop.wait(period - time.time() % period + SLOT_MARGIN_S):  # until just after the next slot starts
            try:
                self.refresh()
            except Exception:  # a bug, not the warehouse or the registry (`refresh` keeps the last of those)
                log.exception("the background refresh failed: the service goes on with what it holds")

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


_CALLS = itertools.count()
_PROCESS = uuid.uuid4().hex[:20]  # renewed in a forked worker by `_new_process`


def _new_process() -> None:
    global _PROCESS
    _PROCESS = uuid.uuid4().hex[:20]


os.register_at_fork(after_in_child=_new_process)


def call_id() -> str:
    """An id no other call gets, in this process or another: a random one per process, and a count. uuid4 per call
    would read the kernel's random source each time, a system call that lets go of the GIL (see
    features/profiles.py `before_one`)."""
    return f"rt-{_PROCESS}{next(_CALLS):012x}"


class LogUnavailable(RuntimeError):
    """The operational log could not make an answer durable: the answer is not given (the API says 503)."""


@dataclass
class _Group:
    """One request's rows, waiting for the commit that makes them durable."""

    rows: list[dict]
    done: bool = False
    error: str | None = None


class DecisionLog:
    """Real-time answers made durable in the operational log before they leave, and copied to the warehouse.

    `record` returns once a request's rows are durable (features/warehouse/oplog.py: a synced journal segment, or a
    committed PostgreSQL transaction). Group commit, leader and followers: a request that finds no commit under way
    commits itself, with every request queued by then; requests that arrive meanwhile wait, and when that commit
    ends one of them commits them all in the next. So durability is paid once per group, not per request, and a
    lone request pays no hand-over to another thread. A commit that fails raises LogUnavailable in every request of
    its group: no answer leaves without its record. `kill -9` at any moment loses no answer that was given; an
    answer being committed when the process died may be in the log without having been given (the client saw no
    answer, and retries under a new id).

    A process of its own (serving/decision_copy.py) copies the log into the warehouse's `decisions` table every
    `sync_seconds` while the log has anything new, once a minute while it has not (idempotent, with cursors:
    features/warehouse/decisions.py `sync`); while the warehouse is busy (another process writing it) the rows wait
    in the log and the next copy takes them. Copying is not on the answer's path, nor in this process: it would hold
    the GIL the requests need."""

    def __init__(self, warehouse: Warehouse, oplog: OperationalLog, sync_seconds: float = 5.0,
                 commit_timeout: float = 10.0, write_wait: float = 0.5):
        self.warehouse = warehouse.waiting_at_most(write_wait)
        self.oplog = oplog
        self.sync_seconds, self.commit_timeout = sync_seconds, commit_timeout
        self.last_error: str | None = None  # the last commit's or sync's failure, until one succeeds
        self.commits = 0  # groups committed (a group holds one or more requests)
        self._queue: list[_Group] = []
        self._turn = threading.Condition()  # the queue, and whether a commit is under way
        self._committing = False
        self._copier: subprocess.Popen | None = None
        self._follower: threading.Thread | None = None
        self._copy_state: str | None = None  # the last copy's outcome as reported (None: copied)

    def record(self, answers: list[dict], request_id: str, policy_hash: str, thresholds_batch_id: str | None) -> None:
        """Make one request's answers durable (the scorer's output records, in request order, with their reason
        lists and contributions), or raise LogUnavailable. `request_id` may be the client's own (X-Request-ID); the
        rows' batch_id is the server's, unique to this call."""
        at = datetime.now(UTC).replace(tzinfo=None)
        batch_id = call_id()
        group = _Group([{**a, "batch_id": batch_id, "request_id": request_id, "position": i, "decided_at": at,
                         "policy_hash": policy_hash, "thresholds_batch_id": thresholds_batch_id, "source": "api"}
                        for i, a in enumerate(answers)])
        if self._copier is None:
            self.start()
        deadline = time.monotonic() + self.commit_timeout
        with self._turn:
            self._queue.append(group)
            while self._committing and not group.done:  # another request's commit: ours is in the next one
                if not self._turn.wait(deadline - time.monotonic()):
                    if group in self._queue:
                        self._queue.remove(group)
                    raise LogUnavailable(f"the decision log ({self.oplog.where}) did not confirm within "
                                         f"{self.commit_timeout:.0f} s")
            if not group.done:  # no commit under way: this request commits every group queued
                groups, self._queue, self._committing = self._queue, [], True
        if not group.done:
            self._commit(groups)
        if group.error is not None:
            raise LogUnavailable(f"the decision log ({self.oplog.where}) cannot be written: {group.error}")

    def _commit(self, groups: list[_Group]) -> None:
        try:
            self.oplog.append([row for g in groups for row in g.rows])
            error = None
        except Exception as exc:  # noqa: BLE001 - whatever failed, the waiting requests are told, not answered
            error = failure_text(exc)
            log.error("decision log: %d answers not committed, not given: %s", len(groups), error)
        with self._turn:
            self.last_error = error
            self.commits += 1
            for g in groups:
                g.error, g.done = error, True
            self._committing = False
            self._turn.notify_all()

    def start(self) -> None:
        """Start the copier (once): a process of its own (serving/decision_copy.py), so its parsing and framing
        never hold this process's GIL, and a thread that follows what it reports."""
        with self._turn:
            if self._copier is not None:
                return
            self._copier = subprocess.Popen(
                [sys.executable, "-m", "serving.decision_copy", str(self.warehouse.path), str(self.sync_seconds),
                 str(self.warehouse.busy_wait)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                env={**os.environ, LOCATOR: self.oplog.locator})
            self._follower = threading.Thread(target=self._follow, args=(self._copier,), daemon=True,
                                              name="aduana-decision-copy")
        self._follower.start()
        atexit.register(self.close)  # an app stopped without its shutdown (or none run) still ends its copier

    def _follow(self, copier: subprocess.Popen) -> None:
        for line in copier.stdout:
            state = line.strip()
            self._copied(None if state == "ok" else state)

    def _copied(self, state: str | None) -> None:
        """A copy's outcome: None, or `warning <why>` / `error <why>` (logged when it differs from the last)."""
        level, _, why = (state or "").partition(" ")
        if state is not None and state != self._copy_state:
            (log.warning if level == "warning" else log.error)("decision log: not copied to the warehouse yet: %s",
                                                                why or level)
        self._copy_state = state
        self.last_error = (why or level) if state else None

    def sync(self) -> int:
        """Copy the log's new answers into the warehouse now, in this process. Returns the rows added (0 while it
        is busy)."""
        added, state = copy_once(self.warehouse, self.oplog)
        self._copied(state)
        return added

    def close(self) -> None:
        """Stop the copier, copy what the warehouse lacks (best effort: the log keeps it otherwise) and release this
        process's log handle. Requests still being answered have committed or fail on the closed handle."""
        atexit.unregister(self.close)
        copier, self._copier = self._copier, None
        if copier is not None:
            copier.stdin.close()  # its signal to stop, after the copy under way
            try:
                copier.wait(timeout=COPIER_STOP_S)
            except subprocess.TimeoutExpired:  # a copy killed half-way leaves the previous state (one transaction)
                copier.kill()
                copier.wait()
            self._follower.join()
            self.sync()
        self.oplog.close()
