"""The operational decision log: where every real-time answer is made durable before it leaves the API, and from
where the warehouse's `decisions` table receives its copy. One setting apart (ADUANA_OPS_URL), never two codes:

- `Journal`, the embedded default: append-only JSON-lines segments under `<home>/decision-journal/`, one per writing
  process (N API workers never share a file, so they need no lock between them). A group of answers is one `write`
  made durable by `fdatasync` (about 0.2 ms on a local disk) before the answers leave.
- `PostgresLog`, the production stack: the `decisions` table of a PostgreSQL database that every API worker and
  replica writes, one transaction per group, unique on (batch_id, position).

The warehouse's copy (`Decisions.sync`) is replication, not DuckDB's `postgres` extension: the extension is a binary
DuckDB downloads on first use, which an offline site cannot do; the audit, the monitor and the analysts' page keep
their window queries and joins on the local columnar copy, never on the transactional store; and the copy is
idempotent (keyed by batch id and position) with a cursor per source kept in the warehouse in the same transaction,
so a sync that dies half-way repeats nothing and loses nothing. The API copies its log every few seconds where it
can write the warehouse; the readers that need every answer (the audit, the monitor) copy first, so an API replica
with the warehouse mounted read-only (or none) loses nothing either: its copy waits for theirs.
"""
from __future__ import annotations

import json
import os
import re
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from features.processes import alive

SEGMENT_BYTES = 64 * 2**20  # a writer starts a new segment past this size; the drained ones are removed
SEGMENT = re.compile(r"^(?P<host>.+)-(?P<pid>\d+)-(?P<key>[0-9a-f]{8})(?P<closed>\.closed)?\.jsonl$")


@dataclass(frozen=True)
class Change:
    """Rows of the log the warehouse has not copied yet: from one source (a journal segment, or the PostgreSQL
    table), with the cursor to record once they are copied and whether that source is finished (all copied and no
    longer written: its file can go)."""

    source: str
    rows: list[dict]
    cursor: int
    finished: bool = False


class OperationalLog(Protocol):
    """What the API writes answers to and the warehouse copies them from."""

    where: str
    locator: str  # what opens this log again in another process (`reopen_log`); a URL may hold a password

    def append(self, rows: list[dict]) -> None:
        """Make these rows durable (one group), or raise."""

    def changes(self, cursors: dict[str, int]) -> Iterator[Change]:
        """Rows past the given cursors (a source without one: from its start)."""

    def forget(self, sources: list[str]) -> None:
        """The sources whose rows are all copied and no longer written: their storage can be released."""

    def fingerprint(self) -> object | None:
        """A cheap token that changes whenever `changes` could yield something new (None: unknown, copy anyway)."""

    def close(self) -> None:
        """Release this process's handle (its segment, its connection)."""


def _encode(row: dict) -> bytes:
    return (json.dumps(row, default=_plain, separators=(",", ":")) + "\n").encode()


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    raise TypeError(f"cannot journal {type(value).__name__}")


class Journal:
    """The embedded log: this process's segment file in `folder`, written and synced per group."""

    def __init__(self, folder: Path, segment_bytes: int = SEGMENT_BYTES):
        self.folder = Path(folder)
        self.where = self.locator = str(self.folder)
        self.segment_bytes = segment_bytes
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._lock = threading.Lock()

    def append(self, rows: list[dict]) -> None:
        data = b"".join(_encode(r) for r in rows)
        with self._lock:
            if self._fd is None or self._size >= self.segment_bytes:
                self._open_segment()
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            os.fdatasync(self._fd)
            self._size += len(data)

    def _open_segment(self) -> None:
        self._close_segment()
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        self._path = self.folder / name
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = 0
        dir_fd = os.open(self.folder, os.O_RDONLY)  # the new file's name is durable too
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _close_segment(self) -> None:
        """Close this process's segment and mark it closed, so the copy can release it once drained."""
        if self._fd is None:
            return
        os.close(self._fd)
        self._path.rename(self._path.with_name(self._path.name.removesuffix(".jsonl") + ".closed.jsonl"))
        self._fd, self._path = None, None

    def close(self) -> None:
        with self._lock:
            self._close_segment()

    def changes(self, cursors: dict[str, int]) -> Iterator[Change]:
        if not self.folder.is_dir():
            return
        for path, named in self._segments():
            source = f"journal:{named['host']}-{named['pid']}-{named['key']}"
            start = cursors.get(source, 0)
            with path.open("rb") as handle:
                handle.seek(start)
                data = handle.read()
            whole = data[:data.rfind(b"\n") + 1]  # a torn last line was never synced, so never answered
            cursor = start + len(whole)
            done = named["closed"] is not None or not _writer_alive(named["host"], int(named["pid"]))
            if whole or done:
                yield Change(source, [json.loads(line) for line in whole.splitlines() if line.strip()], cursor, done)

    def fingerprint(self) -> tuple | None:
        """Each segment's name, size and whether its writer lives: no file read, no warehouse opened."""
        try:
            return tuple((p.name, p.stat().st_size, _writer_alive(m["host"], int(m["pid"]))) for p, m in self._segments())
        except FileNotFoundError:  # the folder or a drained segment went meanwhile
            return None

    def _segments(self) -> Iterator[tuple[Path, re.Match]]:
        """The folder's segment files in name order, with their name's parts (host, pid, key, closed)."""
        for path in sorted(self.folder.iterdir()):
            if named := SEGMENT.match(path.name):
                yield path, named

    def forget(self, sources: list[str]) -> None:
        for source in sources:
            stem = source.removeprefix("journal:")
            for path in (self.folder / f"{stem}.jsonl", self.folder / f"{stem}.closed.jsonl"):
                if path != self._path:
                    path.unlink(missing_ok=True)


