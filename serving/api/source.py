"""The source layout of a service started with a column mapping (`aduana serve --mapping M.yaml`): records with the
mapping's column names, units and codes, told apart from canonical requests by their column names and read through
features/intake (`read_checked`), the same mapping and row checks as ingest and `aduana score --mapping`.

Records the mapping reads in plain Python (`SourceLayout.fast`: renamed, recoded, dated by the mapping's format and
converted to the contract's units around the canonical `Declaration`, whose readers are ingest's) skip the frame
and its pandera checks, tens of milliseconds a request; any other record, and any record one of them refuses, goes
the frame's way, which says what is wrong by the client's own column names. tests/integration/test_api_source.py
holds the two ways equal on a fuzzer's records.
"""
from __future__ import annotations

import math

import pandas as pd
from pydantic import ValidationError

from features.contract import LABEL_FIELDS, field_types, required_fields
from features.errors import UserError
from features.intake.cell import HS_SEPARATORS, CellError, file_text, read_amount, read_date, read_text
from features.intake.checked import read_checked
from features.intake.mapping import (
    EXTRA_CATEGORICAL_PREFIX,
    EXTRA_NUMERIC_PREFIX,
    PERCENT,
    ColumnMapping,
    describe_unit,
)
from features.intake.records import non_scalar_values, records_frame, source_columns
from features.intake.text import normalise
from serving.api.body import invalid_text_errors, unprocessable
from serving.api.schemas import Declaration


