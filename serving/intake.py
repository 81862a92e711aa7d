"""Intake: declarations in a mapping's source layout → typed canonical rows, or rejections with reasons.

The one path from a user's own layout (column names, units, codes) to the scorer, for files (serving/batch.py)
and for API records (serving/api.py): `apply_mapping` → `check_rows`, exactly as ingest reads a landing file.
API records first become the frame of raw values a CSV of the same rows would give (`records_frame`), so a
declaration gets the same typed row, hence the same score, from either side.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from features.data.mapping import (
    EXTRA_CATEGORICAL_PREFIX,
    EXTRA_NUMERIC_PREFIX,
    ColumnMapping,
    apply_mapping,
    slug,
)
from features.data.reader import NULL_MARKERS
from features.data.validation import check_rows

SCALARS = (str, int, float, bool, type(None))


@dataclass
class Intake:
    valid: pd.DataFrame  # typed canonical rows, extras (xcat_/xnum_) included; index = position in the input
    rejected: pd.DataFrame  # index = position in the input; reason, message
    failures: pd.DataFrame  # one row per (row, column) problem: row, column, code, value, message
    ids: pd.Series  # declaration_id as given, per position (for the rejected rows' output)
    unknown_columns: list[str]


def take_in(raw: pd.DataFrame, mapping: ColumnMapping) -> Intake:
    """Map and check raw declarations (one row per goods item, any layout the mapping describes)."""
    raw = raw.reset_index(drop=True)
    mapped = apply_mapping(raw, mapping, "declarations")
    checked = check_rows(mapped.frame, "declarations", mapping)
    failures = checked.failures if checked.failures is not None else pd.DataFrame(columns=["row", "column", "code",
                                                                                             "value", "message"])
    ids = mapped.frame["declaration_id"] if "declaration_id" in mapped.frame else pd.Series(pd.NA, index=raw.index)
    return Intake(valid=checked.valid, rejected=checked.rejected, failures=failures, ids=ids,
                  unknown_columns=mapped.unknown_columns)


def source_columns(mapping: ColumnMapping) -> dict[str, str]:
    """Every column the mapping reads → the canonical (or xcat_/xnum_) column it becomes."""
    out = dict(mapping.source_names())
    out.update({s: EXTRA_CATEGORICAL_PREFIX + slug(s) for s in mapping.extra_categorical})
    out.update({s: EXTRA_NUMERIC_PREFIX + slug(s) for s in mapping.extra_numeric})
    return out


def records_frame(records: list[dict], mapping: ColumnMapping) -> pd.DataFrame:
    """JSON records (values as numbers or strings, as they appear in the file) as the frame of raw text that
    `read_raw` gives for a CSV of the same rows: numbers written as the file writes them (with the mapping's
    decimal mark), the reader's null markers as missing. A column of the mapping that no record carries is
    missing (a record may leave out what it does not have); a required one then fails the checks by name."""
    columns = list(dict.fromkeys(k for r in records for k in r))
    columns += [c for c in source_columns(mapping) if c not in columns]
    text = {c: pd.Series([_as_file_text(r.get(c), mapping.decimal) for r in records], dtype="str") for c in columns}
    return pd.DataFrame(text, index=pd.RangeIndex(len(records)))


def _as_file_text(value: object, decimal: str) -> str | None:
    if value is None or isinstance(value, bool):
        return None if value is None else str(value).lower()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        value = repr(value) if decimal == "." else repr(value).replace(".", ",")
    text = str(value)
    return None if text in NULL_MARKERS else text


def non_scalar_values(records: list[dict]) -> list[tuple[int, str]]:
    """(record, key) of values that no file cell can hold (objects, lists)."""
    return [(i, k) for i, r in enumerate(records) for k, v in r.items() if not isinstance(v, SCALARS)]
