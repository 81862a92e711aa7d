"""Column mapping: how a user's own export (other names, extra columns, other formats) maps to canonical fields."""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from features.contract import KINDS, LABEL_FIELDS, Kind, field_types, required_fields
from features.errors import UserError, field_errors
from features.intake.text import normalise

EXTRA_CATEGORICAL_PREFIX = "xcat_"
EXTRA_NUMERIC_PREFIX = "xnum_"
PERCENT = "percent"
NOT_DELIMITERS = {'"', "\n", "\r"}


class Scale(BaseModel):
    """`{scale: FACTOR}`: the file's values times FACTOR are the contract's unit (values in thousands: 1000)."""

    model_config = ConfigDict(extra="forbid")

    scale: float = Field(gt=0, allow_inf_nan=False)


Unit = Literal["percent"] | Scale
RecodeTarget = bool | int | float | str | None  # None recodes a value to empty


def recode_key(key: object) -> str:
    """A `values:` source value as the text it is matched on: YAML's 2 and 2.0 both mean the text "2"."""
    if isinstance(key, bool) or key is None:
        raise ValueError(f"key {key!r} was read by YAML as {'a boolean' if key is not None else 'empty'}; quote it")
    if isinstance(key, float) and math.isfinite(key) and key.is_integer():
        return str(int(key))
    if isinstance(key, int | float):
        return str(key)
    if isinstance(key, str) and normalise(key):
        return normalise(key)  # matched on the values' normal form (features/intake/text.py)
    raise ValueError(f"key {key!r} is not a value a file can hold; quote it")


