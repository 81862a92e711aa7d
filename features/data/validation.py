"""Row-level validation: parse raw values into canonical types, then check each row with the pandera contract.

Every row ends up either valid (typed) or rejected with machine-readable reason codes and a readable message.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa

from features.data.contract import CONTRACTS, REASONS, Kind, field_types
from features.data.errors import DataError
from features.data.mapping import EXTRA_NUMERIC_PREFIX, ColumnMapping

UPPERCASE_FIELDS = {
    "origin_country", "departure_country", "port_of_loading", "port_of_discharge", "transshipment_ports",
    "credit_rating",
}
FLAG_WORDS = {
    "1": 1, "0": 0, "1.0": 1, "0.0": 0, "true": 1, "false": 0, "yes": 1, "no": 0, "y": 1, "n": 0,
    "t": 1, "f": 0, "si": 1, "sí": 1,
}
# pandera's own check names → our reason codes (our custom checks are already named by reason).
PANDERA_CHECKS = {"not_nullable": "missing_required"}


@dataclass
class RowCheck:
    valid: pd.DataFrame  # typed canonical rows, index = position in the file
    rejected: pd.DataFrame  # index = position in the file; columns: reason, message
    failures: pd.DataFrame | None = None  # one row per (row, column) problem: row, column, code, value, message


def _as_text(s: pd.Series) -> pd.Series:
    if pd.api.types.is_float_dtype(s) and s.dropna().mod(1).eq(0).all():
        s = s.astype("Int64")  # 870323.0 from a spreadsheet export is the code 870323
    out = s.astype("str").str.strip()
    return out.mask(out.isna() | (out == ""))


def _parse_numbers(s: pd.Series, decimal: str) -> pd.Series:
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        return s.astype("float64")
    text = s.astype("str").str.strip()
    if decimal == ",":
        text = text.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
    return pd.to_numeric(text, errors="coerce").astype("float64")


def _parse_dates(s: pd.Series, date_format: str | None) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(s):
        return s.dt.tz_localize(None) if getattr(s.dt, "tz", None) else s
    if s.dtype == object and s.dropna().map(lambda v: hasattr(v, "year")).all():
        return pd.to_datetime(s, errors="coerce")  # Parquet date32 comes back as datetime.date objects
    return pd.to_datetime(s.astype("str").str.strip(), format=date_format or "ISO8601", errors="coerce")


def _parse_flags(s: pd.Series) -> pd.Series:
    """0/1 as float; words like yes/no/true/false are read too. Other numbers pass through for the 0/1 check."""
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
        return s.astype("float64")
    words = s.astype("str").str.strip().str.lower()
    return words.map(FLAG_WORDS).astype("float64").fillna(pd.to_numeric(words, errors="coerce"))


def parse(frame: pd.DataFrame, kind: Kind, mapping: ColumnMapping) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cast raw columns to canonical types. Returns the typed frame and the parse failures (row, column, code)."""
    types = field_types(kind)
    typed = {}
    failures = []
    for column in frame.columns:
        raw = frame[column]
        parse_type = types.get(column, "number" if column.startswith(EXTRA_NUMERIC_PREFIX) else "text")
        if parse_type == "text":
            value = _as_text(raw)
            if column == "hs_code":
                value = value.str.replace(r"[.\s-]", "", regex=True)
                if mapping.hs_code_digits:
                    numeric = value.str.fullmatch(r"\d+").fillna(False).astype(bool)
                    value = value.where(~numeric, value.str.zfill(mapping.hs_code_digits))
            if column in UPPERCASE_FIELDS:
                value = value.str.upper()
            code = None
        elif parse_type == "date":
            value, code = _parse_dates(raw, mapping.date_format).astype("datetime64[us]"), "invalid_date"
            far = value.notna() & ((value < pd.Timestamp.min) | (value > pd.Timestamp.max))
            if far.any():  # beyond what the nanosecond contract can hold: out of range, whatever the bounds
                failures.append(pd.DataFrame({"row": frame.index[far], "column": column, "code": "date_out_of_range",
                                              "value": raw[far].astype("str").to_numpy()}))
                value = value.mask(far)
        elif parse_type == "flag":
            value, code = _parse_flags(raw), "invalid_type"
        else:
            value, code = _parse_numbers(raw, mapping.decimal), "invalid_type"
            if parse_type == "integer":
                value = value.where(value.isna() | value.mod(1).eq(0))
                value = value.astype("Int64")
        if code is not None:
            bad = raw.notna() & value.isna()  # text only for these few: casting every value to str is slow
            bad[bad] = raw[bad].astype("str").str.strip() != ""
            if bad.any():
                failures.append(pd.DataFrame({"row": frame.index[bad], "column": column, "code": code,
                                              "value": raw[bad].astype("str").to_numpy()}))
        if parse_type == "flag":  # Int8 holds only 0/1 here, so other numbers fail now rather than overflow
            off = value.notna() & ~value.isin([0, 1])
            if off.any():
                failures.append(pd.DataFrame({"row": frame.index[off], "column": column, "code": "invalid_flag",
                                              "value": raw[off].astype("str").to_numpy()}))
            value = value.where(~off).astype("Int8")
        typed[column] = value
    typed_frame = pd.DataFrame(typed, index=frame.index)
    if kind in ("declarations", "outcomes") and "fraud" in typed_frame and "inspected" not in typed_frame:
        typed_frame["inspected"] = typed_frame["fraud"].notna().astype("Int8")  # the contract's label rule
    empty = pd.DataFrame(columns=["row", "column", "code", "value"])
    return typed_frame, pd.concat(failures, ignore_index=True) if failures else empty


