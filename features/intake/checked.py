"""One path from a user's data to typed canonical rows: read → map → check.

`read_checked` takes a file (CSV or Parquet) or a frame of raw values (the API's records, as `records_frame`
makes them) and returns the typed rows that passed the contract, and a quarantine record, with its reason, for
each row that did not. Ingest, batch scoring, evaluation, the backtest and the API all read through it, so a row
gets the same verdict, and a declaration the same typed values, whichever way it arrives. `check_raw` is its second
half, on rows already read: ingest gives it a large file chunk by chunk (features/intake/prepared.py), and every
check is of one row, so a row's verdict does not depend on the chunk it came in.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.contract import Kind
from features.intake.mapping import ColumnMapping, Layout, apply_mapping, plan_layout, resolve_kind
from features.intake.reader import RawFile, read_header, read_raw, read_rows
from features.intake.validation import Conversion, check_rows, readable

FAILURE_COLUMNS = ["row", "column", "code", "value", "message"]


@dataclass
class Checked:
    """Every row read is in `valid` or in `rejected`, once."""

    kind: str
    read: int
    ids: pd.Series  # declaration_id as given, per position (missing when the mapping has none)
    valid: pd.DataFrame  # typed canonical rows (extras xcat_/xnum_ included), indexed by position
    rejected: pd.DataFrame  # quarantine records: row_number (position + 1), reason, message, raw (JSON), row_hash
    failures: pd.DataFrame  # one row per (row: position, column) problem: row, column, code, value, message
    unknown_columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # about the file as a whole, e.g. that its labels are absent
    converted: list[Conversion] = field(default_factory=list)  # the mapping's recodes and unit conversions
    source: str = "records"
    source_sha256: str | None = None

    @property
    def conversions(self) -> list[str]:
        """The mapping's recodes and unit conversions, readable."""
        return readable(self.converted)

    @property
    def row_numbers(self) -> np.ndarray:
        """Each valid row's number in the input (1 = the first data row)."""
        return self.valid.index.to_numpy(dtype="int64") + 1


def read_checked(source: Path | str | pd.DataFrame, kind: str | None = None, mapping: ColumnMapping | None = None,
                 every_row: bool = False) -> Checked:
    """Read, map and check `source` (a file, or a frame of raw values in the mapping's layout).

    A CSV row with the wrong number of fields is quarantined (`malformed_row`), or, with `every_row` (scoring,
    which answers each row), refuses the file with a UserError naming its line."""
    mapping = mapping or ColumnMapping()
    if isinstance(source, pd.DataFrame):
        raw_file, name, digest = RawFile(source.reset_index(drop=True)), "records", None
        resolved = resolve_kind(Path("records"), kind or "declarations", mapping)
    else:
        path = Path(source)
        resolved = resolve_kind(path, kind, mapping)
        read = read_raw if every_row else read_rows
        raw_file = read(path, delimiter=mapping.delimiter, encoding=mapping.encoding)
        name, digest = str(path.resolve()), file_sha256(path)
    return check_raw(raw_file, resolved, mapping, name, digest)


def check_raw(raw_file: RawFile, kind: Kind, mapping: ColumnMapping, source: str = "records",
              source_sha256: str | None = None) -> Checked:
    """Map and check rows as read (a whole file, or a chunk of one: its positions are the file's), the malformed
    ones quarantined (`malformed_row`)."""
    raw = raw_file.frame
    mapped = apply_mapping(raw, mapping, kind)
    checked = check_rows(mapped.frame, kind, mapped.layout.mapping)
    # check_rows indexes by position in what it was given: back to positions in the file
    valid = checked.valid.set_axis(raw.index[checked.valid.index.to_numpy()])
    rejected_rows = checked.rejected.set_axis(raw.index[checked.rejected.index.to_numpy()])
    rejected = quarantine_rows(raw, rejected_rows)
    if len(raw_file.malformed):
        rejected = pd.concat([rejected, malformed_rows(raw_file.malformed)], ignore_index=True)
    failures = checked.failures if checked.failures is not None else pd.DataFrame(columns=FAILURE_COLUMNS)
    if len(failures):
        failures = failures.assign(row=raw.index[failures["row"].to_numpy(dtype="int64")])
    ids = mapped.frame["declaration_id"].set_axis(raw.index) if "declaration_id" in mapped.frame else \
        pd.Series(pd.NA, index=raw.index)
    layout = mapped.layout
    return Checked(kind=kind, read=raw_file.read, ids=ids, valid=valid, rejected=rejected, failures=failures,
                   unknown_columns=layout.unknown_columns, notes=layout.notes, converted=checked.converted,
                   source=source, source_sha256=source_sha256)


def check_layout(path: Path, kind: str | None = None, mapping: ColumnMapping | None = None) -> Layout:
    """The file's header against the mapping, reading no row: the UserError `read_checked` would refuse the file
    with for its columns or kind, found in milliseconds (the CLI asks before any Prefect server starts)."""
    mapping = mapping or ColumnMapping()
    resolved = resolve_kind(Path(path), kind, mapping)
    return plan_layout(read_header(Path(path), mapping.delimiter, mapping.encoding), mapping, resolved)


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


def quarantine_rows(raw: pd.DataFrame, rejected: pd.DataFrame) -> pd.DataFrame:
    """Quarantine records for rejected rows (indexed, like `raw`, by position): reason, message, the raw row as
    JSON, its number in the input (position + 1)."""
    rows = raw.loc[rejected.index]
    return pd.DataFrame({
        "row_number": rejected.index.to_numpy(dtype="int64") + 1,
        "reason": rejected["reason"].to_numpy(),
        "message": rejected["message"].to_numpy(),
        "raw": _json_lines(rows),
        "row_hash": row_hashes(rows.astype("str")) if len(rejected) else np.array([], dtype="int64"),
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
