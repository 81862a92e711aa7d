"""The DuckDB warehouse under ADUANA_HOME as one object: its connections and transactions, and each operation of the
rooms beside it (reads, ingest, acknowledgements, the append-only logs) as a method, so callers hold one handle."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd

from features.errors import UserError
from features.intake.prepared import PreparedBatch
from features.warehouse import acks, reads, storing
from features.warehouse.audits import AuditLists
from features.warehouse.connection import DEFAULT_BUSY_WAIT, open_connection, process_lock
from features.warehouse.decisions import Decisions
from features.warehouse.ratings import Ratings
from features.warehouse.schema import create_tables
from features.warehouse.storing import IngestSummary


class Warehouse:
    """A DuckDB file. Open a connection per operation; DuckDB allows one writing process at a time.

    While another process holds the file (a writer, or a reader when we want to write), `connect` waits with
    backoff for up to `busy_wait` seconds, then raises WarehouseBusy. Read-only connections share the file."""

    def __init__(self, path: Path, busy_wait: float = DEFAULT_BUSY_WAIT):
        self.path = Path(path)
        self.busy_wait = busy_wait

    def waiting_at_most(self, seconds: float) -> Warehouse:
        """The same file, waiting at most `seconds` (and never longer than this one) for another process's lock."""
        return Warehouse(self.path, busy_wait=min(seconds, self.busy_wait))

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection; a writing one first creates the tables (features/warehouse/schema.py)."""
        if read_only and not self.path.exists():
            raise UserError(f"no warehouse at {self.path}: run 'aduana ingest' first")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = open_connection(self.path, read_only, self.busy_wait)
        try:
            if not read_only:
                create_tables(con)
            yield con
        finally:
            con.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A writing connection whose work lands whole or not at all."""
        with self.connect() as con:
            con.begin()
            try:
                yield con
                con.commit()
            except BaseException:
                con.rollback()
                raise

    def process_lock(self) -> threading.RLock:
        """The lock threads of this process take turns with on this file (features/warehouse/connection.py)."""
        return process_lock(self.path)

    def read(self, sql: str, params: list | None = None) -> pd.DataFrame:
        with self.connect(read_only=True) as con:
            return con.execute(sql, params or []).df()

    def append(self, table: str, rows: pd.DataFrame) -> None:
        """Append rows to an append-only table by column name, in one transaction."""
        with self.transaction() as con:
            con.register("appended", rows)
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM appended")
            con.unregister("appended")

    # -- the append-only logs, each in its own module

    @property
    def audits(self) -> AuditLists:
        """The published post-clearance audit lists (append-only; see features/warehouse/audits.py)."""
        return AuditLists(self)

    @property
    def decisions(self) -> Decisions:
        """The decision log (append-only; see features/warehouse/decisions.py)."""
        return Decisions(self)

    @property
    def ratings(self) -> Ratings:
        """The published entity risk ratings (append-only; see features/warehouse/ratings.py)."""
        return Ratings(self)

    # -- reads of the canonical tables (features/warehouse/reads.py)

    def counts(self) -> dict[str, int]:
        """Row count of every table (0 for a warehouse not created yet)."""
        return reads.counts(self)

    def declaration(self, declaration_id: str) -> dict | None:
        """One stored declaration as stored (every column, bookkeeping included), or None."""
        return reads.declaration(self, declaration_id)

    def newest_declaration_date(self) -> pd.Timestamp | None:
        return reads.newest_declaration_date(self)

    def recent_declarations(self, rows: int) -> pd.DataFrame:
        """The `rows` most recently filed declarations, every stored column included."""
        return reads.recent_declarations(self, rows)

    def entity_counts(self, keys: list[str]) -> pd.DataFrame:
        """Declarations, controls and frauds per value of the `keys` columns (features/warehouse/reads.py)."""
        return reads.entity_counts(self, keys)

    def table(self, name: str) -> pd.DataFrame:
        """A whole canonical table (declarations, manifests or traders), without bookkeeping columns."""
        return reads.table(self, name)

    def export_tables(self, folder: Path) -> dict[str, str]:
        """The canonical tables as Parquet files in `folder` (one snapshot; table → path)."""
        return reads.export_tables(self, folder)

    # -- failed expectations and their acknowledgements (features/warehouse/acks.py)

    def validation_failures(self, kind: str = "declarations") -> list[str]:
        """The failed warnings of unacknowledged batches of this kind that stored rows (the promotion gate's input)."""
        return acks.validation_failures(self, kind)

    def accepted_profiles(self, kind: str, skip: list[str]) -> list[tuple[str, dict]]:
        """(batch id, profile) of the accepted batches of this kind, oldest first, but those in `skip`."""
        return acks.accepted_profiles(self, kind, skip)

    def failed_batches(self, kind: str | None = None) -> list[dict]:
        """Every batch whose dataset-level expectations failed, oldest first, with its latest acknowledgement."""
        return acks.failed_batches(self, kind)

    def acknowledge(self, batch_id: str, reason: str, by: str) -> dict:
        """Record (append-only) that `by` accepts this batch's failed expectations, and why."""
        return acks.acknowledge(self, batch_id, reason, by)

    # -- ingest (features/warehouse/storing.py, relabelling in features/warehouse/relabel.py)

    def store(self, batch: PreparedBatch, expectations_passed: bool = True,
              expectation_failures: list[str] | None = None, profile: dict | None = None) -> IngestSummary:
        """Write one prepared batch atomically and return its reconciled summary."""
        return storing.store(self, batch, expectations_passed, expectation_failures, profile)

    def quarantine(self, con: duckdb.DuckDBPyConnection, kind: str, source: str, rows: pd.DataFrame,
                   batch_id: str, at: datetime) -> pd.DataFrame:
        """Insert rejected rows in the caller's transaction, but those quarantined before; returns those inserted."""
        return storing.quarantine(con, kind, source, rows, batch_id, at)
