"""What the API reads and answers, as pydantic models: the request (`Declaration`) and the score answer (`ScoreOut`).

Each request field is read by its features/intake/cell.py reader, and documented by the JSON schema that states
what that reader enforces (HS_SCHEMA, COUNTRY_SCHEMA, AMOUNT_SCHEMA,
DATE_SCHEMA, `text_schema`).
"""
from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable
from functools import partial
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, WithJsonSchema
from pydantic_core import PydanticCustomError

from features.contract import (
    EARLIEST_STORABLE_DATE,
    HS_CHAPTERS,
    ISO_COUNTRIES,
    MAX_ID_LENGTH,
    MAX_TEXT_LENGTH,
    REASONS,
    is_id_field,
)
from features.intake.cell import (
    CellError,
    read_amount,
    read_country,
    read_date,
    read_hs_code,
    read_text,
)
from features.intake.reader import NULL_MARKERS


def _read_with(reader: Callable[[object], object], required: bool) -> BeforeValidator:
    """A field read by its features/intake/cell.py reader, so it is accepted, refused and typed as ingest would;
    the error's type is ingest's reason code."""

    def read(value: object) -> object:
        try:
            out = reader(value)
        except CellError as exc:
            raise PydanticCustomError(exc.code, str(exc)) from None
        if out is None and required:
            raise PydanticCustomError("missing_required", REASONS["missing_required"])
        return out

    return BeforeValidator(read)


def digits_range(low: str, high: str) -> str:
    """A regex for the numbers low..high written with as many digits as they have ('01', '97' → 0[1-9]|[1-8][0-9]|
    9[0-7]; '1678', '2026' → the years from 1678 to 2026)."""
    if len(low) == 1:
        return f"[{low}-{high}]"
    if low[0] == high[0]:
        return f"{low[0]}({digits_range(low[1:], high[1:])})"
    rest = len(low) - 1
    parts = [f"{low[0]}({digits_range(low[1:], '9' * rest)})"]
    if int(high[0]) - int(low[0]) > 1:
        parts.append(f"[{int(low[0]) + 1}-{int(high[0]) - 1}][0-9]{{{rest}}}")
    parts.append(f"{high[0]}({digits_range('0' * rest, high[1:])})")
    return "|".join(parts)


# What the OpenAPI schema states of each field: what the readers enforce, as far as a JSON schema can say it. The
# readers also take what ingest reads in a file cell (numbers for text, '8703.23', ' jp ', 20240601), so the schema
# is the stricter of the two, never the looser (schemathesis' "schema looser than validator").
NO_CONTROLS = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*$"
TEXT_RULE = ("Read as ingest reads a file cell: invisible format characters dropped, NFKC, surrounding spaces "
             "stripped; no control characters (a NUL byte, U+0001-U+001F but tab and line breaks, U+007F-U+009F).")


def text_schema(cap: int, required: bool) -> dict:
    """A text field's schema: at most `cap` characters, no control characters, and not blank when required."""
    text = {"type": "string", "maxLength": cap, "pattern": NO_CONTROLS,
            "description": f"{TEXT_RULE} At most {cap} characters in that form." + ("" if required else " Blank is missing.")}
    if required:  # blank, or one of the reader's null markers, is missing
        return {**text, "minLength": 1, "allOf": [{"pattern": "\\S"}], "not": {"enum": NULL_MARKERS}}
    return text


HS_SCHEMA = {"type": "string", "pattern": f"^({digits_range(*HS_CHAPTERS)})[0-9]{{4}}([0-9]{{2}}){{0,2}}$",
             "examples": ["870323"],
             "description": f"6, 8 or 10 ASCII digits of a goods chapter ({HS_CHAPTERS[0]}-{HS_CHAPTERS[1]}); "
                            "dots, spaces and hyphens are dropped first (8703.23, 87-03-23)."}
COUNTRY_SCHEMA = {"type": "string", "enum": sorted(ISO_COUNTRIES) + sorted(c.lower() for c in ISO_COUNTRIES),
                  "examples": ["JP"],
                  "description": "ISO 3166-1 alpha-2 (ZZ, XX and XZ stand for unknown), in either case."}
AMOUNT_SCHEMA = {"type": "number", "minimum": 0, "maximum": sys.float_info.max,
                 "description": "A finite, non-negative number (no booleans; a numeric string is read as ingest "
                                "reads it, e.g. '1e5')."}
