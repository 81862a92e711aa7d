"""What scoring, training and monitoring read of the warehouse: the three canonical tables, and a version that
changes when they may have (the scorer rebuilds its snapshot only then)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from features.warehouse.store import Warehouse

CANONICAL_TABLES = ("declarations", "manifests", "traders")


@dataclass(frozen=True)
class Tables:
    """The canonical tables as stored (bookkeeping columns aside); a table without rows is an empty frame."""

    declarations: pd.DataFrame
    manifests: pd.DataFrame
    traders: pd.DataFrame


def snapshot_version(warehouse: Warehouse) -> tuple[int, int]:
    """(declarations stored, batches ingested): changes whenever a batch lands or relabels declarations."""
    counts = warehouse.counts()
    return counts["declarations"], counts["ingest_batches"]


def read_tables(warehouse: Warehouse) -> Tables:
    counts = warehouse.counts()
    return Tables(**{t: warehouse.table(t) if counts[t] else pd.DataFrame() for t in CANONICAL_TABLES})
