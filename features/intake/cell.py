"""One value read the way ingest reads a column of them (features/intake/validation.py `check_rows`), in plain Python.

The canonical API reads each field of a declaration with these (serving/api/schemas.py `Declaration`), so a value is accepted,
refused and typed alike whichever way it arrives, at microseconds a value: `read_checked` costs tens of
milliseconds a row. tests/unit/test_cell.py runs a catalogue of cells through both and holds them together.

A JSON value is first written as the cell a file of it would hold (`file_text`: what the source layout's records
become, features/intake/records.py), then read with ingest's rule for the field's type:
- text: the normal form of features/intake/text.py, an HS code without dots, spaces and hyphens, country codes in
  upper case, ids at most MAX_ID_LENGTH characters and other text MAX_TEXT_LENGTH;
- numbers: what pandas' `to_numeric` reads (ASCII digits, an exponent, inf/infinity), finite and never negative;
- dates: ISO 8601 as pandas reads it (20240601, 2024-06-01T10:00:00+02:00 is converted to UTC first, then the
  day), storable and not after today.
A refused value raises CellError with the quarantine reason code ingest gives it (features/contract.py REASONS).
"""
from __future__ import annotations

import datetime as dt
import functools
import math
import re

import numpy as np
import pandas as pd

from features.contract import (
    CONTRACTS,
    EARLIEST_STORABLE_DATE,
    HS_CHAPTERS,
    HS_CODE_PATTERN,
    ISO_COUNTRIES,
    LATEST_STORABLE_DATE,
    MAX_ID_LENGTH,
    MAX_TEXT_LENGTH,
    REASONS,
    is_id_field,
    latest_day,
)
from features.intake.reader import NULL_MARKERS
from features.intake.text import invalid_text, normalise
from features.intake.validation import HS_SEPARATOR, UPPERCASE_FIELDS

SCALARS = (str, int, float, bool, type(None))
# pandas' number syntax: ASCII digits only (Python's float() also takes '1_000' and full-width digits, pandas not).
NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
WHOLE = re.compile(r"[+-]?[0-9]+")
INFINITY = re.compile(r"([+-]?)(inf|infinity)", re.IGNORECASE)
ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
HS_SEPARATORS = re.compile(HS_SEPARATOR)
HS_CODE = re.compile(HS_CODE_PATTERN)


class CellError(ValueError):
    """A value ingest would quarantine: `code` is its reason code, the message says why in words."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def file_text(value: object, decimal: str = ".") -> str | None:
    """A JSON value as the cell a file of it holds: a number written as a CSV writes it (with the mapping's decimal
    mark), a boolean as true/false, null and the reader's null markers as missing. Python callers' values read as
    pandas writes them: a date (or timestamp) in ISO form, a numpy scalar as its Python number."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, dt.date):
        return value.isoformat()
    if not isinstance(value, SCALARS):
        raise CellError("invalid_type", "a value is a number, a string or null, as in a file cell")
    if value is None or isinstance(value, bool):
        return None if value is None else str(value).lower()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        value = float.__repr__(value) if decimal == "." else float.__repr__(value).replace(".", ",")
    text = str(value)
    return None if text in NULL_MARKERS else text


def _cell(value: object) -> str | None:
    text = file_text(value)
    if text is not None and (why := invalid_text(text)) is not None:
        raise CellError("invalid_text", f"the text {why}")
    return text


def read_text(value: object, field: str) -> str | None:
    """A text field's value in ingest's normal form (None when missing); too_long past the field's cap."""
    text = _cell(value)
    text = normalise(text) if text is not None else ""
    if not text:
        return None
    if field == "hs_code":
        text = HS_SEPARATORS.sub("", text)
    if field in UPPERCASE_FIELDS:  # one code point for one, as Arrow does it (Python makes 'ß' 'SS')
        text = text.upper() if text.isascii() else "".join(c.upper() if len(c.upper()) == 1 else c for c in text)
    cap = MAX_ID_LENGTH if is_id_field(field) else MAX_TEXT_LENGTH
    if len(text) > cap:
        raise CellError("too_long", f"{len(text):,} characters: {REASONS['too_long']}")
    return text


