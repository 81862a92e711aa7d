"""Column mapping: how a user's own export (other names, extra columns, other formats) maps to canonical fields."""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from features.data.contract import KINDS, LABEL_FIELDS, Kind, field_types, required_fields
from features.data.errors import DataError, field_errors

EXTRA_CATEGORICAL_PREFIX = "xcat_"
EXTRA_NUMERIC_PREFIX = "xnum_"


class ColumnMapping(BaseModel):
    """The YAML mapping file. Every key is optional: an export already in canonical fields needs none."""

    model_config = ConfigDict(extra="forbid")

    kind: Kind | None = None
    columns: dict[str, str] = Field(default_factory=dict, description="canonical name: column in the file")
    labels: dict[str, str] = Field(default_factory=dict, description="label name: column in the file")
    extra_categorical: list[str] = Field(default_factory=list)
    extra_numeric: list[str] = Field(default_factory=list)
    date_format: str | None = Field(None, description="strptime format of every date column, e.g. '%d/%m/%Y'")
    hs_code_digits: int | None = Field(None, ge=6, le=10, description="left-pad numeric HS codes to this width")
    decimal: Literal[".", ","] = "."
    delimiter: str | None = None
    encoding: str = "utf-8"
    unknown_columns: Literal["ignore", "error"] = "ignore"

    def source_names(self) -> dict[str, str]:
        """File column → canonical field, for mapped fields and labels."""
        return {source: canonical for canonical, source in {**self.columns, **self.labels}.items()}


def load_mapping(path: Path | None) -> ColumnMapping:
    """Read and check a mapping file; problems come back as one readable DataError."""
    if path is None:
        return ColumnMapping()
    try:
        content = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError as exc:
        raise DataError(f"mapping {path}: no such file") from exc
    except yaml.YAMLError as exc:
        raise DataError(f"mapping {path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(content, dict):
        raise DataError(f"mapping {path}: expected a YAML mapping at the top level")
    try:
        return ColumnMapping.model_validate(content)
    except ValidationError as exc:
        raise DataError(f"mapping {path}: {field_errors(exc)}") from exc


def slug(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


@dataclass
class MappedFrame:
    frame: pd.DataFrame  # canonical names (values still raw), extras prefixed xcat_/xnum_
    unknown_columns: list[str] = field(default_factory=list)


def _suggest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def resolve_kind(path: Path, kind: str | None, mapping: ColumnMapping) -> Kind:
    """--kind wins, then the mapping's kind, then the file name (declarations_2024.csv → declarations)."""
    chosen = kind or mapping.kind
    if chosen is None:
        stem = path.name.lower()
        chosen = next((k for k in KINDS if stem.startswith(k) or stem.startswith(k.rstrip("s"))), None)
    if chosen not in KINDS:
        raise DataError(f"{path}: cannot tell what the file holds; pass --kind ({'|'.join(KINDS)})")
    return chosen


def apply_mapping(raw: pd.DataFrame, mapping: ColumnMapping, kind: Kind) -> MappedFrame:
    """Rename mapped columns to canonical names, prefix extras, and set aside unknown columns."""
    types = field_types(kind)
    for canonical in {**mapping.columns, **mapping.labels}:
        if canonical not in types:
            raise DataError(f"mapping: {canonical!r} is not a field of {kind}{_suggest(canonical, list(types))}")
    for canonical in mapping.labels:
        if canonical not in LABEL_FIELDS:
            raise DataError(f"mapping: {canonical!r} is listed under labels but is not a label ({', '.join(LABEL_FIELDS)})")
    rename: dict[str, str] = {}
    for source, canonical in mapping.source_names().items():
        if source not in raw.columns:
            raise DataError(
                f"mapping names column {source!r} for {canonical}, but the file has no such column"
                f"{_suggest(source, list(map(str, raw.columns)))}"
            )
        rename[source] = canonical
    for extras, prefix in ((mapping.extra_categorical, EXTRA_CATEGORICAL_PREFIX), (mapping.extra_numeric, EXTRA_NUMERIC_PREFIX)):
        for source in extras:
            if source not in raw.columns:
                raise DataError(f"mapping lists extra column {source!r}, but the file has no such column")
            rename[source] = prefix + slug(source)
    mapped_targets = set(rename.values())
    for column in raw.columns:  # columns already named canonically need no mapping
        if column in types and column not in rename and column not in mapped_targets:
            rename[column] = column
    unknown = [str(c) for c in raw.columns if c not in rename]
    if unknown and mapping.unknown_columns == "error":
        raise DataError(f"unknown columns {unknown}: map them, list them as extras, or set unknown_columns: ignore")
    frame = raw[list(rename)].rename(columns=rename)
    missing = [f for f in required_fields(kind) if f not in frame.columns]
    if missing:
        hint = "; map them in a mapping file (--mapping)" if unknown else ""
        raise DataError(f"{kind} file lacks required column(s): {', '.join(missing)}{hint}")
    return MappedFrame(frame=frame, unknown_columns=unknown)
