"""The DuckDB warehouse under ADUANA_HOME: canonical tables, the quarantine, the batch log and their DDL.

A batch is stored in one transaction: valid rows, quarantined rows and the batch record land together or
not at all, so a crash mid-way leaves the previous state intact.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from features.contract import KEYS, LABEL_FIELDS, field_types, label_contradictions
from features.errors import UserError
from features.intake.batch import PreparedBatch, reject
from features.intake.mapping import EXTRA_CATEGORICAL_PREFIX, EXTRA_NUMERIC_PREFIX
from features.warehouse.audits import AUDITS_DDL, AuditLists
from features.warehouse.decisions import Decisions
from features.warehouse.ratings import RATINGS_DDL, Ratings

DUCK_TYPES = {"text": "VARCHAR", "date": "DATE", "number": "DOUBLE", "integer": "BIGINT", "flag": "TINYINT"}
STORED_KINDS = ("declarations", "manifests", "traders")
OUTCOME_FIELDS = LABEL_FIELDS  # what an outcomes file may relabel
TABLES = (*STORED_KINDS, "quarantine", "ingest_batches", "decisions", "audit_lists", "ratings")

QUARANTINE_DDL = """
CREATE TABLE IF NOT EXISTS quarantine (
    batch_id VARCHAR NOT NULL, kind VARCHAR NOT NULL, source VARCHAR NOT NULL, row_number BIGINT,
    reason VARCHAR NOT NULL, message VARCHAR NOT NULL, raw VARCHAR, row_hash BIGINT,
    quarantined_at TIMESTAMP NOT NULL)
"""
DECISIONS_DDL = """
CREATE TABLE IF NOT EXISTS decisions (
    batch_id VARCHAR NOT NULL, decided_at TIMESTAMP NOT NULL, position BIGINT NOT NULL,
    declaration_id VARCHAR, risk_score DOUBLE, expected_revenue DOUBLE, lane VARCHAR NOT NULL,
    selected_by VARCHAR, reasons VARCHAR, model_version VARCHAR, policy_hash VARCHAR NOT NULL, source VARCHAR);
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS request_id VARCHAR;
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS thresholds_batch_id VARCHAR;
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS reason_list VARCHAR[];
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS contributions
    STRUCT(feature VARCHAR, family VARCHAR, value VARCHAR, contribution DOUBLE)[];
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS contribution_base DOUBLE;
"""
# Real-time answers (the API) are decisions too: batch_id is the call's own id (rt-…), request_id the request's id
# (the client's X-Request-ID when it sent one), position the item's place in the request, thresholds_batch_id the
# scoring batch whose cut-offs gave the lane. Scoring batches leave the two added columns empty: `request_id IS
# NULL` tells a batch decision. `reason_list` holds the reasons as a list (`reasons` is them joined with "; ");
# `contributions` the deciding model's strongest SHAP contributions (log-odds) for an explained row, and
# `contribution_base` their base value (features/warehouse/decisions.py). Each writing connection adds the columns a
# warehouse of an earlier version lacks; its older rows read as NULL there: no list, no stored contributions.
BATCHES_DDL = """
CREATE TABLE IF NOT EXISTS ingest_batches (
    batch_id VARCHAR PRIMARY KEY, kind VARCHAR, source VARCHAR, source_sha256 VARCHAR,
    started_at TIMESTAMP, finished_at TIMESTAMP, "read" BIGINT, stored BIGINT, updated BIGINT,
    quarantined BIGINT, duplicates BIGINT, expectations_passed BOOLEAN, expectations VARCHAR,
    unknown_columns VARCHAR)
"""
# The profile of each batch that stored rows (expectations/reference.py), written in the batch's own transaction: the
# reference profile under ADUANA_HOME is merged from these after the commit, and a run that dies in between leaves
# what the next run needs to fold the batch in (Warehouse.accepted_profiles).
PROFILES_DDL = """
CREATE TABLE IF NOT EXISTS batch_profiles (batch_id VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, profile VARCHAR NOT NULL)
"""
ACKS_DDL = """
CREATE TABLE IF NOT EXISTS batch_acknowledgements (
    batch_id VARCHAR NOT NULL, acknowledged_at TIMESTAMP NOT NULL, acknowledged_by VARCHAR NOT NULL,
    reason VARCHAR NOT NULL)
