"""The post-clearance audit lists as published: each list the audit flow selects is kept (append-only), so the
analysts' views and later reviews read what was decided, not a recomputation."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from features.warehouse.warehouse import Warehouse

AUDITS_DDL = """
CREATE TABLE IF NOT EXISTS audit_lists (
    list_id VARCHAR NOT NULL, period VARCHAR NOT NULL, capacity BIGINT NOT NULL, selected_at TIMESTAMP NOT NULL,
    rank BIGINT NOT NULL, importer_id VARCHAR NOT NULL, audit_priority DOUBLE, expected_unrecovered DOUBLE,
    reasons VARCHAR);
ALTER TABLE audit_lists ADD COLUMN IF NOT EXISTS selected_by VARCHAR;
ALTER TABLE audit_lists ADD COLUMN IF NOT EXISTS inclusion_probability DOUBLE;
"""
# selected_by: "priority" (ranked) or "random" (drawn); inclusion_probability: the enterprise's chance of being listed
# (1 when ranked). Lists stored before 0.17 have neither (all ranked).
LIST_COLUMNS = ["rank", "importer_id", "audit_priority", "expected_unrecovered", "reasons", "selected_by",
                "inclusion_probability"]
STORED_COLUMNS = ["list_id", "period", "capacity", "selected_at", *LIST_COLUMNS]


class AuditLists:
    """The audit lists of one warehouse (`warehouse.audits`)."""

    def __init__(self, warehouse: Warehouse):
        self.warehouse = warehouse

    def record(self, selected: pd.DataFrame, period: str, capacity: int) -> str:
        """Append one list (the audit flow's `selected`, ranked) in one transaction; returns its id."""
        at = datetime.now(UTC).replace(tzinfo=None)
        list_id = f"audit-{at:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
        rows = selected.reindex(columns=LIST_COLUMNS).assign(list_id=list_id, period=period, capacity=capacity,
                                                             selected_at=at)
        self.warehouse.append("audit_lists", rows)
        return list_id

    def latest(self) -> pd.DataFrame:
        """The most recently published list, by rank (empty before the first)."""
        if not self.warehouse.counts()["audit_lists"]:  # no warehouse, no table yet, or no list
            return pd.DataFrame(columns=STORED_COLUMNS)
        with self.warehouse.connect(read_only=True) as con:
            return con.execute("SELECT * FROM audit_lists WHERE list_id = (SELECT list_id FROM audit_lists "
                               "ORDER BY selected_at DESC LIMIT 1) ORDER BY rank").df()

    def every_period(self) -> pd.DataFrame:
        """Each period's latest list that drew at random (lists stored before 0.17 drew none): the enterprises and
        how each was selected, what the random audits' estimate weighs findings by."""
        if not self.warehouse.counts()["audit_lists"]:
            return pd.DataFrame(columns=STORED_COLUMNS)
        with self.warehouse.connect(read_only=True) as con:
            if "selected_by" not in {r[0] for r in con.execute("DESCRIBE audit_lists").fetchall()}:
                return pd.DataFrame(columns=STORED_COLUMNS)
            return con.execute(
                "SELECT * FROM audit_lists WHERE list_id IN (SELECT arg_max(list_id, selected_at) FROM audit_lists "
                "GROUP BY period) AND list_id IN (SELECT list_id FROM audit_lists WHERE selected_by = 'random') "
                "ORDER BY period, rank").df()
