"""What scoring, training, monitoring and the service's pages read of the warehouse: the three canonical tables, a
version that changes when they may have, and `Refreshing`, a value read from the warehouse and kept, re-read when
due unless another process holds the file (the last value keeps serving then)."""
from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pandas as pd

from features.warehouse.connection import WAREHOUSE_ERRORS, failure_text
from features.warehouse.schema import STORED_KINDS

if TYPE_CHECKING:
    from features.warehouse.warehouse import Warehouse

T = TypeVar("T")
log = logging.getLogger("aduana.warehouse")


@dataclass(frozen=True)
class Tables:
    """The canonical tables as stored (bookkeeping columns aside); a table without rows is an empty frame."""

    declarations: pd.DataFrame
    manifests: pd.DataFrame
    traders: pd.DataFrame


def snapshot_version(warehouse: Warehouse) -> tuple[int, int]:
    """(declarations stored, batches ingested): changes whenever a batch lands or relabels declarations."""
    counts = warehouse.counts()
    return counts["declarations"], counts["ingest_batches"]


def read_tables(warehouse: Warehouse) -> Tables:
    counts = warehouse.counts()
    return Tables(**{t: warehouse.table(t) if counts[t] else pd.DataFrame() for t in STORED_KINDS})


class Refreshing(Generic[T]):
    """A value read from the warehouse and kept: the last value, when it was read and why the last refresh failed.

    A refresh runs under the warehouse's process lock (the threads of this process take turns on the file): it
    reads `version(warehouse)` first, when given, and reads again only when that changed since the value was read;
    `read(warehouse)` is called under the lock, `build` (default: none) makes the value of what it read after the
    lock is let go (the costly part, which need not hold the file). How long a refresh waits for another process is
    the caller's: it passes the warehouse waiting as long as it allows (`Warehouse.waiting_at_most`). A refresh that
    fails with one of WAREHOUSE_ERRORS keeps the last value (`error` says why, logged once per distinct error); any
    other error is raised. One thread refreshes at a time; while it does, the others get the last value at once
    (only while there is none yet do they wait for it)."""

    def __init__(self, read: Callable[[Warehouse], Any], build: Callable[[Any], T] | None = None,
                 version: Callable[[Warehouse], Hashable] | None = None, what: str = "snapshot"):
        self.read, self.build, self.version, self.what = read, build, version, what
        self.value: T | None = None
        self.read_at: datetime | None = None  # when the value was read (UTC); None before the first good refresh
        self.error: str | None = None  # why the last refresh failed (failure_text); None after a good one
        self.failure: BaseException | None = None  # that refresh's exception
        self._version: Hashable | None = None
        self._checked_at = -math.inf
        self._lock = threading.Lock()

    @property
    def held(self) -> bool:
        """Whether a refresh ever succeeded (the value may be None when `read`/`build` made it so)."""
        return self.read_at is not None

    def due(self, max_age: float) -> bool:
        """Whether `get` would refresh: none held yet, or last tried `max_age` seconds ago or more."""
        return not self.held or time.monotonic() - self._checked_at >= max_age

    def get(self, warehouse: Warehouse, max_age: float) -> T | None:
        """The value, refreshed from `warehouse` first when due (see `due`); None while none has been read."""
        if not self.due(max_age) or not self._lock.acquire(blocking=not self.held):
            return self.value
        try:
            if self.due(max_age):
                self._refresh(warehouse)
        finally:
            self._lock.release()
        return self.value

    def require(self, warehouse: Warehouse, max_age: float) -> T:
        """As `get`, but while none has been read, raise the error of the refresh that failed."""
        value = self.get(warehouse, max_age)
        if not self.held and self.failure is not None:
            raise self.failure
        return value

    def start(self, warehouse: Warehouse) -> bool:
        """While none is held, refresh on another thread, the caller going on: a `get` meanwhile waits for it, and
        refreshes again where it failed. False (nothing started) where a value is held or a refresh is running."""
        if self.held or not self._lock.acquire(blocking=False):
            return False

        def refresh() -> None:
            try:
                self._refresh(warehouse)
            except Exception:  # noqa: BLE001, S110 - none held: the next `get` refreshes again and raises it
                pass
            finally:
                self._lock.release()

        threading.Thread(target=refresh, name=f"aduana-{self.what}", daemon=True).start()
        return True

    def put(self, value: T, version: Hashable | None = None) -> None:
        """Hold `value` as if read now at `version` (a value set by hand, e.g. pinned thresholds)."""
        self.value, self._version = value, version
        self.read_at, self.error, self.failure = datetime.now(UTC), None, None
        self._checked_at = time.monotonic()

    def _refresh(self, warehouse: Warehouse) -> None:
        self._checked_at = time.monotonic()
        try:
            with warehouse.process_lock():
                version = self.version(warehouse) if self.version is not None else None
                changed = not self.held or self.version is None or version != self._version
                read = self.read(warehouse) if changed else None
            if changed:
                self.value = self.build(read) if self.build is not None else read
                self._version, self.read_at = version, datetime.now(UTC)
            self.error = self.failure = None
        except WAREHOUSE_ERRORS as exc:
            error = failure_text(exc)
            if error != self.error:
                log.warning("warehouse unreadable, %s: %s",
                            f"keeping the last {self.what}" if self.held else f"no {self.what} yet", error)
            self.error, self.failure = error, exc