"""


@dataclass
class IngestSummary:
    """What happened to every row of one file: read = stored + quarantined + duplicates."""

    batch_id: str
    kind: str
    source: str
    read: int
    stored: int
    quarantined: int
    duplicates: int
    updated: int = 0  # of `stored`, rows that replaced or relabelled an existing row
    expectations_passed: bool = True
    expectation_failures: list[str] = field(default_factory=list)
    unknown_columns: list[str] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    conversions: list[str] = field(default_factory=list)  # the mapping's recodes and unit conversions, readable
    notes: list[str] = field(default_factory=list)  # about the file as a whole, e.g. that its labels are absent

    @property
    def reconciles(self) -> bool:
        return self.read == self.stored + self.quarantined + self.duplicates

    def to_dict(self) -> dict:
        return asdict(self) | {"reconciles": self.reconciles}


def _table_ddl(kind: str) -> str:
    types = field_types(kind)
    columns = [f'"{name}" {DUCK_TYPES[t]}' for name, t in types.items()]
    columns[0] += " PRIMARY KEY" if list(types)[0] == KEYS[kind] else ""
    meta = ["batch_id VARCHAR", "row_number BIGINT", "row_hash BIGINT", "ingested_at TIMESTAMP"]
    if kind == "declarations":
        meta.append("label_batch_id VARCHAR")
    return f"CREATE TABLE IF NOT EXISTS {kind} ({', '.join(columns + meta)})"


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether a table exists (a warehouse written by an older version may lack the newer ones)."""
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchone()[0])


def _same_values(new: pd.Series, old: pd.Series) -> np.ndarray:
    """Element-wise equality where two missing values count as equal."""
    if pd.api.types.is_datetime64_any_dtype(new):
        new, old = new.astype("datetime64[us]"), pd.to_datetime(old).astype("datetime64[us]")
    else:
        new, old = new.astype("float64"), old.astype("float64")
    new, old = new.reset_index(drop=True), old.reset_index(drop=True)
    return ((new.isna() & old.isna()) | (new == old).fillna(False)).to_numpy(dtype=bool)


_PROCESS_LOCKS: dict[Path, threading.RLock] = {}  # see Warehouse.process_lock
_PROCESS_LOCKS_GUARD = threading.Lock()


class WarehouseBusy(RuntimeError):
    """Another process held the warehouse file for longer than the wait allowed. Not bad input: retry later."""

    def __init__(self, path: Path, waited: float, holder: str | None = None):
        self.path, self.waited, self.holder = Path(path), waited, holder
        by = f" (held by process {holder})" if holder else ""
        super().__init__(f"warehouse {self.path} is busy: another process has it open{by}; waited {waited:.1f} s. "
                         "Retry when that process has finished (or allow a longer wait)")


DEFAULT_BUSY_WAIT = 30.0  # seconds Warehouse.connect waits for another process to let go of the file