def _pandera_failures(typed: pd.DataFrame, kind: Kind) -> pd.DataFrame:
    try:
        CONTRACTS[kind].validate(typed, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        schema_level = cases[cases["index"].isna()]
        if len(schema_level):  # a missing column or an uncastable dtype: our parser should have prevented it
            first = schema_level.iloc[0]
            raise DataError(f"{kind}: {first['column']}: {first['check']}") from exc
        return pd.DataFrame({
            "row": cases["index"].astype("int64").to_numpy(),
            "column": cases["column"].astype("str").to_numpy(),
            "code": cases["check"].map(lambda c: PANDERA_CHECKS.get(c, c)).to_numpy(),
            "value": cases["failure_case"].astype("str").to_numpy(),
        })
    return pd.DataFrame(columns=["row", "column", "code", "value"])


def check_rows(frame: pd.DataFrame, kind: Kind, mapping: ColumnMapping) -> RowCheck:
    """Parse and validate every row; nothing is dropped without a reason."""
    frame = frame.reset_index(drop=True)
    typed, parse_failures = parse(frame, kind, mapping)
    failures = pd.concat([parse_failures, _pandera_failures(typed, kind)], ignore_index=True)
    if failures.empty:
        return RowCheck(valid=typed, rejected=pd.DataFrame({"reason": [], "message": []}, dtype="str"), failures=failures)
    # The pandera check on a value the parser already rejected only repeats it.
    failures = failures.drop_duplicates(subset=["row", "column"], keep="first")
    failures["message"] = (
        failures["column"] + " " + failures["value"].map(_quote) + ": " + failures["code"].map(REASONS).fillna("failed a check")
    )
    grouped = failures.groupby("row", sort=True)
    rejected = pd.DataFrame({
        "reason": grouped["code"].agg(lambda c: ";".join(dict.fromkeys(c))),
        "message": grouped["message"].agg("; ".join),
    })
    bad_rows = np.isin(typed.index, rejected.index)
    return RowCheck(valid=typed[~bad_rows], rejected=rejected, failures=failures)


def _quote(value: object) -> str:
    if not isinstance(value, str) or value in ("nan", "<NA>", "None", "NaT"):
        return "(empty)"
    return repr(value[:60])
