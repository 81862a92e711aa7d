"""Taking turns on the warehouse file: opening a DuckDB connection with a bounded wait for another process, the lock
threads of one process share, the ingest turn of a home, and what a wait that ran out raises and says."""
from __future__ import annotations

import fcntl
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from features.errors import UserError

DEFAULT_BUSY_WAIT = 30.0  # seconds Warehouse.connect waits for another process to let go of the file
# What a page or an answer says while the warehouse cannot be read or written because another process holds it.
BUSY = "the warehouse is busy (another process is writing it)"


class WarehouseBusy(RuntimeError):
    """Another process held the warehouse file for longer than the wait allowed. Not bad input: retry later."""

    def __init__(self, path: Path, waited: float, holder: str | None = None):
        self.path, self.waited, self.holder = Path(path), waited, holder
        who = "another thread of this process" if holder == str(os.getpid()) else "another process"
        by = f" (held by process {holder})" if holder and who == "another process" else ""
        super().__init__(f"warehouse {self.path} is busy: {who} has it open{by}; waited {waited:.1f} s. "
                         "Retry when it has finished (or allow a longer wait)")


class IngestBusy(WarehouseBusy):
    """Another ingest into this home kept its turn for longer than the wait allowed. Not bad input: retry later."""

    def __init__(self, lock: Path, waited: float, holder: str | None = None):
        self.path, self.waited, self.holder = Path(lock), waited, holder
        by = f" (process {holder})" if holder else ""
        RuntimeError.__init__(self, f"another ingest into this home is running{by}; waited {waited:.1f} s for its turn "
                                    f"({self.path}). Retry when it has finished")


# What reading the warehouse raises while another process holds it (or it cannot be opened): not a bug, a wait.
WAREHOUSE_ERRORS = (UserError, WarehouseBusy, duckdb.Error)


def failure_text(exc: BaseException) -> str:
    """A failure as logs and health answers tell it: its type and the start of its message."""
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def open_connection(path: Path, read_only: bool, busy_wait: float) -> duckdb.DuckDBPyConnection:
    """A connection, waiting (silently, with backoff) for up to `busy_wait` seconds while another process holds a
    conflicting lock, then WarehouseBusy."""
    started = time.monotonic()
    pause = 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            # Another process holds a conflicting lock, or another thread of this one (the API's decision-log
            # copier, say) has the file open in the other mode: DuckDB refuses both at once within a process.
            if isinstance(exc, duckdb.IOException) and "Could not set lock" not in str(exc):
                raise UserError(f"warehouse {path} cannot be opened ({str(exc).splitlines()[0]})") from exc
            if isinstance(exc, duckdb.ConnectionException) and "different configuration" not in str(exc):
                raise
            waited = time.monotonic() - started
            if waited >= busy_wait:
                holder = re.search(r"\(PID (\d+)\)", str(exc))
                raise WarehouseBusy(path, waited, holder.group(1) if holder else str(os.getpid())) from exc
            time.sleep(min(pause, busy_wait - waited))
            pause = min(pause * 2, 1.0)


_PROCESS_LOCKS: dict[Path, threading.RLock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


def process_lock(path: Path) -> threading.RLock:
    """The lock threads of this process take turns with on this file: DuckDB refuses a read-only and a writing
    connection to one file at once within a process (the API reads its snapshot while its decision log writes)."""
    with _PROCESS_LOCKS_GUARD:
        return _PROCESS_LOCKS.setdefault(Path(path).resolve(), threading.RLock())


@contextmanager
def ingest_turn(lock: Path, wait: float, on_wait: Callable[[str | None], None] | None = None) -> Iterator[None]:
    """One ingest at a time per home: an exclusive lock on the file `lock` (fcntl, so released when the process
    ends, however it ends), awaited with backoff for up to `wait` seconds, then IngestBusy.

    What an ingest checks a batch against and writes besides the warehouse (the Great Expectations context, the
    reference profile) is shared by every run on the home, so two runs must not interleave there. The holder writes
    its process id into the file, so a waiting run (told once through `on_wait`) can say whom it waits for."""
    lock = Path(lock)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a+") as handle:
        started, pause, told = time.monotonic(), 0.05, False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or None
                waited = time.monotonic() - started
                if waited >= wait:
                    raise IngestBusy(lock, waited, holder) from None
                if on_wait is not None and not told:
                    on_wait(holder)
                    told = True
                time.sleep(min(pause, wait - waited))
                pause = min(pause * 2, 1.0)
        try:
            handle.truncate(0)
            handle.write(str(os.getpid()))
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