class IngestBusy(WarehouseBusy):
    """Another ingest into this home kept its turn for longer than the wait allowed. Not bad input: retry later."""

    def __init__(self, lock: Path, waited: float, holder: str | None = None):
        self.path, self.waited, self.holder = Path(lock), waited, holder
        by = f" (process {holder})" if holder else ""
        RuntimeError.__init__(self, f"another ingest into this home is running{by}; waited {waited:.1f} s for its turn "
                                    f"({self.path}). Retry when it has finished")


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

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        """A connection, waiting (silently, with backoff) while another process holds a conflicting lock."""
        started = time.monotonic()
        pause = 0.05
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only)
            except duckdb.IOException as exc:
                if "Could not set lock" not in str(exc):
                    raise UserError(f"warehouse {self.path} cannot be opened ({str(exc).splitlines()[0]})") from exc
                waited = time.monotonic() - started
                if waited >= self.busy_wait:
                    holder = re.search(r"\(PID (\d+)\)", str(exc))
                    raise WarehouseBusy(self.path, waited, holder.group(1) if holder else None) from exc
                time.sleep(min(pause, self.busy_wait - waited))
                pause = min(pause * 2, 1.0)

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        if read_only and not self.path.exists():
            raise UserError(f"no warehouse at {self.path}: run 'aduana ingest' first")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = self._open(read_only)
        try:
            if not read_only:
                for kind in STORED_KINDS:
                    con.execute(_table_ddl(kind))
                con.execute(QUARANTINE_DDL)
                con.execute(BATCHES_DDL)
                con.execute(DECISIONS_DDL)
                con.execute(ACKS_DDL)  # append-only: who accepted a batch's failed warnings, when, why
                con.execute(PROFILES_DDL)
                con.execute(AUDITS_DDL)
                con.execute(RATINGS_DDL)
            yield con
        finally:
            con.close()

    def process_lock(self) -> threading.RLock:
        """The lock threads of this process take turns with on this file: DuckDB refuses a read-only and a
        writing connection to one file at once within a process (the API reads its snapshot while its decision
        log writes)."""
        with _PROCESS_LOCKS_GUARD:
            return _PROCESS_LOCKS.setdefault(self.path.resolve(), threading.RLock())

    def counts(self) -> dict[str, int]:
        """Row count of every table (0 for a warehouse not created yet)."""
        if not self.path.exists():
            return {t: 0 for t in TABLES}
        with self.connect(read_only=True) as con:
            tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
            return {t: (con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] if t in tables else 0) for t in TABLES}

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

    def declaration(self, declaration_id: str) -> dict | None:
        """One stored declaration as stored (every column, bookkeeping included), or None."""
        if not self.path.exists():
            return None
        found = self.read("SELECT * FROM declarations WHERE declaration_id = ?", [declaration_id])
        return found.iloc[0].to_dict() if len(found) else None

    def newest_declaration_date(self) -> pd.Timestamp | None:
        newest = self.read("SELECT max(declaration_date) AS newest FROM declarations")["newest"].iloc[0]
        return None if pd.isna(newest) else pd.Timestamp(newest)

    def recent_declarations(self, rows: int) -> pd.DataFrame:
        """The `rows` most recently filed declarations, every stored column included."""
        return self.read("SELECT * FROM declarations ORDER BY declaration_date DESC LIMIT ?", [rows])

    def control_history(self) -> pd.DataFrame:
        """Every declaration's importer and control outcome (inspected, fraud)."""
        return self.read("SELECT importer_id, inspected, fraud FROM declarations")

    def table(self, name: str) -> pd.DataFrame:
        """A whole canonical table (declarations, manifests or traders), without bookkeeping columns."""
        if name not in STORED_KINDS:
            raise ValueError(f"unknown table {name!r}")
        frame = self.read(f"SELECT * FROM {name}")
        return frame.drop(columns=[c for c in ("batch_id", "row_number", "row_hash", "ingested_at", "label_batch_id")
                                   if c in frame.columns])

    def validation_failures(self, kind: str = "declarations") -> list[str]:
        """The failed warnings of batches of this kind that stored rows and that nobody has acknowledged.

        One `"{batch_id}: {failures as JSON}"` per batch, oldest first (the promotion gate's input)."""
        if not self.path.exists():
            return []
        with self.connect(read_only=True) as con:
            acked = "AND batch_id NOT IN (SELECT batch_id FROM batch_acknowledgements)" \
                if _has_table(con, "batch_acknowledgements") else ""
            failed = con.execute("SELECT batch_id, expectations FROM ingest_batches WHERE kind = ? AND stored > 0 "
                                 f"AND NOT expectations_passed {acked} ORDER BY started_at", [kind]).df()
        out = []
        for r in failed.itertuples():
            listed = json.loads(r.expectations or "[]")
            warnings = [f for f in listed if not str(f).startswith("critical")]
            if warnings or not listed:
                out.append(f"{r.batch_id}: {json.dumps(warnings)}")
        return out

    def accepted_profiles(self, kind: str, skip: list[str]) -> list[tuple[str, dict]]:
        """(batch id, profile) of the stored batches of this kind that passed their expectations or were acknowledged,
        oldest first, but those in `skip` (the ones a reference already holds)."""
        if not self.path.exists():
            return []
        with self.connect(read_only=True) as con:
            if not _has_table(con, "batch_profiles"):
                return []
            acked = "OR b.batch_id IN (SELECT batch_id FROM batch_acknowledgements)" \
                if _has_table(con, "batch_acknowledgements") else ""
            found = con.execute(
                "SELECT p.batch_id, p.profile FROM batch_profiles p JOIN ingest_batches b ON b.batch_id = p.batch_id "
                f"WHERE p.kind = ? AND (b.expectations_passed {acked}) AND NOT list_contains(?::VARCHAR[], p.batch_id) "
                "ORDER BY b.started_at", [kind, skip]).fetchall()
        return [(batch_id, json.loads(profile)) for batch_id, profile in found]

    def failed_batches(self, kind: str | None = None) -> list[dict]:
        """Every batch whose dataset-level expectations failed, oldest first, with its latest acknowledgement."""
        if not self.path.exists():
            return []
        with self.connect(read_only=True) as con:
            acks = ("(SELECT batch_id, acknowledged_at, acknowledged_by, reason FROM batch_acknowledgements "
                    "QUALIFY row_number() OVER (PARTITION BY batch_id ORDER BY acknowledged_at DESC) = 1)"
                    if _has_table(con, "batch_acknowledgements") else
                    "(SELECT NULL::VARCHAR AS batch_id, NULL::TIMESTAMP AS acknowledged_at, "
                    "NULL::VARCHAR AS acknowledged_by, NULL::VARCHAR AS reason WHERE false)")
            frame = con.execute(
                "SELECT b.batch_id, b.kind, b.source, b.started_at, b.stored, b.quarantined, b.expectations, "
                f"a.acknowledged_at, a.acknowledged_by, a.reason FROM ingest_batches b LEFT JOIN {acks} a "
                "ON a.batch_id = b.batch_id WHERE NOT b.expectations_passed AND (?::VARCHAR IS NULL OR b.kind = ?) "
                "ORDER BY b.started_at", [kind, kind]).df()
        when = lambda t: None if pd.isna(t) else pd.Timestamp(t).isoformat(sep=" ", timespec="seconds")  # noqa: E731
        rows = []
        for r in frame.itertuples():
            failures = json.loads(r.expectations or "[]")
            acked = not pd.isna(r.acknowledged_by)
            rows.append({
                "batch_id": r.batch_id, "kind": r.kind, "source": r.source, "file": Path(r.source).name,
                "started_at": when(r.started_at), "stored": int(r.stored), "quarantined": int(r.quarantined),
                "rejected": not r.stored and any(str(f).startswith("critical") for f in failures),
                "failures": failures, "acknowledged": acked,
                "acknowledged_by": r.acknowledged_by if acked else None,
                "acknowledged_at": when(r.acknowledged_at) if acked else None,
                "ack_reason": r.reason if acked else None,
            })
        return rows

    def acknowledge(self, batch_id: str, reason: str, by: str) -> dict:
        """Record (append-only) that `by` accepts this batch's failed expectations, and why."""
        reason = reason.strip()
        if not reason:
            raise UserError("an acknowledgement needs a reason (--reason TEXT)")
        if not self.path.exists():
            raise UserError(f"unknown batch id {batch_id!r}: no warehouse at {self.path}")
        at = datetime.now(UTC).replace(tzinfo=None)
        with self.transaction() as con:
            found = con.execute("SELECT kind, expectations_passed FROM ingest_batches WHERE batch_id = ?",
                                [batch_id]).fetchall()
            if not found:
                raise UserError(f"unknown batch id {batch_id!r} (see 'aduana warnings')")
            if found[0][1]:
                raise UserError(f"batch {batch_id} passed its expectations: nothing to acknowledge")
            con.execute("INSERT INTO batch_acknowledgements VALUES (?, ?, ?, ?)", [batch_id, at, by, reason])
        return {"batch_id": batch_id, "kind": found[0][0], "acknowledged_by": by,
                "acknowledged_at": at.isoformat(sep=" ", timespec="seconds"), "reason": reason}

    def read(self, sql: str, params: list | None = None) -> pd.DataFrame:
        with self.connect(read_only=True) as con:
            return con.execute(sql, params or []).df()

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

    def append(self, table: str, rows: pd.DataFrame) -> None:
        """Append rows to an append-only table by column name, in one transaction."""
        with self.transaction() as con:
            con.register("appended", rows)
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM appended")
            con.unregister("appended")

    def store(self, batch: PreparedBatch, expectations_passed: bool = True,
              expectation_failures: list[str] | None = None, profile: dict | None = None) -> IngestSummary:
        """Write one prepared batch atomically and return its reconciled summary.

        `profile`: the checked rows' profile (expectations/reference.py), kept with the batch if it stores rows."""
        started = datetime.now(UTC).replace(tzinfo=None)
        batch_id = f"{batch.kind[:4]}-{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
        with self.transaction() as con:
            summary = self._store(con, batch, batch_id, started)
            summary.expectations_passed = expectations_passed
            summary.expectation_failures = list(expectation_failures or [])
            summary.conversions = list(batch.conversions)
            summary.notes = list(batch.notes)
            self._record_batch(con, batch, summary, started)
            if summary.stored and profile is not None:
                con.execute("INSERT INTO batch_profiles VALUES (?, ?, ?)", [batch_id, batch.kind, json.dumps(profile)])
        return summary

    def _store(self, con: duckdb.DuckDBPyConnection, batch: PreparedBatch, batch_id: str,
               started: datetime) -> IngestSummary:
        key = KEYS[batch.kind]
        incoming = batch.valid
        rejected = [batch.rejected]
        duplicates = batch.duplicates
        updated = 0
        stored = 0
        if batch.kind == "outcomes":
            stored, dup, refused = self._apply_outcomes(con, incoming, batch_id)
            updated = stored
            duplicates += dup
            rejected.extend(refused)
        elif len(incoming):
            self._add_extra_columns(con, batch.kind, incoming)
            con.register("incoming", incoming)
            existing = con.execute(
                f"SELECT i.{key} AS key, t.row_hash FROM incoming i JOIN {batch.kind} t ON i.{key} = t.{key}"
            ).df()
            con.unregister("incoming")
            stored_hash = dict(zip(existing["key"], existing["row_hash"], strict=True))
            known = incoming[key].map(stored_hash)
            same = known.notna() & (known == incoming["row_hash"])
            differs = known.notna() & ~same
            duplicates += int(same.sum())
            to_insert = incoming[~same]
            if batch.kind == "traders":  # the registry is a snapshot: a newer record replaces the old one
                updated = int(differs.sum())
                con.register("changed", incoming[differs][[key]])
                con.execute(f"DELETE FROM traders WHERE {key} IN (SELECT {key} FROM changed)")
                con.unregister("changed")
            else:
                rejected.append(reject(incoming[differs], "duplicate_id",
                                       f"{key} is already stored with different values"))
                to_insert = incoming[~same & ~differs]
            to_insert = to_insert.assign(batch_id=batch_id, ingested_at=started)
            con.register("to_insert", to_insert)
            con.execute(f"INSERT INTO {batch.kind} BY NAME SELECT * FROM to_insert")
            con.unregister("to_insert")
            stored = len(to_insert)
        parts = [r for r in rejected if len(r)]
        quarantine = pd.concat(parts, ignore_index=True) if parts else batch.rejected
        fresh = self.quarantine(con, batch.kind, batch.source, quarantine, batch_id, started)
        duplicates += len(quarantine) - len(fresh)
        return IngestSummary(
            batch_id=batch_id, kind=batch.kind, source=batch.source, read=batch.read, stored=stored,
            quarantined=len(fresh), duplicates=duplicates, updated=updated,
            unknown_columns=batch.unknown_columns,
            reasons=fresh["reason"].str.split(";").explode().value_counts().to_dict() if len(fresh) else {},
        )

    def _add_extra_columns(self, con: duckdb.DuckDBPyConnection, kind: str, frame: pd.DataFrame) -> None:
        for column in frame.columns:
            if column.startswith(EXTRA_CATEGORICAL_PREFIX):
                con.execute(f'ALTER TABLE {kind} ADD COLUMN IF NOT EXISTS "{column}" VARCHAR')
            elif column.startswith(EXTRA_NUMERIC_PREFIX):
                con.execute(f'ALTER TABLE {kind} ADD COLUMN IF NOT EXISTS "{column}" DOUBLE')

    def _apply_outcomes(self, con: duckdb.DuckDBPyConnection, outcomes: pd.DataFrame,
                        batch_id: str) -> tuple[int, int, list[pd.DataFrame]]:
        """Relabel stored declarations. Returns (updated, unchanged, [rejected unknown ids, rejected contradictions]).

        An outcome is checked as the declaration it would leave: the stored labels overlaid with the outcome's
        fields, against the stored filing date, by the declarations contract's label rules. So no relabel stores
        what a declaration file would be refused for (a control before the filing, which would count as known
        before the declaration existed; a fraud=0 under stored revenue or a critical finding)."""
        fields = [f for f in OUTCOME_FIELDS if f in outcomes.columns]
        con.register("outcomes", outcomes)
        current = con.execute(
            f"SELECT o.declaration_id, d.declaration_id IS NOT NULL AS known, d.declaration_date, "
            f"{', '.join(f'd.{f} AS stored_{f}' for f in LABEL_FIELDS)} "
            f"FROM outcomes o LEFT JOIN declarations d ON o.declaration_id = d.declaration_id"
        ).df().set_index("declaration_id").reindex(outcomes["declaration_id"])
        current.index = outcomes.index
        known = current["known"].fillna(False).astype(bool).to_numpy()
        merged = pd.DataFrame({"declaration_date": current["declaration_date"]} | {
            f: outcomes[f] if f in fields else current[f"stored_{f}"] for f in LABEL_FIELDS})
        said = label_contradictions(merged[known], "declarations")
        contradicts = known & merged.index.isin(said.index[said != ""])
        unchanged = known & ~contradicts
        for f in fields:
            unchanged &= _same_values(outcomes[f], current[f"stored_{f}"])
        changed = outcomes[known & ~contradicts & ~unchanged]
        if len(changed):
            con.register("changed", changed)
            assignments = ", ".join(f"{f} = changed.{f}" for f in fields)
            con.execute(
                f"UPDATE declarations SET {assignments}, label_batch_id = ? FROM changed "
                f"WHERE declarations.declaration_id = changed.declaration_id", [batch_id]
            )
            con.unregister("changed")
        con.unregister("outcomes")
        unknown = reject(outcomes[~known], "unknown_declaration", "declaration_id is not in the warehouse; ingest the declaration first")
        inconsistent = reject(outcomes[contradicts], "inconsistent_labels",
                              ("inconsistent labels: " + said[said != ""]).tolist())
        return len(changed), int(unchanged.sum()), [unknown, inconsistent]

    def quarantine(self, con: duckdb.DuckDBPyConnection, kind: str, source: str, rows: pd.DataFrame,
                    batch_id: str, at: datetime) -> pd.DataFrame:
        """Insert rejected rows, except those already quarantined from an earlier batch of the same content.

        Returns the rows inserted (the others count as duplicates)."""
        if rows.empty:
            return rows
        con.register("rejected", rows)
        seen = con.execute(
            "SELECT DISTINCT r.row_hash FROM rejected r JOIN quarantine q ON q.row_hash = r.row_hash AND q.kind = ?",
            [kind],
        ).df()["row_hash"]
        con.unregister("rejected")
        fresh = rows[~rows["row_hash"].isin(seen)]
        con.register("fresh", fresh.assign(batch_id=batch_id, kind=kind, source=source, quarantined_at=at))
        con.execute("INSERT INTO quarantine BY NAME SELECT * FROM fresh")
        con.unregister("fresh")
        return fresh

    def _record_batch(self, con: duckdb.DuckDBPyConnection, batch: PreparedBatch, summary: IngestSummary,
                      started: datetime) -> None:
        con.execute(
            "INSERT INTO ingest_batches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [summary.batch_id, batch.kind, batch.source, batch.source_sha256, started,
             datetime.now(UTC).replace(tzinfo=None), summary.read, summary.stored, summary.updated,
             summary.quarantined, summary.duplicates, summary.expectations_passed,
             json.dumps(summary.expectation_failures), json.dumps(summary.unknown_columns)],
        )
