"""The warehouse's tables: what each holds (its DDL), the bookkeeping columns stored beside every canonical row,
and their creation on each writing connection (which also adds what a warehouse of an earlier version lacks)."""
from __future__ import annotations

import duckdb

from features.contract import KEYS, field_types
from features.warehouse.audits import AUDITS_DDL
from features.warehouse.decisions import DECISIONS_DDL
from features.warehouse.ratings import RATINGS_DDL

DUCK_TYPES = {"text": "VARCHAR", "date": "DATE", "number": "DOUBLE", "integer": "BIGINT", "flag": "TINYINT"}
STORED_KINDS = ("declarations", "manifests", "traders")  # the canonical tables, one per kind of file stored
TABLES = (*STORED_KINDS, "quarantine", "ingest_batches", "decisions", "audit_lists", "ratings")
# What the warehouse stores beside a canonical row's own fields: the batch that stored it, its place and content hash
# in that batch's file, when it landed, and (declarations only) the outcomes batch that last relabelled it.
BOOKKEEPING_TYPES = {"batch_id": "VARCHAR", "row_number": "BIGINT", "row_hash": "BIGINT", "ingested_at": "TIMESTAMP",
                     "label_batch_id": "VARCHAR"}
STORED_BOOKKEEPING = tuple(BOOKKEEPING_TYPES)
RELABELLED_KINDS = ("declarations",)  # the kinds that carry label_batch_id

QUARANTINE_DDL = """
CREATE TABLE IF NOT EXISTS quarantine (
    batch_id VARCHAR NOT NULL, kind VARCHAR NOT NULL, source VARCHAR NOT NULL, row_number BIGINT,
    reason VARCHAR NOT NULL, message VARCHAR NOT NULL, raw VARCHAR, row_hash BIGINT,
    quarantined_at TIMESTAMP NOT NULL)
"""
BATCHES_DDL = """
CREATE TABLE IF NOT EXISTS ingest_batches (
    batch_id VARCHAR PRIMARY KEY, kind VARCHAR, source VARCHAR, source_sha256 VARCHAR,
    started_at TIMESTAMP, finished_at TIMESTAMP, "read" BIGINT, stored BIGINT, updated BIGINT,
    quarantined BIGINT, duplicates BIGINT, expectations_passed BOOLEAN, expectations VARCHAR,
    unknown_columns VARCHAR)
"""
# The profile of each batch that stored rows (expectations/reference.py), written in the batch's own transaction: the
# reference profile under ADUANA_HOME is merged from these after the commit, and a run that dies in between leaves
# what the next run needs to fold the batch in (features/warehouse/acks.py accepted_profiles).
PROFILES_DDL = """
CREATE TABLE IF NOT EXISTS batch_profiles (batch_id VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, profile VARCHAR NOT NULL)
"""
# Append-only: who accepted a batch's failed warnings, when, why.
ACKS_DDL = """
CREATE TABLE IF NOT EXISTS batch_acknowledgements (
    batch_id VARCHAR NOT NULL, acknowledged_at TIMESTAMP NOT NULL, acknowledged_by VARCHAR NOT NULL,
    reason VARCHAR NOT NULL)
"""


def table_ddl(kind: str) -> str:
    """The DDL of a canonical table: the contract's fields (the key first), then the bookkeeping columns."""
    types = field_types(kind)
    columns = [f'"{name}" {DUCK_TYPES[t]}' for name, t in types.items()]
    columns[0] += " PRIMARY KEY" if list(types)[0] == KEYS[kind] else ""
    meta = [f"{name} {duck}" for name, duck in BOOKKEEPING_TYPES.items()
            if name != "label_batch_id" or kind in RELABELLED_KINDS]
    return f"CREATE TABLE IF NOT EXISTS {kind} ({', '.join(columns + meta)})"


def create_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create every table a warehouse holds, and add the columns a warehouse of an earlier version lacks."""
    for kind in STORED_KINDS:
        con.execute(table_ddl(kind))
    for ddl in (QUARANTINE_DDL, BATCHES_DDL, DECISIONS_DDL, ACKS_DDL, PROFILES_DDL, AUDITS_DDL, RATINGS_DDL):
        con.execute(ddl)


def has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether a table exists (a warehouse written by an older version may lack the newer ones)."""
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchone()[0])
