"""The DuckDB warehouse: one `Warehouse` object over its rooms (schema, connection, reads, ingest, relabelling,
acknowledgements), the append-only logs (decisions, audit lists, ratings) and the snapshot that scoring and training
read; and the operational decision log whose answers it copies (oplog.py). No SQL is written outside this package."""
from features.warehouse.audits import AuditLists
from features.warehouse.connection import (
    BUSY,
    WAREHOUSE_ERRORS,
    IngestBusy,
    WarehouseBusy,
    failure_text,
    ingest_turn,
)
from features.warehouse.decisions import Decisions
from features.warehouse.oplog import OperationalLog, open_log, reopen_log
from features.warehouse.profile_store import ProfileStore
from features.warehouse.ratings import Ratings
from features.warehouse.schema import STORED_BOOKKEEPING
from features.warehouse.snapshot import Refreshing, Tables, read_tables, snapshot_version
from features.warehouse.storing import IngestSummary
from features.warehouse.warehouse import Warehouse

__all__ = ["BUSY", "STORED_BOOKKEEPING", "WAREHOUSE_ERRORS", "AuditLists", "Decisions", "IngestBusy", "IngestSummary",
           "OperationalLog", "ProfileStore", "Ratings", "Refreshing", "Tables", "Warehouse", "WarehouseBusy", "failure_text",
           "ingest_turn", "open_log", "read_tables", "reopen_log", "snapshot_version"]