def describe_unit(unit: Unit) -> str:
    return "percent → fraction (÷100)" if unit == PERCENT else f"scaled ×{unit.scale:g}"


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
    delimiter: str | None = Field(None, description="one character: ',', ';', '|', a tab...; sniffed when unset")
    encoding: str = "utf-8"
    unknown_columns: Literal["ignore", "error"] = "ignore"
    units: dict[str, Unit] = Field(
        default_factory=dict, description="numeric field: 'percent' (8.0 means 8 %) or {scale: FACTOR}")
    values: dict[str, dict[str, RecodeTarget]] = Field(
        default_factory=dict, description="field or label: {source value: target value}, applied before parsing")

    @field_validator("delimiter")
    @classmethod
    def _check_delimiter(cls, delimiter: str | None) -> str | None:
        # a CSV reader splits on one character, and a quote or a line break already means something else
        if delimiter is not None and (len(delimiter) != 1 or delimiter in NOT_DELIMITERS):
            raise ValueError(f"expected one character other than a quote or a line break (e.g. ',', ';', '|', or "
                             f"'\\t' for a tab), got {delimiter!r}")
        return delimiter

    @field_validator("units", mode="before")
    @classmethod
    def _check_units(cls, units: Any) -> Any:
        if not isinstance(units, dict):
            return units  # pydantic explains
        for name, unit in units.items():
            if unit == PERCENT or isinstance(unit, Scale):
                continue
            factor = unit.get("scale") if isinstance(unit, dict) and set(unit) == {"scale"} else None
            if isinstance(factor, int | float) and not isinstance(factor, bool) and math.isfinite(factor) and factor > 0:
                continue
            raise ValueError(f"{name}: expected 'percent' or {{scale: FACTOR}} with a positive FACTOR, got {unit!r}")
        return units

    @field_validator("values", mode="before")
    @classmethod
    def _check_values(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        checked = {}
        for name, recode in values.items():
            if not isinstance(recode, dict):
                raise ValueError(f"{name}: expected a mapping of source value to target value, e.g. {{\"2\": 1}}")
            by_text: dict[str, Any] = {}
            for key, target in recode.items():
                try:
                    text = recode_key(key)
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
                if text in by_text:
                    raise ValueError(f"{name}: source value {text!r} is listed twice")
                if isinstance(target, dict | list):
                    raise ValueError(f"{name}: the target of {text!r} must be a single value, got {target!r}")
                by_text[text] = target
            checked[name] = by_text
        return checked

    def source_names(self) -> dict[str, str]:
        """File column → canonical field, for mapped fields and labels."""
        return {source: canonical for canonical, source in {**self.columns, **self.labels}.items()}


def load_mapping(path: Path | None) -> ColumnMapping:
    """Read and check a mapping file; problems come back as one readable UserError."""
    if path is None:
        return ColumnMapping()
    try:
        content = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError as exc:
        raise UserError(f"mapping {path}: no such file") from exc
    except yaml.YAMLError as exc:
        raise UserError(f"mapping {path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(content, dict):
        raise UserError(f"mapping {path}: expected a YAML mapping at the top level")
    try:
        return ColumnMapping.model_validate(content)
    except ValidationError as exc:
        raise UserError(f"mapping {path}: {field_errors(exc)}") from exc


def slug(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


@dataclass
class Layout:
    """How a file's columns (its header) meet the mapping: what each column becomes, and what is left aside."""

    rename: dict[str, str]  # file column → canonical field or xcat_/xnum_ extra
    mapping: ColumnMapping  # the part of the mapping that applies to the file (see `plan_layout`)
    unknown_columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # one readable line each, e.g. that the labels are absent


@dataclass
class MappedFrame:
    frame: pd.DataFrame  # canonical names (values still raw), extras prefixed xcat_/xnum_
    layout: Layout  # how its columns were mapped; `layout.mapping` is what `check_rows` is given


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
        raise UserError(f"{path}: cannot tell what the file holds; pass --kind ({'|'.join(KINDS)})")
    return chosen


def check_options(mapping: ColumnMapping, kind: Kind) -> None:
    """The mapping's `units` and `values` name fields of this kind (units: numeric ones), or a UserError says which."""
    types = field_types(kind)
    numeric = [f for f, t in types.items() if t == "number"]
    for name in mapping.units:
        if name not in types:
            raise UserError(f"mapping: units: {name!r} is not a field of {kind}{_suggest(name, list(types))}")
        if types[name] != "number":
            raise UserError(f"mapping: units: {name!r} is a {types[name]} field; units apply to numeric fields only "
                            f"({', '.join(numeric)})")
    for name in mapping.values:
        if name not in types:
            raise UserError(f"mapping: values: {name!r} is not a field or label of {kind}{_suggest(name, list(types))}")


def check_columns(mapping: ColumnMapping) -> None:
    """Each file column becomes one field or one extra, and each field comes from one column, or a UserError names
    the mapping's entries: otherwise one use would be dropped without a word (and the file then said to lack a
    required column)."""
    twice = sorted(set(mapping.columns) & set(mapping.labels))
    if twice:
        raise UserError(f"mapping: {', '.join(twice)} listed under both columns and labels; list each field once")
    uses: dict[str, list[str]] = {}
    for option in ("columns", "labels"):
        for canonical, source in getattr(mapping, option).items():
            uses.setdefault(source, []).append(f"{option}.{canonical}")
    for option, prefix in (("extra_categorical", EXTRA_CATEGORICAL_PREFIX), ("extra_numeric", EXTRA_NUMERIC_PREFIX)):
        named: dict[str, list[str]] = {}
        for source in dict.fromkeys(getattr(mapping, option)):
            uses.setdefault(source, []).append(option)
            named.setdefault(prefix + slug(source), []).append(source)
        for name, sources in named.items():
            if len(sources) > 1:
                raise UserError(f"mapping: {option}: columns {sources} would all become {name}; list one of them")
    shared = [f"file column {source!r} is named by {' and '.join(used)}" for source, used in uses.items()
              if len(used) > 1]
    if shared:
        raise UserError(f"mapping: {'; '.join(shared)}: a file column maps to one field or one extra")


def _without(mapping: ColumnMapping, fields: set[str], extras: bool = False) -> ColumnMapping:
    """The mapping less these canonical fields (their columns, units and recodes), and less its extras if asked."""
    keep = lambda options: {k: v for k, v in options.items() if k not in fields}  # noqa: E731
    update = {"columns": keep(mapping.columns), "labels": keep(mapping.labels), "units": keep(mapping.units),
              "values": keep(mapping.values)}
    return mapping.model_copy(update=update | ({"extra_categorical": [], "extra_numeric": []} if extras else {}))


def for_kind(mapping: ColumnMapping, kind: Kind) -> ColumnMapping:
    """The part of a mapping that a file of `kind` uses. One mapping describes an export's layout: its outcomes
    (`--kind outcomes`) are a file in that layout holding the id and label columns, so the mapping's other
    declaration fields and its extras are not looked for there."""
    if kind != "outcomes":
        return mapping
    return _without(mapping, set(field_types("declarations")) - set(field_types(kind)), extras=True)


def plan_layout(columns: list[str], mapping: ColumnMapping, kind: Kind) -> Layout:
    """Check a file's header against the mapping, reading no row: a UserError says what does not fit.

    A label column the mapping names but the file lacks is not an error: labels arrive later (as outcomes) or
    never, so the file's rows lack that label (an absent inspected is taken from fraud where the file has fraud,
    the contract's rule), and a note says which. A mapped field the kind requires must be there."""
    types = field_types(kind)
    check_columns(mapping)
    used = for_kind(mapping, kind)
    check_options(used, kind)
    for canonical in {**used.columns, **used.labels}:
        if canonical not in types:
            raise UserError(f"mapping: {canonical!r} is not a field of {kind}{_suggest(canonical, list(types))}")
    for canonical in used.labels:
        if canonical not in LABEL_FIELDS:
            raise UserError(f"mapping: {canonical!r} is listed under labels but is not a label ({', '.join(LABEL_FIELDS)})")
    names, required = [str(c) for c in columns], required_fields(kind)
    absent = {canonical: source for canonical, source in used.labels.items()
              if source not in names and canonical not in names and canonical not in required}
    used = _without(used, set(absent))
    rename: dict[str, str] = {}
    for source, canonical in used.source_names().items():
        if source not in names:
            raise UserError(f"mapping names column {source!r} for {canonical}, but the file has no such column"
                            f"{_suggest(source, names)}")
        rename[source] = canonical
    for extras, prefix in ((used.extra_categorical, EXTRA_CATEGORICAL_PREFIX), (used.extra_numeric, EXTRA_NUMERIC_PREFIX)):
        for source in extras:
            if source not in names:
                raise UserError(f"mapping lists extra column {source!r}, but the file has no such column")
            rename[source] = prefix + slug(source)
    mapped_targets = set(rename.values())
    for column in names:  # columns already named canonically need no mapping
        if column in types and column not in rename and column not in mapped_targets:
            rename[column] = column
    # The layout's columns that this kind does not use (an outcomes file's declaration fields) are not unknown.
    layout = set(mapping.source_names()) | set(mapping.extra_categorical) | set(mapping.extra_numeric)
    unknown = [c for c in names if c not in rename and c not in layout]
    if unknown and mapping.unknown_columns == "error":
        raise UserError(f"unknown columns {unknown}: map them, list them as extras, or set unknown_columns: ignore")
    missing = [f for f in required if f not in rename.values()]
    as_extras = [f for f in missing if f in used.extra_categorical or f in used.extra_numeric]
    if as_extras:
        raise UserError(f"mapping: the file's column(s) {', '.join(as_extras)} are listed as extras, so they are not "
                        f"read as the required field(s) of the same name; take them off extra_categorical/extra_numeric")
    if missing:
        hint = "; map them in a mapping file (--mapping)" if unknown else ""
        raise UserError(f"{kind} file lacks required column(s): {', '.join(missing)}{hint}")
    return Layout(rename=rename, mapping=used, unknown_columns=unknown,
                  notes=_absent_labels(absent, set(rename.values()), names))


def _absent_labels(absent: dict[str, str], present: set[str], names: list[str]) -> list[str]:
    """One line on the label columns the mapping names and the file lacks (none: no line).

    `present` holds the canonical names the file does have. Where `inspected` is absent but `fraud` is there, the
    contract's label rule (features/intake/validation.py) takes inspected from fraud: the line says so."""
    if not absent:
        return []
    columns = ", ".join(repr(source) + _suggest(source, names) for source in absent.values())
    if not present & set(LABEL_FIELDS):
        return [f"no label columns ({columns}): the rows are unlabelled (scored, but not trained on until "
                "outcomes label them)"]
    effects = [("inspected taken from fraud (rows with a fraud value count as inspected)"
                if label == "inspected" and "fraud" in present else f"{label} left empty on every row")
               for label in absent]
    return [f"no {columns} column{'s' if len(absent) > 1 else ''}: {'; '.join(effects)}"]


def apply_mapping(raw: pd.DataFrame, mapping: ColumnMapping, kind: Kind) -> MappedFrame:
    """Rename mapped columns to canonical names, prefix extras, and set aside unknown columns (`plan_layout`).

    Values are left as they are: `check_rows` recodes (`values`) and converts units (`units`)."""
    layout = plan_layout(list(raw.columns), mapping, kind)
    return MappedFrame(frame=raw[list(layout.rename)].rename(columns=layout.rename), layout=layout)
