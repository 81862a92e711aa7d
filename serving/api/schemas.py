"""What the API reads and answers, as pydantic models: the request (`Declaration`, derived from the declarations
contract), the score answer (`ScoreOut`) and the probes' answers (`HealthOut`, `ReadyOut`).

Each request field is read by its features/intake/cell.py reader, chosen by the field's contract type and checks,
and documented by the JSON schema that states what that reader enforces (HS_SCHEMA, COUNTRY_SCHEMA, AMOUNT_SCHEMA,
DATE_SCHEMA, `text_schema`).
"""
from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable, Collection
from functools import partial
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, WithJsonSchema, create_model
from pydantic_core import PydanticCustomError

from features.contract import (
    EARLIEST_STORABLE_DATE,
    HS_CHAPTERS,
    ISO_COUNTRIES,
    LABEL_FIELDS,
    MAX_ID_LENGTH,
    MAX_TEXT_LENGTH,
    REASONS,
    field_types,
    is_id_field,
    required_fields,
)
from features.intake.cell import (
    CellError,
    fields_checked_by,
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

# Text fields with a reader of their own: the contract checks them as HS codes or as country codes.
HS_FIELDS = frozenset(fields_checked_by("declarations", "invalid_hs_code"))
COUNTRY_FIELDS = frozenset(fields_checked_by("declarations", "invalid_country_code"))
DECLARATION_DOC = """One goods item in canonical fields.

Each field is read by features/intake/cell.py as ingest reads the same value in a file (`check_rows`): the same
normal form, the same parsing, and every rule of the declarations contract (features/contract.py) that applies to
these fields. So a declaration it accepts goes straight to the scorer, typed as ingest would type it, and one it
refuses is refused with ingest's reason codes as error types: the API does not run the pandera checks per request
(tests/unit/test_cell.py and tests/integration/test_api.py prove the two agree).
"""


def _annotations(reader: Callable[[object], object], schema: dict, required: bool) -> tuple:
    """A field's annotations: its reader, and its schema (null allowed when optional)."""
    if not required:
        schema = {"anyOf": [{k: v for k, v in schema.items() if k != "description"}, {"type": "null"}],
                  "description": schema["description"]}
    return _read_with(reader, required), WithJsonSchema(schema)


def _reading(field: str, kind: str, required: bool) -> tuple[type, tuple]:
    """A request field's Python type and annotations, by its contract type (and, for text, the contract's check)."""
    if kind == "text" and field in HS_FIELDS:
        return str, _annotations(read_hs_code, HS_SCHEMA, required)
    if kind == "text" and field in COUNTRY_FIELDS:
        return str, _annotations(partial(read_country, field=field), COUNTRY_SCHEMA, required)
    if kind == "text":
        cap = MAX_ID_LENGTH if is_id_field(field) else MAX_TEXT_LENGTH
        return str, _annotations(partial(read_text, field=field), text_schema(cap, required), required)
    if kind == "number":
        return float, _annotations(read_amount, AMOUNT_SCHEMA, required)
    if kind == "date":
        return dt.date, _annotations(read_date, DATE_SCHEMA, required)
    raise ValueError(f"no API reader for {field} of type {kind}")


def declaration_fields() -> dict[str, str]:
    """The declarations contract's fields that a request carries (its own, not the labels), with their types."""
    return {f: kind for f, kind in field_types("declarations").items() if f not in LABEL_FIELDS}


def declaration_model(fields: dict[str, str], required: Collection[str]) -> type[BaseModel]:
    """The request model of these fields (name → contract type), in their order: each read by its reader and
    documented by its schema, required ones first-class, optional ones None by default, anything else refused."""
    definitions = {}
    for name, kind in fields.items():
        needed = name in required
        python, annotations = _reading(name, kind, needed)
        definitions[name] = (Annotated[python, *annotations], ...) if needed else \
            (Annotated[python | None, *annotations], None)
    return create_model("Declaration", __config__=ConfigDict(extra="forbid"), __doc__=DECLARATION_DOC,
                        **definitions)


Declaration = declaration_model(declaration_fields(), required_fields("declarations"))
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


class HealthOut(BaseModel):
    """/healthz: the process answers."""

    status: Literal["ok"]


class ReadyOut(BaseModel):
    """/readyz: whether the service is ready; the details only for a caller with the key (or on a keyless
    service)."""

    ready: bool = Field(description="a champion is loaded and a warehouse snapshot is readable")
    model_version: str | None = Field(None, description="the champion's registry version")
    registry: Literal["ok", "unreachable"] | None = Field(None, description="whether the registry answers")
    warehouse: Literal["ok", "stale snapshot", "unavailable"] | None = Field(
        None, description="ok, or a stale snapshot kept while another process writes, or none yet")
    thresholds_from: str | None = Field(None, description="the scoring batch the real-time thresholds come from")
    thresholds_source: dict | None = Field(None, description="where the thresholds came from: a batch or the recent "
                                                             "declarations, and its rows")
    layouts: list[Literal["canonical", "source"]] | None = Field(None, description="the request layouts read")
    decision_log: str | None = Field(None, description="where answers are made durable (a journal folder or a "
                                                       "PostgreSQL database), or off")
    decision_log_error: str | None = Field(None, description="the log's last failure (a commit, or the copy to the "
                                                             "warehouse), until one succeeds")