class SourceLayout:
    """What a service started with a column mapping reads: the mapping's source layout, told apart from
    canonical requests by its column names."""

    def __init__(self, mapping: ColumnMapping):
        if mapping.kind not in (None, "declarations"):
            raise UserError(f"the API scores declarations: a mapping of {mapping.kind} cannot describe its requests")
        self.mapping = mapping
        self.columns = source_columns(mapping)  # file column → canonical (or xcat_/xnum_) column
        self.canonical = set(Declaration.model_fields)
        # Columns only the source layout has: a request carrying one of them is in the source layout.
        self.distinct = [c for c in self.columns if c not in self.canonical]
        self.names = {target: source for source, target in self.columns.items()}  # for error messages
        # Fields the file keeps under their canonical names (apply_mapping takes those as they are).
        self.passthrough = [f for f in field_types("declarations") if f not in self.names and f not in self.columns]
        # What `fast` reads: each column a record may carry → its field or extra, the extras, the recodes it can
        # apply (to text or to empty), and the date fields (labels it leaves to `read`).
        self.targets = self.columns | {f: f for f in self.passthrough}
        self.extras = [c for c in self.columns.values() if c.startswith((EXTRA_CATEGORICAL_PREFIX, EXTRA_NUMERIC_PREFIX))]
        self.recodes = {name: recode for name, recode in mapping.values.items() if name not in LABEL_FIELDS}
        self.dates = [f for f, kind in field_types("declarations").items() if kind == "date" and f not in LABEL_FIELDS]
        self.fast_reads = mapping.decimal == "." and all(isinstance(target, str | None) for recode in
                                                         self.recodes.values() for target in recode.values())

    def layout(self, records: list, asked: str) -> str:
        if asked != "auto":
            return asked
        if not self.distinct:  # the mapping keeps canonical names: its layout is canonical names in its units/codes
            return "source"
        if any(isinstance(r, dict) and any(k in r for k in self.distinct) for r in records):
            return "source"
        return "canonical"

    def describe(self) -> str:
        renamed = ", ".join(f"{s!r} → {t}" for s, t in self.columns.items() if s != t) or "none"
        text = (f"This service reads a column mapping: `POST /v1/score` also takes records in its source layout, "
                f"as JSON objects with the file's column names and values as they appear in the file (numbers or "
                f"strings; units and codes as the mapping says). They go through the same mapping and row checks "
                f"as ingest and `aduana score --mapping`, so they get the same score and lane as the file scored in "
                f"batch. Source columns: {renamed}.")
        if self.mapping.units:
            text += " Units: " + ", ".join(f"{k} {describe_unit(u)}" for k, u in self.mapping.units.items()) + "."
        if self.mapping.values:
            text += " Codes: " + "; ".join(f"{k} {', '.join(f'{a!r} → {b!r}' for a, b in v.items())}"
                                          for k, v in self.mapping.values.items()) + "."
        text += (" A request is read in the source layout when a record carries a column only that layout has ("
                 + ", ".join(map(repr, self.distinct)) + "), otherwise in canonical fields; `?layout=source` or "
                 "`?layout=canonical` says so explicitly. One layout per request.") if self.distinct else \
            " Its column names are the canonical ones, so every request is read in the source layout unless " \
            "`?layout=canonical` is given."
        return text

    def schema(self) -> dict:
        """JSON schema of one source-layout record (for the OpenAPI document)."""
        required = set(required_fields("declarations"))
        value = {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "null"}]}
        columns = {**self.columns, **{f: f for f in self.passthrough}}
        return {"type": "object", "title": "SourceDeclaration",
                "description": "One goods item in the mapping's source layout.",
                "properties": {s: {**value, "description": f"read as {t}"} for s, t in columns.items()},
                "required": [s for s, t in columns.items() if t in required]}

    def read(self, records: list[dict], as_list: bool) -> pd.DataFrame | list[dict]:
        """Parsed records in this layout as the typed declarations ingest would store (an HTTPException 422 with
        field-level details when anything is refused): as canonical records where `fast` reads them all, else as
        `read_checked`'s frame."""
        if errors := invalid_text_errors(records, as_list):
            raise unprocessable(errors)
        where = (lambda i: ["body"]) if not as_list else (lambda i: ["body", i])
        nested = non_scalar_values(records)
        if nested:
            raise unprocessable([{"loc": [*where(i), k], "msg": "a value is a number, a string or null, as in a "
                                  "file cell", "type": "not_a_value"} for i, k in nested])
        if self.fast_reads and (rows := self.fast(records)) is not None:
            return rows
        try:
            taken = read_checked(records_frame(records, self.mapping), "declarations", self.mapping)
        except UserError as exc:  # e.g. unknown columns under `unknown_columns: error`
            raise unprocessable([{"loc": ["body"], "msg": str(exc), "type": "mapping"}]) from exc
        if len(taken.rejected):
            raise unprocessable(self.errors(taken.failures, taken.rejected, not as_list))
        return taken.valid

    def errors(self, failures: pd.DataFrame, rejected: pd.DataFrame, single: bool) -> list[dict]:
        """Field-level 422 details: loc names the record (in a list) and the column as the client sent it."""
        where = (lambda row: ["body"]) if single else (lambda row: ["body", int(row)])
        if {"row", "column", "code", "message"} <= set(failures.columns) and len(failures):
            return [{"loc": [*where(f.row), self.names.get(f.column, f.column)], "msg": str(f.message),
                     "type": str(f.code), "field": str(f.column)} for f in failures.itertuples()]
        return [{"loc": where(r.row_number - 1), "msg": str(r.message), "type": str(r.reason)}
                for r in rejected.itertuples()]

    def fast(self, records: list[dict]) -> list[dict] | None:
        """The records as the canonical declarations `read_checked` would type them, read in plain Python; None
        where any of them needs the frame's way: a value refused (the frame's errors name it), a label (checked
        against the other labels), an unknown column under `unknown_columns: error`."""
        rows = []
        for record in records:
            row = self._fast_row(record)
            if row is None:
                return None
            rows.append(row)
        return rows

    def _fast_row(self, record: dict) -> dict | None:
        fields, extras = {}, dict.fromkeys(self.extras)  # an extra the record lacks is missing
        for column, value in record.items():
            target = self.targets.get(column)
            if (target is None and self.mapping.unknown_columns == "error") or target in LABEL_FIELDS:
                return None
            if target is not None:
                (extras if target in extras else fields)[target] = value
        mapping = self.mapping
        try:
            for name, recode in self.recodes.items():  # matched on the value's normal form, as check_rows does
                text = file_text(fields.get(name))
                if text is not None and (key := normalise(text)) in recode:
                    fields[name] = recode[key]
            if mapping.hs_code_digits and (text := file_text(fields.get("hs_code"))) is not None:
                code = HS_SEPARATORS.sub("", normalise(text))
                fields["hs_code"] = code.zfill(mapping.hs_code_digits) if code.isascii() and code.isdigit() else code
            if mapping.date_format:
                for name in self.dates:
                    fields[name] = read_date(fields.get(name), mapping.date_format)
            row = Declaration.model_validate(fields).model_dump()
            for name, unit in mapping.units.items():  # after parsing, as check_rows converts them
                if row.get(name) is not None:
                    row[name] = row[name] / 100 if unit == PERCENT else row[name] * unit.scale
                    if math.isinf(row[name]):
                        return None
            for name, value in extras.items():
                row[name] = read_text(value, name) if name.startswith(EXTRA_CATEGORICAL_PREFIX) else read_amount(value)
        except (CellError, ValidationError):
            return None
        return row