def _writer_alive(host: str, pid: int) -> bool:
    """Whether the segment's writer may still append (a process of another host is assumed alive)."""
    return host != socket.gethostname() or alive(pid)


PG_COLUMNS = ("batch_id", "position", "decided_at", "declaration_id", "risk_score", "expected_revenue", "lane",
              "selected_by", "reasons", "model_version", "policy_hash", "source", "request_id",
              "thresholds_batch_id", "reason_list", "contributions", "contribution_base", "inclusion_probability",
              "stratum")
PG_DDL = """
CREATE TABLE IF NOT EXISTS decisions (
    seq BIGSERIAL PRIMARY KEY, txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    batch_id TEXT NOT NULL, position BIGINT NOT NULL, decided_at TIMESTAMP NOT NULL, declaration_id TEXT,
    risk_score DOUBLE PRECISION, expected_revenue DOUBLE PRECISION, lane TEXT NOT NULL, selected_by TEXT,
    reasons TEXT, model_version TEXT, policy_hash TEXT NOT NULL, source TEXT, request_id TEXT,
    thresholds_batch_id TEXT, reason_list TEXT[], contributions JSONB, contribution_base DOUBLE PRECISION,
    UNIQUE (batch_id, position));
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS inclusion_probability DOUBLE PRECISION;
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS stratum TEXT;
CREATE INDEX IF NOT EXISTS decisions_txid ON decisions (txid);
CREATE INDEX IF NOT EXISTS decisions_declaration ON decisions (declaration_id);
"""
PG_SOURCE = "postgres:decisions"


class PostgresLog:
    """The production log: a PostgreSQL `decisions` table, one transaction per group of answers.

    The copy's cursor is a transaction horizon, not a sequence number: concurrent writers commit out of sequence
    order, so "every row past the highest sequence copied" would skip a row whose transaction committed late. Each
    row records its transaction id; a copy reads, in one snapshot, the rows of every transaction at or past the
    previous copy's horizon (the oldest transaction then still running) and records this snapshot's horizon. Rows
    read twice are skipped by the warehouse's key."""

    def __init__(self, url: str):
        self.url = self.locator = url
        self.where = re.sub(r"//([^:@/]+):[^@/]*@", r"//\1:***@", url)  # never a password in a message
        self._con = None
        self._lock = threading.Lock()
        self._ready = False

    def _connection(self):  # noqa: ANN202 - psycopg is imported on use
        import psycopg

        if self._con is None or self._con.closed or self._con.broken:
            self._con = psycopg.connect(self.url, connect_timeout=5)
            if not self._ready:
                with self._con.transaction():
                    self._con.execute("SELECT pg_advisory_xact_lock(7241)")  # one DDL at a time across workers
                    self._con.execute(PG_DDL)
                self._ready = True
        return self._con

    def append(self, rows: list[dict]) -> None:
        from psycopg.types.json import Jsonb

        values = [tuple(Jsonb(r.get(c)) if c == "contributions" and r.get(c) is not None else r.get(c)
                        for c in PG_COLUMNS) for r in rows]
        marks = ", ".join(["%s"] * len(PG_COLUMNS))
        with self._lock:
            for attempt in (1, 2):  # a connection the server dropped is opened again once
                try:
                    con = self._connection()
                    with con.transaction(), con.cursor() as cur:
                        cur.executemany(f"INSERT INTO decisions ({', '.join(PG_COLUMNS)}) VALUES ({marks}) "
                                        "ON CONFLICT (batch_id, position) DO NOTHING", values)
                    return
                except Exception:
                    self._drop()
                    if attempt == 2:
                        raise

    def changes(self, cursors: dict[str, int]) -> Iterator[Change]:
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(self.url, connect_timeout=5, row_factory=dict_row) as con:
            con.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # one snapshot for both reads
            horizon = con.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS x").fetchone()["x"]
            exists = con.execute("SELECT to_regclass('decisions') IS NOT NULL AS e").fetchone()["e"]
            rows = con.execute(f"SELECT {', '.join(PG_COLUMNS)} FROM decisions WHERE txid >= %s::text::xid8 "
                               "ORDER BY seq", [str(cursors.get(PG_SOURCE, 0))]).fetchall() if exists else []
        yield Change(PG_SOURCE, rows, horizon)

    def forget(self, sources: list[str]) -> None:
        """Nothing: the PostgreSQL table is the record; it is never emptied by the copy."""

    def fingerprint(self) -> None:
        """Unknown without a query as dear as the copy's own: always copy."""

    def _drop(self) -> None:
        if self._con is not None:
            try:
                self._con.close()
            finally:
                self._con = None

    def close(self) -> None:
        with self._lock:
            self._drop()


def journal_folder(warehouse: Path) -> Path:
    """The journal's folder: beside the warehouse it is copied into (`<home>/decision-journal`)."""
    return Path(warehouse).with_name("decision-journal")


def reopen_log(locator: str) -> OperationalLog:
    """The log a `locator` names, opened in this process (the copier's: serving/decision_copy.py)."""
    return PostgresLog(locator) if locator.startswith(("postgresql://", "postgres://")) else Journal(Path(locator))


def open_log(url: str | None, warehouse: Path) -> OperationalLog:
    """The operational log a setting names: a PostgreSQL URL, else the journal beside the warehouse."""
    if url:
        if not url.startswith(("postgresql://", "postgres://")):
            from features.errors import UserError

            raise UserError(f"ADUANA_OPS_URL must be a postgresql:// URL, not {url.split(':', 1)[0]}://…")
        return PostgresLog(url)
    return Journal(journal_folder(warehouse))
