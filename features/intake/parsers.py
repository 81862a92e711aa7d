"""Column parsers: raw file values (text, or numbers and dates a reader already typed) into canonical types, a
whole column at a time. What cannot be read becomes missing, for the row checks (features/intake/validation.py)
to quarantine with its reason; nothing here raises on a value.
"""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

import numpy as np
import pandas as pd

from features.contract import MAX_WHOLE_NUMBER

FLAG_WORDS = {
    "1": 1, "0": 0, "1.0": 1, "0.0": 0, "true": 1, "false": 0, "yes": 1, "no": 0, "y": 1, "n": 0,
    "t": 1, "f": 0, "si": 1, "sí": 1,
}
# With `decimal: ","` a "." is read only as a thousands separator: groups of three digits after a leading group that
# does not start with 0, before the decimal comma (1.017 is 1017, 1.234,5 is 1234.5). Any other "." (1017.0, 3.5,
# 0.500, 1,017.5) means the file writes decimal points: read as a separator it would multiply the value (1017.0 as
# 10170), so such a value is refused instead, naming the setting.
COMMA_DECIMAL_GROUPED = r"[+-]?[1-9]\d{0,2}(\.\d{3})+(,\d*)?([eE][+-]?\d+)?"
# A float holds every number of up to 15 significant digits closely enough to tell whether it is whole and within
# ±2^53; only a value written with more digits is judged as a decimal (one by one: such values are rare).
EXACT_DIGITS = 15

def missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA or value is pd.NaT


def is_number(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool | np.bool_) \
        and not missing(value)


def parse_numbers(s: pd.Series, decimal: str) -> tuple[pd.Series, pd.Series, pd.Series]:
    """The values as floats; where `decimal: ","` met a value written with a decimal point (left empty: see
    COMMA_DECIMAL_GROUPED); and where it converted one (a comma or a thousands separator read)."""
    none = pd.Series(False, index=s.index)
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        return s.astype("float64"), none, none
    if s.dtype == object:  # numbers among text (a recoded column): the numbers are already numbers
        numbers = s.map(is_number).astype(bool)
        if numbers.any():
            out, misread, converted = parse_numbers(s.where(~numbers, None).astype("str"), decimal)
            out[numbers] = [_as_float(v) for v in s[numbers]]
            return out, misread & ~numbers, converted & ~numbers
    text = s.astype("str").str.strip()
    if decimal != ",":
        return pd.to_numeric(text, errors="coerce").astype("float64"), none, none
    marked = text.str.contains(r"[.,]").fillna(False).astype(bool)
    misread = marked & text.str.contains(".", regex=False).fillna(False) & ~text.str.fullmatch(COMMA_DECIMAL_GROUPED)
    text = text.mask(misread).str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
    out = pd.to_numeric(text, errors="coerce").astype("float64")
    return out, misread.fillna(False).astype(bool), marked & ~misread & out.notna()


def exact_whole(raw: pd.Series, value: pd.Series, decimal: str) -> tuple[np.ndarray, np.ndarray]:
    """Which values of an integer field lie beyond ±MAX_WHOLE_NUMBER, and which are not whole, judged on the value
    as given rather than on its float (which rounds 9007199254740993 to 9007199254740992, within the bound)."""
    if pd.api.types.is_integer_dtype(raw):  # Parquet int64: exact already
        huge = (raw > MAX_WHOLE_NUMBER) | (raw < -MAX_WHOLE_NUMBER)
        return huge.to_numpy(dtype=bool, na_value=False), np.zeros(len(raw), dtype=bool)
    huge = value.abs().gt(MAX_WHOLE_NUMBER).to_numpy(copy=True)  # a float value (or inf) is what it is
    fraction = value.mod(1).ne(0).to_numpy() & value.notna().to_numpy() & ~huge
    if pd.api.types.is_float_dtype(raw):
        return huge, fraction
    exactly = value.notna() & np.isfinite(value) & raw.astype("str").str.count(r"\d").gt(EXACT_DIGITS)
    for at in np.flatnonzero(exactly.fillna(False).to_numpy(dtype=bool)):
        given = _as_decimal(raw.iloc[at], decimal)
        if given is not None:
            huge[at] = abs(given) > MAX_WHOLE_NUMBER
            fraction[at] = not huge[at] and given != given.to_integral_value()
    return huge, fraction


def _as_decimal(value: object, decimal: str) -> Decimal | None:
    """A raw number exactly, as `parse_numbers` reads it (None where it cannot be read so)."""
    if isinstance(value, str):
        value = value.strip()
        if decimal == ",":
            value = value.replace(".", "").replace(",", ".")
    elif isinstance(value, np.generic):
        value = value.item()
    try:
        return Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        return None


def _as_float(value: object) -> float:
    try:
        return float(value)
    except OverflowError:  # a Python int beyond what a float holds
        return float("inf") if value > 0 else float("-inf")


def parse_dates(s: pd.Series, date_format: str | None) -> pd.Series:
    """Days (datetime64[us] at midnight). A value with a UTC offset is converted to UTC first
    (2023-03-01T02:00:00+05:00 is 2023-02-28); a naive one keeps its date. A time of day is dropped.
    A value that cannot be read becomes NaT (quarantined as invalid_date by the caller), never an error."""
    if pd.api.types.is_datetime64_any_dtype(s):
        parsed = s.dt.tz_convert("UTC").dt.tz_localize(None) if getattr(s.dt, "tz", None) else s
    elif s.dtype == object and s.dropna().map(lambda v: hasattr(v, "year")).all():
        parsed = _to_utc_days(s, None)  # Parquet date32 comes back as datetime.date objects
    else:
        parsed = _to_utc_days(s.astype("str").str.strip(), date_format or "ISO8601")
    return parsed.astype("datetime64[us]").dt.normalize()


def _to_utc_days(s: pd.Series, date_format: str | None) -> pd.Series:
    try:
        parsed = pd.to_datetime(s, format=date_format, errors="coerce", utc=True)
    except (ValueError, TypeError, OverflowError):  # one value pandas cannot coerce: read them one by one
        one = {v: _one_date(v, date_format) for v in s.dropna().unique()}
        parsed = pd.Series([one.get(v, pd.NaT) for v in s], index=s.index, dtype="datetime64[us, UTC]")
    return parsed.dt.tz_localize(None)


def _one_date(value: object, date_format: str | None) -> pd.Timestamp:
    try:
        return pd.to_datetime(pd.Series([value]), format=date_format, errors="coerce", utc=True).iloc[0]
    except (ValueError, TypeError, OverflowError):
        return pd.NaT


def parse_flags(s: pd.Series) -> pd.Series:
    """0/1 as float; words like yes/no/true/false are read too. Other numbers pass through for the 0/1 check."""
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
        return s.astype("float64")
    words = s.astype("str").str.strip().str.lower()
    return words.map(FLAG_WORDS).astype("float64").fillna(pd.to_numeric(words, errors="coerce"))
