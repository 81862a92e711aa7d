"""The batches whose dataset-level expectations failed, and their acknowledgements: who accepted a batch's failed
warnings, when and why (append-only), and what the promotion gate and the reference profile read of that."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from features.errors import UserError
from features.warehouse.schema import has_table

if TYPE_CHECKING:
    from features.warehouse.warehouse import Warehouse


def validation_failures(warehouse: Warehouse, kind: str = "declarations") -> list[str]:
    """The failed warnings of batches of this kind that stored rows and that nobody has acknowledged.

    One `"{batch_id}: {failures as JSON}"` per batch, oldest first (the promotion gate's input)."""
    if not warehouse.path.exists():
        return []
    with warehouse.connect(read_only=True) as con:
        acked = "AND batch_id NOT IN (SELECT batch_id FROM batch_acknowledgements)" \
            if has_table(con, "batch_acknowledgements") else ""
        failed = con.execute("SELECT batch_id, expectations FROM ingest_batches WHERE kind = ? AND stored > 0 "
                             f"AND NOT expectations_passed {acked} ORDER BY started_at", [kind]).df()
    out = []
    for r in failed.itertuples():
        listed = json.loads(r.expectations or "[]")
        warnings = [f for f in listed if not str(f).startswith("critical")]
        if warnings or not listed:
            out.append(f"{r.batch_id}: {json.dumps(warnings)}")
    return out


def accepted_profiles(warehouse: Warehouse, kind: str, skip: list[str]) -> list[tuple[str, dict]]:
    """(batch id, profile) of the stored batches of this kind that passed their expectations or were acknowledged,
    oldest first, but those in `skip` (the ones a reference already holds)."""
    if not warehouse.path.exists():
        return []
    with warehouse.connect(read_only=True) as con:
        if not has_table(con, "batch_profiles"):
            return []
        acked = "OR b.batch_id IN (SELECT batch_id FROM batch_acknowledgements)" \
            if has_table(con, "batch_acknowledgements") else ""
        found = con.execute(
            "SELECT p.batch_id, p.profile FROM batch_profiles p JOIN ingest_batches b ON b.batch_id = p.batch_id "
            f"WHERE p.kind = ? AND (b.expectations_passed {acked}) AND NOT list_contains(?::VARCHAR[], p.batch_id) "
            "ORDER BY b.started_at", [kind, skip]).fetchall()
    return [(batch_id, json.loads(profile)) for batch_id, profile in found]


def failed_batches(warehouse: Warehouse, kind: str | None = None) -> list[dict]:
    """Every batch whose dataset-level expectations failed, oldest first, with its latest acknowledgement."""
    if not warehouse.path.exists():
        return []
    with warehouse.connect(read_only=True) as con:
        acks = ("(SELECT batch_id, acknowledged_at, acknowledged_by, reason FROM batch_acknowledgements "
                "QUALIFY row_number() OVER (PARTITION BY batch_id ORDER BY acknowledged_at DESC) = 1)"
                if has_table(con, "batch_acknowledgements") else
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


def acknowledge(warehouse: Warehouse, batch_id: str, reason: str, by: str) -> dict:
    """Record (append-only) that `by` accepts this batch's failed expectations, and why."""
    reason = reason.strip()
    if not reason:
        raise UserError("an acknowledgement needs a reason (--reason TEXT)")
    if not warehouse.path.exists():
        raise UserError(f"unknown batch id {batch_id!r}: no warehouse at {warehouse.path}")
    at = datetime.now(UTC).replace(tzinfo=None)
    with warehouse.transaction() as con:
        found = con.execute("SELECT kind, expectations_passed FROM ingest_batches WHERE batch_id = ?",
                            [batch_id]).fetchall()
        if not found:
            raise UserError(f"unknown batch id {batch_id!r} (see 'aduana warnings')")
        if found[0][1]:
            raise UserError(f"batch {batch_id} passed its expectations: nothing to acknowledge")
        con.execute("INSERT INTO batch_acknowledgements VALUES (?, ?, ?, ?)", [batch_id, at, by, reason])
    return {"batch_id": batch_id, "kind": found[0][0], "acknowledged_by": by,
            "acknowledged_at": at.isoformat(sep=" ", timespec="seconds"), "reason": reason}
