"""Storing one prepared batch: its valid rows, its quarantined rows and its batch record land in one transaction,
together or not at all, so a crash mid-way leaves the previous state intact."""
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
    """Insert (or, for outcomes, apply) the batch's valid rows and quarantine the rest, in the caller's transaction."""
    key = KEYS[batch.kind]
    incoming = batch.valid
    rejected = [batch.rejected]
    duplicates = batch.duplicates
    updated = 0
    stored = 0
    if batch.kind == "outcomes":
        stored, dup, refused = apply_outcomes(con, incoming, batch_id)
        updated = stored
        duplicates += dup
        rejected.extend(refused)
    elif len(incoming):
        add_extra_columns(con, batch.kind, incoming)
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
    quarantined = pd.concat(parts, ignore_index=True) if parts else batch.rejected
    fresh = quarantine(con, batch.kind, batch.source, quarantined, batch_id, started)
    duplicates += len(quarantined) - len(fresh)
    return IngestSummary(
        batch_id=batch_id, kind=batch.kind, source=batch.source, read=batch.read, stored=stored,
        quarantined=len(fresh), duplicates=duplicates, updated=updated,
        unknown_columns=batch.unknown_columns,
        reasons=fresh["reason"].str.split(";").explode().value_counts().to_dict() if len(fresh) else {},
    )


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