# Years from the first whole storable one to this one (the days of this year after today aside: a schema cannot
# say "today"); stricter than the readers, which take 1677-09-22 on and other ISO 8601 forms.
DATE_SCHEMA = {"type": "string", "format": "date", "examples": ["2024-06-01"],
               "pattern": f"^({digits_range(str(EARLIEST_STORABLE_DATE.year + 1), str(dt.date.today().year))})-",
               "description": f"A day in ISO 8601, from {EARLIEST_STORABLE_DATE.date()} and not after today (one day "
                              "of slack for time zones). Other ISO 8601 forms are read as ingest reads them: "
                              "20240601, and 2024-06-01T10:00:00+02:00 converted to UTC, then the day."}

def _field(reader: Callable[[object], object], schema: dict, required: bool) -> tuple:
    """A field's annotations: its reader, and its schema (null allowed when optional)."""
    if not required:
        schema = {"anyOf": [{k: v for k, v in schema.items() if k != "description"}, {"type": "null"}],
                  "description": schema["description"]}
    return _read_with(reader, required), WithJsonSchema(schema)


def _text(field: str, required: bool) -> tuple:
    cap = MAX_ID_LENGTH if is_id_field(field) else MAX_TEXT_LENGTH
    return _field(partial(read_text, field=field), text_schema(cap, required), required)


def _country(field: str, required: bool) -> tuple:
    return _field(partial(read_country, field=field), COUNTRY_SCHEMA, required)


class Declaration(BaseModel):
    """One goods item in canonical fields.

    Each field is read by features/intake/cell.py as ingest reads the same value in a file (`check_rows`): the same
    normal form, the same parsing, and every rule of the declarations contract (features/contract.py) that applies to
    these fields. So a declaration it accepts goes straight to the scorer, typed as ingest would type it, and one it
    refuses is refused with ingest's reason codes as error types: the API does not run the pandera checks per request
    (tests/unit/test_api_parity.py and tests/integration/test_api.py prove the two agree).
    """

    model_config = ConfigDict(extra="forbid")
    declaration_id: Annotated[str, *_text("declaration_id", True)]
    declaration_date: Annotated[dt.date, *_field(read_date, DATE_SCHEMA, True)]
    importer_id: Annotated[str, *_text("importer_id", True)]
    hs_code: Annotated[str, *_field(read_hs_code, HS_SCHEMA, True)]
    origin_country: Annotated[str, *_country("origin_country", True)]
    declared_value: Annotated[float, *_field(read_amount, AMOUNT_SCHEMA, True)]
    declarant_id: Annotated[str | None, *_text("declarant_id", False)] = None
    exporter_id: Annotated[str | None, *_text("exporter_id", False)] = None
    office_id: Annotated[str | None, *_text("office_id", False)] = None
    transport_mode: Annotated[str | None, *_text("transport_mode", False)] = None
    departure_country: Annotated[str | None, *_country("departure_country", False)] = None
    net_mass_kg: Annotated[float | None, *_field(read_amount, AMOUNT_SCHEMA, False)] = None
    quantity: Annotated[float | None, *_field(read_amount, AMOUNT_SCHEMA, False)] = None
    # a fraction, unbounded above as in the contract (a 754 % duty is 7.54)
    tax_rate: Annotated[float | None, *_field(read_amount, AMOUNT_SCHEMA, False)] = None
    duty_paid: Annotated[float | None, *_field(read_amount, AMOUNT_SCHEMA, False)] = None
    bill_of_lading: Annotated[str | None, *_text("bill_of_lading", False)] = None


DECLARATIONS = TypeAdapter(list[Declaration])


class ScoreOut(BaseModel):
    """One declaration's answer (the score output contract)."""

    declaration_id: str
    risk_score: float = Field(description="P(fraud) from customs-risk@champion, 0–1")
    expected_revenue: float | None = Field(description="risk × expected duty recovered if fraud; null without a "
                                                       "revenue model")
    lane: Literal["red", "yellow", "green"] = Field(description="red: physical inspection, yellow: documentary "
                                                                "check, green: release")
    selected_by: Literal["model", "exploration", "rule", "validation", ""] = Field(
        description="what put it in its lane; empty for a green release")
    reasons: str = Field(description="the top drivers of the score as sentences an officer can read, '; '-separated")
    model_version: str | None = Field(description="the registry version that scored it")
    reason_list: list[str] = Field(description="the same reasons as a list, strongest first (the exploration draw or "
                                               "a rule hit leads when there is one); `reasons` is them joined with "
                                               "'; ', and an item may itself hold '; ' (an id, a value)")


ANSWER = TypeAdapter(ScoreOut)
ANSWERS = TypeAdapter(list[ScoreOut])
