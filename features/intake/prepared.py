"""A landing file prepared for the warehouse: checked rows (features/intake/checked.py), hashed, with in-file
duplicates settled.

Pure: nothing here writes anywhere. The warehouse stores the result in one transaction.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from features.contract import KEYS, Kind
from features.intake.checked import read_checked, reject, row_hashes
from features.intake.mapping import ColumnMapping


@dataclass
class PreparedBatch:
    kind: Kind
    source: str
    source_sha256: str
    read: int
    valid: pd.DataFrame  # typed canonical rows + row_number, row_hash; ids unique within the batch
    rejected: pd.DataFrame  # row_number, reason, message, raw (JSON), row_hash
    duplicates: int  # exact repeats of another row of the same file
    unknown_columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # about the file as a whole, e.g. that its labels are absent
    conversions: list[str] = field(default_factory=list)  # the mapping's recodes and unit conversions, readable

    @property
    def rows(self) -> pd.DataFrame:
        """The valid rows as canonical fields only (no row number or hash): for reading a file, not storing it."""
        return self.valid.drop(columns=["row_number", "row_hash"])


def prepare_batch(path: Path, kind: str | None = None, mapping: ColumnMapping | None = None) -> PreparedBatch:
    """Read and check one file; every row read ends up valid, rejected or counted as an in-file duplicate."""
    checked = read_checked(Path(path), kind, mapping)
    rejected = checked.rejected
    valid = checked.valid.assign(row_number=checked.row_numbers, row_hash=row_hashes(checked.valid))
    valid = valid.reset_index(drop=True)

    key = KEYS[checked.kind]
    exact_repeat = valid.duplicated(subset=[key, "row_hash"], keep="first")
    duplicates = int(exact_repeat.sum())
    valid = valid[~exact_repeat]
    conflicting = valid[key].duplicated(keep=False)
    if conflicting.any():
        clash = valid[conflicting]
        counts = clash[key].map(clash[key].value_counts())
        messages = key + " " + clash[key].map(repr) + " appears " + counts.astype(str) + " times in this file with different values"
        rejected = pd.concat([rejected, reject(clash, "duplicate_id", messages.tolist())], ignore_index=True)
        valid = valid[~conflicting]
    repeated_bad = rejected.duplicated(subset=["row_hash"], keep="first")
    duplicates += int(repeated_bad.sum())
    rejected = rejected[~repeated_bad].sort_values("row_number", ignore_index=True)
    return PreparedBatch(
        kind=checked.kind,
        source=checked.source,
        source_sha256=checked.source_sha256,
        read=checked.read,
        valid=valid.reset_index(drop=True),
        rejected=rejected,
        duplicates=duplicates,
        unknown_columns=checked.unknown_columns,
        notes=checked.notes,
        conversions=checked.conversions,
    )


def reject_batch(batch: PreparedBatch, message: str) -> PreparedBatch:
    """Move every valid row of a batch to quarantine (a critical dataset-level expectation failed)."""
    moved = reject(batch.valid, "batch_rejected", message)
    batch.rejected = pd.concat([batch.rejected, moved], ignore_index=True) if len(batch.rejected) else moved
    batch.valid = batch.valid.iloc[0:0]
    return batch
