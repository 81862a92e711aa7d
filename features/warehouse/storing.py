"""Storing one prepared batch: its valid rows, its quarantined rows and its batch record land in one transaction,
together or not at all, so a crash mid-way leaves the previous state intact.

The rows go in a chunk at a time, as the batch gives them (features/intake/prepared.py), in that one transaction
still: a failure at any chunk leaves the warehouse as it was. A chunk reaches DuckDB as a relation over its frame,
never as a registered view, which DuckDB would keep (and the frame with it) until the transaction ends."""
from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import duckdb
import pandas as pd

from features.contract import KEYS
from features.intake.mapping import EXTRA_CATEGORICAL_PREFIX, EXTRA_NUMERIC_PREFIX
from features.intake.prepared import PreparedBatch, reject
from features.warehouse.relabel import apply_outcomes

if TYPE_CHECKING:
    from features.warehouse.warehouse import Warehouse


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


def store(warehouse: Warehouse, batch: PreparedBatch, expectations_passed: bool = True,
          expectation_failures: list[str] | None = None, profile: dict | None = None) -> IngestSummary:
    """Write one prepared batch atomically and return its reconciled summary.

    `profile`: the checked rows' profile (expectations/reference.py), kept with the batch if it stores rows."""
    started = datetime.now(UTC).replace(tzinfo=None)
    batch_id = f"{batch.kind[:4]}-{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    with warehouse.transaction() as con:
        summary = store_rows(con, batch, batch_id, started)
        summary.expectations_passed = expectations_passed
        summary.expectation_failures = list(expectation_failures or [])
        summary.conversions = list(batch.conversions)
        summary.notes = list(batch.notes)
        record_batch(con, batch, summary, started)
        if summary.stored and profile is not None:
            con.execute("INSERT INTO batch_profiles VALUES (?, ?, ?)", [batch_id, batch.kind, json.dumps(profile)])
    return summary


def store_rows(con: duckdb.DuckDBPyConnection, batch: PreparedBatch, batch_id: str,
               started: datetime) -> IngestSummary:
    """Quarantine the batch's rejected rows, then insert (or, for outcomes, apply) its valid rows chunk by chunk,
    quarantining those the warehouse refuses, all in the caller's transaction."""
    summary = IngestSummary(batch_id=batch_id, kind=batch.kind, source=batch.source, read=batch.read, stored=0,
                            quarantined=0, duplicates=batch.duplicates, unknown_columns=batch.unknown_columns)
    reasons: dict[str, int] = {}

    def to_quarantine(rows: pd.DataFrame) -> None:
        fresh = quarantine(con, batch.kind, batch.source, rows, batch_id, started)
        summary.quarantined += len(fresh)
        summary.duplicates += len(rows) - len(fresh)
        for reason, count in fresh["reason"].str.split(";").explode().value_counts(sort=False).items():
            reasons[reason] = reasons.get(reason, 0) + int(count)

    for rows in batch.rejected_chunks():
        to_quarantine(rows)
    for chunk in batch.valid_rows.chunks():
        for rows in store_chunk(con, batch.kind, chunk, batch_id, started, summary):
            to_quarantine(rows)
    summary.reasons = dict(sorted(reasons.items(), key=lambda item: -item[1]))  # most first, as value_counts
    return summary


