"""API records as the frame of raw values a file of the same rows would give, so they go through `read_checked`
exactly as a file does: a declaration gets the same typed row, hence the same score, from either side."""
from __future__ import annotations

import pandas as pd

from features.intake.cell import SCALARS, file_text
from features.intake.mapping import EXTRA_CATEGORICAL_PREFIX, EXTRA_NUMERIC_PREFIX, ColumnMapping, slug


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
    missing (a record may leave out what it does not have); a required one then fails the checks by name. Label
    columns that no record carries are left out, as a file without them is: the records are unlabelled.

    Each value becomes a cell as features/intake/cell.py `file_text` writes it. The caller refuses text that no
    field may hold first (serving/api/body.py: a pandas text column cannot hold an unpaired surrogate)."""
    columns = list(dict.fromkeys(k for r in records for k in r))
    columns += [c for c, target in source_columns(mapping).items() if c not in columns and target not in mapping.labels]
    text = {c: pd.Series([file_text(r.get(c), mapping.decimal) for r in records], dtype="str") for c in columns}
    return pd.DataFrame(text, index=pd.RangeIndex(len(records)))


def non_scalar_values(records: list[dict]) -> list[tuple[int, str]]:
    """(record, key) of values that no file cell can hold (objects, lists)."""
    return [(i, k) for i, r in enumerate(records) for k, v in r.items() if not isinstance(v, SCALARS)]
