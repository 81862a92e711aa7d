"""The DuckDB warehouse: the store (tables, ingest, relabelling, acknowledgements), the decision log and the
snapshot that scoring and training read. No SQL is written outside this package."""
from features.warehouse.audits import AuditLists
from features.warehouse.decisions import Decisions
from features.warehouse.ratings import Ratings
from features.warehouse.snapshot import Tables, read_tables, snapshot_version
from features.warehouse.store import IngestSummary, Warehouse, WarehouseBusy

__all__ = ["AuditLists", "Decisions", "IngestSummary", "Ratings", "Tables", "Warehouse", "WarehouseBusy", "read_tables",
           "snapshot_version"]