def store_chunk(con: duckdb.DuckDBPyConnection, kind: str, incoming: pd.DataFrame, batch_id: str,
                started: datetime, summary: IngestSummary) -> list[pd.DataFrame]:
    """Add (or apply) one chunk of valid rows, counted in `summary`; the rows the warehouse refuses, to quarantine.

    A batch's ids are unique across its chunks, so a chunk meets only rows stored before the batch."""
    if kind == "outcomes":
        updated, unchanged, refused = apply_outcomes(con, incoming, batch_id)
        summary.stored += updated
        summary.updated += updated
        summary.duplicates += unchanged
        return refused
    key = KEYS[kind]
    add_extra_columns(con, kind, incoming)
    existing = over(con, incoming[[key]], f"SELECT i.{key} AS key, t.row_hash FROM rows i JOIN {kind} t "
                                          f"ON i.{key} = t.{key}").df()
    stored_hash = dict(zip(existing["key"], existing["row_hash"], strict=True))
    known = incoming[key].map(stored_hash)
    same = known.notna() & (known == incoming["row_hash"])
    differs = known.notna() & ~same
    summary.duplicates += int(same.sum())
    refused = []
    if kind == "traders":  # the registry is a snapshot: a newer record replaces the old one
        summary.updated += int(differs.sum())
        changed = incoming[key][differs].tolist()
        con.execute(f"DELETE FROM traders WHERE {key} IN (SELECT unnest(?::VARCHAR[]))", [changed])
        to_insert = incoming[~same]
    else:
        refused.append(reject(incoming[differs], "duplicate_id", f"{key} is already stored with different values"))
        to_insert = incoming[~same & ~differs]
    over(con, to_insert.assign(batch_id=batch_id, ingested_at=started),
         f"INSERT INTO {kind} BY NAME SELECT * FROM rows")
    summary.stored += len(to_insert)
    return refused


def over(con: duckdb.DuckDBPyConnection, rows: pd.DataFrame, sql: str) -> duckdb.DuckDBPyRelation:
    """`sql` run on the connection (in its transaction), the frame `rows` its table named rows: through a relation,
    not a registered view, which DuckDB keeps (with its frame) until the transaction ends."""
    return con.from_df(rows).query("rows", sql)


def add_extra_columns(con: duckdb.DuckDBPyConnection, kind: str, frame: pd.DataFrame) -> None:
    """Add the mapping's extra columns (xcat_/xnum_) a canonical table does not have yet."""
    for column in frame.columns:
        if column.startswith(EXTRA_CATEGORICAL_PREFIX):
            con.execute(f'ALTER TABLE {kind} ADD COLUMN IF NOT EXISTS "{column}" VARCHAR')
        elif column.startswith(EXTRA_NUMERIC_PREFIX):
            con.execute(f'ALTER TABLE {kind} ADD COLUMN IF NOT EXISTS "{column}" DOUBLE')


def quarantine(con: duckdb.DuckDBPyConnection, kind: str, source: str, rows: pd.DataFrame,
               batch_id: str, at: datetime) -> pd.DataFrame:
    """Insert rejected rows, except those already quarantined from an earlier batch of the same content.

    Returns the rows inserted (the others count as duplicates)."""
    if rows.empty:
        return rows
    this_batch = batch_id.replace("'", "''")  # its earlier chunks (a file stored or scored a chunk at a time)
    seen = over(con, rows[["row_hash"]], "SELECT DISTINCT r.row_hash, q.kind FROM rows r JOIN quarantine q "
                                         f"ON q.row_hash = r.row_hash AND q.batch_id <> '{this_batch}'").df()
    fresh = rows[~rows["row_hash"].isin(seen.loc[seen["kind"] == kind, "row_hash"])]
    over(con, fresh.assign(batch_id=batch_id, kind=kind, source=source, quarantined_at=at),
         "INSERT INTO quarantine BY NAME SELECT * FROM rows")
    return fresh


def record_batch(con: duckdb.DuckDBPyConnection, batch: PreparedBatch, summary: IngestSummary,
                 started: datetime) -> None:
    """The batch's row in ingest_batches: its file, its counts and its expectations' outcome."""
    con.execute(
        "INSERT INTO ingest_batches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [summary.batch_id, batch.kind, batch.source, batch.source_sha256, started,
         datetime.now(UTC).replace(tzinfo=None), summary.read, summary.stored, summary.updated,
         summary.quarantined, summary.duplicates, summary.expectations_passed,
         json.dumps(summary.expectation_failures), json.dumps(summary.unknown_columns)],
    )