def read_hs_code(value: object) -> str | None:
    """An HS code: 6, 8 or 10 ASCII digits of a goods chapter, once dots, spaces and hyphens are dropped."""
    code = read_text(value, "hs_code")
    if code is not None and not (HS_CODE.fullmatch(code) and HS_CHAPTERS[0] <= code[:2] <= HS_CHAPTERS[1]):
        raise CellError("invalid_hs_code", f"{code!r}: {REASONS['invalid_hs_code']} of chapters "
                                           f"{HS_CHAPTERS[0]}-{HS_CHAPTERS[1]}")
    return code


def read_country(value: object, field: str) -> str | None:
    """An ISO 3166-1 alpha-2 code (ZZ, XX and XZ for unknown), in either case."""
    code = read_text(value, field)
    if code is not None and code not in ISO_COUNTRIES:
        raise CellError("invalid_country_code", f"{code[:60]!r}: {REASONS['invalid_country_code']}")
    return code


def read_amount(value: object) -> float | None:
    """A finite, non-negative number (amounts, masses, counts and rates)."""
    text = _cell(value)
    text = text.strip() if text is not None else ""
    if not text:
        return None
    if WHOLE.fullmatch(text):  # a whole number is read as one first, as pandas reads it ('-0' is 0)
        try:
            whole = int(text)
        except ValueError:  # past Python's digit limit: pandas cannot read it either
            raise CellError("invalid_type", f"{text[:60]!r}: {REASONS['invalid_type']} (a number)") from None
        try:
            number = float(whole)
        except OverflowError:
            number = math.inf if whole > 0 else -math.inf
    elif NUMBER.fullmatch(text):
        number = float(text)
    elif found := INFINITY.fullmatch(text):
        number = -math.inf if found.group(1) == "-" else math.inf
    else:
        raise CellError("invalid_type", f"{text[:60]!r}: {REASONS['invalid_type']} (a number)")
    if math.isinf(number):
        raise CellError("non_finite", f"{text[:60]!r}: {REASONS['non_finite']}")
    if number < 0:
        raise CellError("negative_value", f"{text[:60]!r}: {REASONS['negative_value']}")
    return number


NOT_STORABLE = dt.date.min  # read, but outside what the warehouse stores


@functools.lru_cache(maxsize=4096)
def _pandas_day(text: str, date_format: str = "ISO8601") -> dt.date | None:
    """The UTC day of a text by pandas' parser in `date_format` (ISO 8601 by default), as ingest calls it (a
    one-value Series costs a few hundred microseconds, so the texts seen are remembered: a sender writes its dates
    one way); None when it cannot be read, NOT_STORABLE when it is outside the warehouse's dates. "Not after today"
    is judged apart."""
    try:
        parsed = pd.to_datetime(pd.Series([text], dtype="str"), format=date_format, errors="coerce", utc=True).iloc[0]
    except (ValueError, TypeError, OverflowError):
        return None
    if pd.isna(parsed):
        return None
    day = parsed.tz_localize(None).normalize()
    return day.date() if EARLIEST_STORABLE_DATE <= day <= LATEST_STORABLE_DATE else NOT_STORABLE


def read_date(value: object, date_format: str | None = None) -> dt.date | None:
    """A day: ISO 8601 as ingest reads it (a value with a UTC offset converted to UTC first, a time of day
    dropped), or a mapping's `date_format` as ingest reads it, storable, and not after today (`latest_day`)."""
    text = _cell(value)
    text = text.strip() if text is not None else ""
    if not text:
        return None
    day = None
    if date_format is None and ISO_DAY.fullmatch(text):  # the usual form, read without pandas
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            day = None
    if day is None:  # any other form: pandas' own parser, as ingest calls it
        day = _pandas_day(text, date_format or "ISO8601")
        if day is None:
            raise CellError("invalid_date", f"{text[:60]!r}: {REASONS['invalid_date']} "
                                            f"({date_format or 'ISO 8601'})")
        if day is NOT_STORABLE:
            raise CellError("date_out_of_range", f"{text[:60]!r}: {REASONS['date_out_of_range']}")
    if not EARLIEST_STORABLE_DATE.date() <= day <= latest_day():
        raise CellError("date_out_of_range", f"{text[:60]!r}: {REASONS['date_out_of_range']}")
    return day


def fields_checked_by(kind: str, check: str) -> list[str]:
    """The fields of `kind` that the contract's pandera model checks with `check` (a reason code, e.g.
    'invalid_country_code'), in the contract's order: which reader a field takes besides its type's."""
    columns = CONTRACTS[kind].to_schema().columns
    return [name for name, column in columns.items() if any(c.name == check for c in column.checks)]
