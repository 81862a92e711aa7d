"""Prepare one landing file for the warehouse: read, map, validate rows, hash them and settle in-file duplicates.

Pure: nothing here writes anywhere. The warehouse module stores the result in one transaction.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.data.contract import KEYS, Kind
from features.data.mapping import ColumnMapping, apply_mapping, resolve_kind
from features.data.reader import read_rows
from features.data.validation import check_rows


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
    conversions: list[str] = field(default_factory=list)  # the mapping's recodes and unit conversions, readable


def row_hashes(frame: pd.DataFrame) -> np.ndarray:
    """A content hash per row, independent of column order (int64, for the warehouse)."""
    ordered = frame[sorted(frame.columns)]
    return pd.util.hash_pandas_object(ordered, index=False).to_numpy().view(np.int64)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


QUARANTINE_COLUMNS = ["row_number", "reason", "message", "raw", "row_hash"]


def _json_lines(frame: pd.DataFrame) -> list[str]:
    if frame.empty:
        return []
    return frame.to_json(orient="records", lines=True, date_format="iso").splitlines()


def reject(frame: pd.DataFrame, reason: str, message: str | list[str]) -> pd.DataFrame:
    """Turn valid rows into quarantine rows with one reason (used for batch-level and conflict rejections)."""
    if frame.empty:
        return pd.DataFrame(columns=QUARANTINE_COLUMNS)
    return pd.DataFrame({
        "row_number": frame["row_number"].to_numpy(),
        "reason": reason,
        "message": message,
        "raw": _json_lines(frame.drop(columns=["row_number", "row_hash"])),
        "row_hash": frame["row_hash"].to_numpy(),
    })


def quarantine_rows(raw: pd.DataFrame, rejected: pd.DataFrame, row_numbers: np.ndarray | None = None) -> pd.DataFrame:
    """Quarantine records for rejected rows (index = position in `raw`): reason, message, the raw row as JSON.

    `row_numbers` gives each position's row number in the file (default: position + 1)."""
    positions = rejected.index.to_numpy()
    return pd.DataFrame({
        "row_number": positions + 1 if row_numbers is None else row_numbers[positions],
        "reason": rejected["reason"].to_numpy(),
        "message": rejected["message"].to_numpy(),
        "raw": _json_lines(raw.iloc[rejected.index]),
        "row_hash": row_hashes(raw.iloc[rejected.index].astype("str")) if len(rejected) else np.array([], dtype="int64"),
    })


def malformed_rows(malformed: pd.DataFrame) -> pd.DataFrame:
    """Quarantine records for CSV rows with the wrong number of fields: the line's text is the raw row."""
    if malformed.empty:
        return pd.DataFrame(columns=QUARANTINE_COLUMNS)
    return pd.DataFrame({
        "row_number": malformed["position"].to_numpy(dtype="int64") + 1,
        "reason": "malformed_row",
        "message": malformed["message"].to_numpy(),
        "raw": [json.dumps({"_line": None if pd.isna(n) else int(n), "_text": t})
                for n, t in zip(malformed["line"], malformed["text"], strict=True)],
        "row_hash": row_hashes(malformed[["text"]].astype("str")),
    })


def prepare_batch(path: Path, kind: str | None = None, mapping: ColumnMapping | None = None) -> PreparedBatch:
    """Read and validate one file; every row read ends up valid, rejected or counted as an in-file duplicate."""
    mapping = mapping or ColumnMapping()
    path = Path(path)
    resolved = resolve_kind(path, kind, mapping)
    raw_file = read_rows(path, delimiter=mapping.delimiter, encoding=mapping.encoding)
    raw = raw_file.frame  # indexed by position among the file's data rows (gaps where rows were malformed)
    row_numbers = raw.index.to_numpy(dtype="int64") + 1
    mapped = apply_mapping(raw, mapping, resolved)
    checked = check_rows(mapped.frame, resolved, mapping)

    rejected = quarantine_rows(raw, checked.rejected, row_numbers)
    if len(raw_file.malformed):
        rejected = pd.concat([rejected, malformed_rows(raw_file.malformed)], ignore_index=True)
    valid = checked.valid.copy()
    valid["row_number"] = row_numbers[valid.index.to_numpy()]
    valid["row_hash"] = row_hashes(checked.valid)
    valid = valid.reset_index(drop=True)

    key = KEYS[resolved]
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
        kind=resolved,
        source=str(path.resolve()),
        source_sha256=file_sha256(path),
        read=raw_file.read,
        valid=valid.reset_index(drop=True),
        rejected=rejected,
        duplicates=duplicates,
        unknown_columns=mapped.unknown_columns,
        conversions=checked.conversions,
    )


def reject_batch(batch: PreparedBatch, message: str) -> PreparedBatch:
    """Move every valid row of a batch to quarantine (a critical dataset-level expectation failed)."""
    moved = reject(batch.valid, "batch_rejected", message)
    batch.rejected = pd.concat([batch.rejected, moved], ignore_index=True) if len(batch.rejected) else moved
    batch.valid = batch.valid.iloc[0:0]
    return batch
