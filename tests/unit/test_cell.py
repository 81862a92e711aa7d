"""The canonical API reads every value as ingest does.

Each cell of the catalogue goes through ingest's row checks (`check_rows` on the one-row frame of raw text that
`records_frame` builds, as a file of it would give) and through the canonical API's reading (serving/api/body.py
`read_canonical`: `Declaration`), in every declaration field of its type. Both must give the same verdict, the same
reason code when they refuse and the same typed value when they accept. The catalogue is data: the next case is one
line. Unpaired surrogates are left out (no file can hold one: tests/integration/test_api.py refuses them).
"""
from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pytest
from fastapi import HTTPException

from features.contract import CANONICAL_DTYPES, field_types
from features.intake.mapping import ColumnMapping
from features.intake.records import records_frame
from features.intake.validation import check_rows
from serving.api.body import read_canonical
from serving.api.schemas import Declaration

BASE = {"declaration_id": "D1", "declaration_date": "2024-06-01", "importer_id": "IMP1", "hs_code": "870323",
        "origin_country": "JP", "declared_value": 1000.0}
# The declaration fields each kind of cell is tried in: required and optional ones.
FIELDS = {
    "text": ["importer_id", "office_id", "transport_mode"],
    "hs": ["hs_code"],
    "country": ["origin_country", "departure_country"],
    "date": ["declaration_date"],
    "number": ["declared_value", "net_mass_kg", "tax_rate"],
}
TOMORROW = (dt.date.today() + dt.timedelta(days=1)).isoformat()  # within today's one day of slack
LATER = (dt.date.today() + dt.timedelta(days=3)).isoformat()

CATALOGUE = [
    # text: the normal form (NFKC, format characters dropped, stripped), blanks and null markers, caps, JSON types
    ("text", "IMP1"), ("text", "  IMP1  "), ("text", "\uff29\uff2d\uff30\uff11"), ("text", "IMP\u200b1"),
    ("text", "\ufeffIMP1"), ("text", "e\u0301"), ("text", "caf\u00e9 & co; \"x\""), ("text", "a\tb"),
    ("text", "line\nbreak"), ("text", "\u00a0IMP1\u3000"), ("text", ""), ("text", "   "), ("text", "\u3000"),
    ("text", "\u200b"), ("text", "NULL"), ("text", " NULL "), ("text", "n/a"), ("text", "None"), ("text", "NaN"),
    ("text", "x" * 100), ("text", "x" * 101), ("text", "x" * 1000), ("text", "x" * 1001),
    ("text", "\ufdfa" * 6), ("text", 12345), ("text", 1.5), ("text", -0.0), ("text", 2**64), ("text", True),
    ("text", False), ("text", None), ("text", "IMP\x00"), ("text", "\x1f"), ("text", "\x7f"), ("text", "\x85"),
    # HS codes: separators dropped, full-width digits read, other scripts' digits and non-goods chapters refused
    ("hs", "870323"), ("hs", "8703.23"), ("hs", "87-03-23"), ("hs", " 8703 23 "), ("hs", "8703\u200923"),
    ("hs", "870323.0"), ("hs", 870323), ("hs", 870323.0), ("hs", 30617), ("hs", "\uff18\uff17\uff10\uff13\uff12\uff13"),
    ("hs", "\u0668\u0667\u0660\u0663\u0662\u0663"), ("hs", "980000"), ("hs", "000000"), ("hs", "010000"),
    ("hs", "970000"), ("hs", "87032"), ("hs", "8703231"), ("hs", "87032310"), ("hs", "8703231000"),
    ("hs", "87032310001"), ("hs", "-"), ("hs", "."), ("hs", ""), ("hs", True), ("hs", "8703\u168023"),
    ("hs", "1" * 101),
    # countries: either case, unknown codes, look-alikes
    ("country", "JP"), ("country", "jp"), ("country", "Jp"), ("country", " cn "), ("country", "\uff43\uff4e"),
    ("country", "ZZ"), ("country", "XX"), ("country", "QQ"), ("country", "USA"), ("country", ""),
    ("country", "\u00df"), ("country", "\u0131n"), ("country", True), ("country", 1), ("country", "N/A"),
    # dates: ISO 8601 as pandas reads it, offsets converted to UTC, storable and not after today
    ("date", "2024-06-01"), ("date", " 2024-06-01 "), ("date", "20240601"), ("date", 20240601),
    ("date", "2024-06-01T10:00:00+02:00"), ("date", "2024-06-01T01:00:00+02:00"), ("date", "2024-06-01T22:00:00-05:00"),
    ("date", "2024-06-01T10:00Z"), ("date", "2024-06-01 10:00"), ("date", "2024-06-01T00:00:00.123456789"),
    ("date", "2024-06"), ("date", "2024"), ("date", "2024/06/01"), ("date", "2024-6-1"), ("date", "01/06/2024"),
    ("date", "2024-02-30"), ("date", "2024-02-29"), ("date", "2023-02-29"), ("date", "2024-13-01"),
    ("date", "2024-06-01T25:00"), ("date", "2024-W22"), ("date", "1677-09-21"), ("date", "1677-09-22"),
    ("date", "0001-01-01"), ("date", "2262-04-12"), ("date", "2999-01-01"), ("date", "9999-12-31"),
    ("date", "\uff12\uff10\uff12\uff14-06-01"), ("date", TOMORROW), ("date", LATER), ("date", True), ("date", 1.5),
    ("date", ""), ("date", "NaN"), ("date", "today"), ("date", None),
    # numbers: pandas' syntax (ASCII digits, exponents, inf), finite and never negative; JSON types
    ("number", "1000"), ("number", 1000), ("number", 1000.0), ("number", "1e5"), ("number", "1E5"),
    ("number", "1.5E+3"), ("number", " 12 "), ("number", "\u00a05"), ("number", "5\u3000"), ("number", "+5"),
    ("number", ".5"), ("number", "5."), ("number", "5.e3"), ("number", "00012"), ("number", "1e0001"),
    ("number", "0"), ("number", 0), ("number", "-0"), ("number", "-0.0"), ("number", -0.0), ("number", "-0.01"),
    ("number", -1), ("number", "1_000"), ("number", "\uff11\uff12\uff13"), ("number", "\u0661\u0662\u0663"),
    ("number", "1,000"), ("number", "0x10"), ("number", "1d5"), ("number", "--5"), ("number", "abc"),
    ("number", "inf"), ("number", "-inf"), ("number", "+Infinity"), ("number", "INF"), ("number", "iNfInItY"),
    ("number", "1e400"), ("number", "-1e400"), ("number", 1e308), ("number", 1.7976931348623157e308),
    ("number", "1.7976931348623159e308"), ("number", 5e-324), ("number", "4.9e-324"), ("number", "2e-400"),
    ("number", 2**53 - 1), ("number", 2**53 + 1), ("number", "9007199254740993"), ("number", -(2**53) - 1),
    ("number", 2**64), ("number", 10**30), ("number", "1" + "0" * 40), ("number", "0.1234567890123456789"),
    ("number", "+0"), ("number", "1" + "0" * 400), ("number", "1" + "0" * 5000), ("number", "-18446744073709551617"),
    ("number", "NaN"), ("number", "nan"), ("number", "NAN"), ("number", "N/A"), ("number", ""), ("number", "   "),
    ("number", True), ("number", False), ("number", "true"), ("number", None), ("number", "5\x00"),
]
CASES = [(field, value) for kind, value in CATALOGUE for field in FIELDS[kind]]
# Refused values that a JSON schema cannot refuse: the fields' descriptions say these rules in words.
SCHEMA_CANNOT_SAY = {
    ("importer_id", "\u200b"),  # blank once invisible format characters are dropped
    ("importer_id", "\ufdfa" * 6), ("office_id", "\ufdfa" * 6),  # over the cap once NFKC expands each to 18
    # after today, within this year (the schema's years end with this one; days it cannot tell from today)
    *([("declaration_date", LATER)] if LATER[:4] == str(dt.date.today().year) else []),
}


def canonical_frame(items: list[Declaration]) -> pd.DataFrame:
    """Validated declarations as the typed frame ingest's row checks leave (the dtypes of `check_rows`)."""
    frame = pd.DataFrame([i.model_dump() for i in items])
    types = field_types("declarations")
    return frame.astype({c: CANONICAL_DTYPES[types[c]] for c in frame.columns})


def _ingest(record: dict) -> tuple[set[str], object]:
    """Ingest's verdict on the record's cells: the reason codes of its failures, and the typed row."""
    mapping = ColumnMapping()
    checked = check_rows(records_frame([record], mapping), "declarations", mapping)
    codes = set(checked.failures["code"]) if checked.failures is not None and len(checked.failures) else set()
    return codes, checked.valid


def _api(record: dict) -> tuple[set[str], pd.DataFrame]:
    try:
        items = read_canonical([record], as_list=False)
    except HTTPException as exc:
        return {e["type"] for e in exc.detail}, pd.DataFrame()
    return set(), canonical_frame(items)


def _same(a: object, b: object) -> bool:
    if pd.isna(a) or pd.isna(b):
        return pd.isna(a) and pd.isna(b)
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)  # -0.0 stays -0.0 both ways
    return a == b


@pytest.mark.parametrize(("field", "value"), CASES, ids=[f"{f}={v!r}"[:60] for f, v in CASES])
def test_the_api_and_ingest_accept_refuse_and_type_each_value_alike(field, value):
    record = {**BASE, field: value}
    ingest_codes, ingest_rows = _ingest(record)
    api_codes, api_rows = _api(record)
    assert api_codes == ingest_codes, (value, api_codes, ingest_codes)
    if not ingest_codes:
        assert len(ingest_rows) == len(api_rows) == 1
        assert _same(ingest_rows[field].iloc[0], api_rows[field].iloc[0]), \
            (value, ingest_rows[field].iloc[0], api_rows[field].iloc[0])
        assert str(ingest_rows[field].dtype) == str(api_rows[field].dtype)


def test_the_schema_is_never_looser_than_the_reading():
    """What the OpenAPI schema accepts, the API accepts (schemathesis' "schema looser than validator"): every
    catalogue value the API refuses fails the schema too, but for the few rules a JSON schema cannot state, which
    the fields' descriptions state in words."""
    from jsonschema import Draft202012Validator, FormatChecker

    schema = Draft202012Validator(Declaration.model_json_schema(), format_checker=FormatChecker())
    looser = {(field, value) for field, value in CASES
              if _api({**BASE, field: value})[0] and schema.is_valid({**BASE, field: value})}
    assert looser == SCHEMA_CANNOT_SAY
