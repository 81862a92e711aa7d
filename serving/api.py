"""The real-time scoring API (HTTP only): the batch scorer, one declaration (or a short list) per request.

Two request layouts:
- canonical fields (contract §4), always: read by the `Declaration` model as ingest reads the same cells
  (features/intake/cell.py: the same parsing, normal form, rules and reason codes), then scored;
- with a column mapping (`aduana serve --mapping M.yaml`), also the mapping's source layout (its column names,
  units and codes): records go through features/intake (`read_checked`), the same mapping and row checks as ingest and batch
  scoring (`aduana score --mapping`), so a declaration gets the same score and lane both ways and the mapping's
  extras (xcat_/xnum_) reach the model.
In either layout, keys and text values holding what no text field may hold (NUL, control characters, unpaired
surrogates) are refused first, by name (422 `invalid_text`). Either way each declaration is scored on the
pandas-free one-row path (features/row.py), as if it came alone: an answer does not depend on what else the
request holds.

Lanes in real time come from thresholds (serving/selection.py `Thresholds`) that serving/realtime.py learns
from the latest scoring batch; every answer is appended to the decision log (serving/realtime.py `DecisionLog`).

The app also serves the analysts' page (`GET /ui`, serving/ui.py) behind the same key, and documents `/v1/score`
with request examples drawn from the built-in simulator (`request_examples`).

What a request may cost is bounded before any per-item work: the body (size, and time to arrive: `BodyGuard`),
the request head (size, 431, and time to arrive: `SlowClientGuard`), then the JSON's shape (an object, or a list of at most
`max_items` objects); parsing, validation and scoring run in worker threads, never on the event loop, so
/healthz answers while the heaviest request is served. Error lists are capped at MAX_ERRORS.

Every answer carries security headers (`SecurityHeaders`: nosniff, a Content-Security-Policy, no framing, no
referrer, no-store). /readyz says only whether the service is ready, unless the caller gives the key.
"""
from __future__ import annotations

import asyncio
import base64
import copy
import datetime as dt
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import math
import re
import sys
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Annotated, Literal

import anyio
import h11
import pandas as pd
import uvicorn
from fastapi import FastAPI, HTTPException, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError
from uvicorn.protocols.http.h11_impl import H11Protocol

from features.contract import (
    CANONICAL_DTYPES,
    EARLIEST_STORABLE_DATE,
    HS_CHAPTERS,
    ISO_COUNTRIES,
    MAX_ID_LENGTH,
    MAX_TEXT_LENGTH,
    REASONS,
    field_types,
    is_id_field,
    required_fields,
)
from features.errors import UserError
from features.intake.cell import CellError, read_amount, read_country, read_date, read_hs_code, read_text
from features.intake.checked import read_checked
from features.intake.mapping import ColumnMapping, describe_unit
from features.intake.reader import NULL_MARKERS
from features.intake.records import non_scalar_values, records_frame, source_columns
from features.intake.text import invalid_text
from serving import ui
from serving.keys import ServiceKey
from serving.realtime import DecisionLog, ServiceState
from serving.scorer import WAREHOUSE_ERRORS, Scorer

MAX_BODY_BYTES = 1_000_000
BODY_TIMEOUT_S = 10.0  # the whole body must arrive within this (a 1 MB body: 100 KB/s), else 408
HEADER_TIMEOUT_S = 10.0  # a connection's request line and headers must arrive within this, else it is closed
KEEP_ALIVE_S = 5  # an idle kept-alive connection is closed after this
MAX_HEADER_BYTES = 16_384  # request line and headers together, else 431 (SlowClientGuard)
MAX_ERRORS = 20  # validation errors listed in a 422 (error_count says how many there were)
MAX_FIELDS = 200  # keys in one record (or twice a mapping's columns): more is no declaration, and each costs
SCORING_THREADS = 4  # requests scored at once; more wait their turn without holding a thread
RETRY_AFTER_S = 5


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


def _text_schema(cap: int, required: bool) -> dict:
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
    return _field(partial(read_text, field=field), _text_schema(cap, required), required)


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


def canonical_frame(items: list[Declaration]) -> pd.DataFrame:
    """Validated declarations as the typed frame the scorer takes (the dtypes check_rows leaves)."""
    frame = pd.DataFrame([i.model_dump() for i in items])
    types = field_types("declarations")
    return frame.astype({c: CANONICAL_DTYPES[types[c]] for c in frame.columns})


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


_ANSWER = TypeAdapter(ScoreOut)
_ANSWERS = TypeAdapter(list[ScoreOut])


class BodyGuard:
    """Read each request's whole body before the app sees it: 413 past `max_bytes` (declared by Content-Length
    or streamed in chunks), 408 when it has not all arrived within `timeout_s`. Both close the connection.

    It first holds the request's head to MAX_HEADER_BYTES (431), as the server reconstructs it: SlowClientGuard
    counts the bytes of a head that arrives on its own, but a head pipelined behind another request is parsed
    from the server's buffer without passing through that count.

    Reading it here, not inside the app, is what makes a chunked body over the cap a 413: FastAPI answers 400 to
    any error raised while it reads a body."""

    def __init__(self, app, max_bytes: int, timeout_s: float):  # noqa: ANN001 - ASGI app
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001 - ASGI callables
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if head_size(scope) > MAX_HEADER_BYTES:
            return await _refuse(send, 431, f"request line and headers over {MAX_HEADER_BYTES} bytes")
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await _refuse(send, 413, f"request body over {self.max_bytes} bytes")
        chunks, size = [], 0
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        try:
            while True:
                left = deadline - asyncio.get_running_loop().time()
                message = await asyncio.wait_for(receive(), timeout=max(left, 0))
                if message["type"] == "http.disconnect":
                    return None  # the client went away: nobody to answer
                size += len(message.get("body", b""))
                if size > self.max_bytes:
                    return await _refuse(send, 413, f"request body over {self.max_bytes} bytes")
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
        except TimeoutError:
            return await _refuse(send, 408, f"request body not received within {self.timeout_s:g} s")
        body, replayed = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:  # after the body: disconnect notices, as the server sends them
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


def head_size(scope: dict) -> int:
    """The bytes of a request's line and headers as sent on HTTP/1.1 ("GET /path?query HTTP/1.1", each header
    line with its ": " and CRLF, and the blank line)."""
    query = scope.get("query_string") or b""
    line = len(scope["method"]) + len(scope.get("raw_path") or scope["path"].encode()) + (len(query) + 1 if query else 0)
    return line + 12 + sum(len(k) + len(v) + 4 for k, v in scope.get("headers") or []) + 2


async def _refuse(send, status: int, detail: str) -> None:  # noqa: ANN001
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


# Every answer's security headers. A page that runs scripts or styles (/docs, /redoc, /ui) sends its own
# Content-Security-Policy, which `SecurityHeaders` keeps; everything else is JSON, which needs no source at all.
JSON_CSP = "default-src 'none'; frame-ancestors 'none'"
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": JSON_CSP,
                    "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}
NO_STORE = {"Cache-Control": "no-store"}  # every answer but the docs' static files: scores and states go stale


class SecurityHeaders:
    """Add SECURITY_HEADERS (and NO_STORE) to every answer that lacks them, whoever writes it: routes, error
    handlers, BodyGuard's 413/408. A pure ASGI middleware, so streamed and early answers pass through unchanged
    otherwise. An unhandled error is answered 500 here, before Starlette's own error middleware (which sits
    outside every other middleware) could answer it without the headers; the error is then raised on, to be
    logged as before."""

    def __init__(self, app):  # noqa: ANN001 - ASGI app
        self.app = app

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001 - ASGI callables
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        static = scope["path"].startswith(DOCS_ASSETS + "/")
        wanted = [(k.lower().encode(), v.encode()) for k, v in {**SECURITY_HEADERS, **({} if static else NO_STORE)}.items()]
        started = False

        async def send_secured(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                message = {**message, "headers": headers + [(k, v) for k, v in wanted if k not in present]}
            await send(message)

        try:
            await self.app(scope, receive, send_secured)
        except Exception:
            if not started:
                await _refuse(send_secured, 500, "internal server error")
            raise


def _raw_answer(status: str, detail: str) -> bytes:
    """An answer written by the protocol itself, before any request reached the app: closed, and secured."""
    body = json.dumps({"detail": detail}).encode()
    headers = {"content-type": "application/json", "content-length": str(len(body)), "connection": "close",
               **SECURITY_HEADERS, **NO_STORE}
    return (f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode() + body


HEAD_END = re.compile(rb"\n\r?\n")  # the blank line that ends a request's head (h11 takes a bare LF too)


class SlowClientGuard(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's line and headers: a client that opens a
    connection and sends nothing, or its headers a byte at a time, is cut off after `header_timeout` seconds
    (uvicorn itself only times out idle kept-alive connections, and resets that timer on every byte).

    It also holds the request head (line and headers) to `max_header_bytes`, answering 431 past it: h11's own cap
    applies only while a head is incomplete, so a larger head that arrives in one read would pass."""

    header_timeout = HEADER_TIMEOUT_S
    max_header_bytes = MAX_HEADER_BYTES
    _header_timer: asyncio.TimerHandle | None = None
    _head_bytes = 0  # bytes of the awaited request head received so far
    _head_tail = b""  # its last bytes, where the blank line that ends it may have begun

    def connection_made(self, transport) -> None:  # noqa: ANN001
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and self._head_too_large(data):  # awaiting a request's head
            self._unset_keepalive_if_required()
            self.transport.write(_raw_answer("431 Request Header Fields Too Large",
                                             f"request line and headers over {self.max_header_bytes} bytes"))
            self.transport.close()
            return
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle:  # a request's headers are complete
            self._disarm()

    def _head_too_large(self, data: bytes) -> bool:
        """Count the awaited head's bytes in `data` (up to its end, when it ends here) against the cap."""
        seen = self._head_tail + data
        end = HEAD_END.search(seen)
        size = self._head_bytes + (len(data) if end is None else end.end() - len(self._head_tail))
        if end is None:
            self._head_bytes, self._head_tail = size, seen[-2:]
        else:
            self._head_bytes, self._head_tail = 0, b""
        return size > self.max_header_bytes

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request h11 cannot parse, with the same security headers as every other answer."""
        self._unset_keepalive_if_required()
        self.transport.write(_raw_answer("400 Bad Request", msg))
        self.transport.close()

    def on_response_complete(self) -> None:
        cycle = self.cycle
        super().on_response_complete()
        if self.cycle is cycle and not self.transport.is_closing():  # waiting for the next request's headers
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
            return
        self._unset_keepalive_if_required()
        self.transport.write(_raw_answer("408 Request Timeout", f"request headers not received within "
                                                                f"{self.header_timeout:g} s"))
        self.transport.close()


def server_config(app: FastAPI, host: str, port: int, header_timeout_s: float = HEADER_TIMEOUT_S,
                  keep_alive_s: int = KEEP_ALIVE_S, log_level: str = "warning") -> uvicorn.Config:
    """How `aduana serve` runs the app: slow or idle clients timed out, headers capped, a bounded shutdown."""
    protocol = type("SlowClientGuard", (SlowClientGuard,), {"header_timeout": header_timeout_s})
    return uvicorn.Config(app, host=host, port=port, http=protocol, timeout_keep_alive=keep_alive_s,
                          h11_max_incomplete_event_size=MAX_HEADER_BYTES, timeout_graceful_shutdown=10,
                          log_level=log_level)


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

    def errors(self, failures: pd.DataFrame, rejected: pd.DataFrame, single: bool) -> list[dict]:
        """Field-level 422 details: loc names the record (in a list) and the column as the client sent it."""
        where = (lambda row: ["body"]) if single else (lambda row: ["body", int(row)])
        if {"row", "column", "code", "message"} <= set(failures.columns) and len(failures):
            return [{"loc": [*where(f.row), self.names.get(f.column, f.column)], "msg": str(f.message),
                     "type": str(f.code), "field": str(f.column)} for f in failures.itertuples()]
        return [{"loc": where(r.row_number - 1), "msg": str(r.message), "type": str(r.reason)}
                for r in rejected.itertuples()]


def _capped(errors: list[dict]) -> dict:
    """A 422 body: the first MAX_ERRORS errors (location, message, type) and how many there were."""
    keep = ("loc", "msg", "type", "field")
    listed = [{k: list(e[k]) if k == "loc" else e[k] for k in keep if k in e} for e in errors[:MAX_ERRORS]]
    return {"detail": listed, "error_count": len(errors)}


def _unprocessable(errors: list[dict]) -> HTTPException:
    return HTTPException(status_code=422, detail=errors)


class _TooMany(Exception):
    pass


class _DuplicateKey(Exception):
    pass


def _records(body: bytes, max_items: int, max_fields: int = MAX_FIELDS) -> tuple[list, bool]:
    """The body as (records, sent as a list), its shape checked before any per-item work: JSON, an object or a
    list of 1 to `max_items` objects, each with at most `max_fields` keys. Parsing stops at the first object past
    `max_items` (declarations are flat objects), so 100,000 empty objects cost no more than 101. A key given twice
    in one object is refused: JSON parsers disagree on which value wins, so a proxy and this service could read two
    different declarations from one body."""
    objects = 0

    def count(pairs: list[tuple[str, object]]) -> dict:
        nonlocal objects
        objects += 1
        if objects > max_items:
            raise _TooMany
        obj = dict(pairs)
        if len(obj) < len(pairs):
            seen: set[str] = set()
            raise _DuplicateKey(next(k for k, _ in pairs if k in seen or seen.add(k)))
        return obj

    try:
        payload = json.loads(body, object_pairs_hook=count)
    except _TooMany:
        raise HTTPException(status_code=413, detail=f"at most {max_items} declarations (JSON objects) per request") \
            from None
    except _DuplicateKey as exc:
        raise _unprocessable([{"loc": ["body"], "msg": f"the key {ascii(exc.args[0])} appears twice in one object",
                               "type": "duplicate_key"}]) from None
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, nested past the parser's depth, huge ints
        msg = str(exc).splitlines()[0][:200] if isinstance(exc, ValueError) else "nested too deeply"
        raise _unprocessable([{"loc": ["body"], "msg": f"the body is not JSON: {msg}", "type": "json_invalid"}]) \
            from None
    if isinstance(payload, dict):
        records, as_list = [payload], False
    elif isinstance(payload, list):
        if len(payload) > max_items:
            raise HTTPException(status_code=413, detail=f"at most {max_items} declarations per request")
        if not payload:
            raise _unprocessable([{"loc": ["body"], "msg": "empty list", "type": "empty"}])
        records, as_list = payload, True
    else:
        raise _unprocessable([{"loc": ["body"], "msg": "a declaration is a JSON object, or a list of them",
                               "type": "not_an_object"}])
    where = (lambda i: ["body", i]) if as_list else (lambda i: ["body"])
    wrong = [{"loc": where(i), "msg": "a declaration is a JSON object", "type": "not_an_object"}
             for i, r in enumerate(records) if not isinstance(r, dict)]
    wrong += [{"loc": where(i), "msg": f"more than {max_fields} fields", "type": "too_many_fields"}
              for i, r in enumerate(records) if isinstance(r, dict) and len(r) > max_fields]
    if wrong:
        raise _unprocessable(wrong)
    return records, as_list


def _printable(text: str) -> str:
    """Text safe to echo in an answer: an unpaired surrogate (which UTF-8 cannot encode) as its escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _invalid_text(records: list[dict], as_list: bool) -> list[dict]:
    """422 details for keys and string values holding what no text field may hold (features/intake/text.py
    `invalid_text`: NUL, control characters, unpaired surrogates), in either layout. Checked before anything else
    reads the records: a pandas text column cannot hold a surrogate, and an error that echoed one could not be
    encoded."""
    errors = []
    for i, record in enumerate(records):
        where = ["body", i] if as_list else ["body"]
        for key, value in record.items():
            if (why := invalid_text(key)) is not None:
                errors.append({"loc": [*where, _printable(key)], "msg": f"the field name {why}", "type": "invalid_text"})
            elif isinstance(value, str) and (why := invalid_text(value)) is not None:
                errors.append({"loc": [*where, key], "msg": f"the text {why}", "type": "invalid_text"})
    return errors


def read_canonical(records: list[dict], as_list: bool) -> list[Declaration]:
    """The canonical layout's reading of parsed records: text no field may hold refused first, then `Declaration`
    (an HTTPException 422 with field-level details when anything is refused)."""
    if errors := _invalid_text(records, as_list):
        raise _unprocessable(errors)
    return _canonical_items(records, as_list)


def _canonical_items(records: list[dict], as_list: bool) -> list[Declaration]:
    """Canonical records validated (errors located under 'body', and the record's position in a list)."""
    try:
        if as_list:
            return _DECLARATIONS.validate_python(records)
        return [Declaration.model_validate(records[0])]
    except ValidationError as exc:
        raise _unprocessable([{**e, "loc": ["body", *e["loc"]]} for e in exc.errors(include_url=False,
                                                                                       include_input=False)]) from None


_DECLARATIONS = TypeAdapter(list[Declaration])
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,100}")


def _request_id(given: str | None) -> str:
    """The client's X-Request-ID when it is a plain token, else a new one."""
    return given if given is not None and REQUEST_ID.fullmatch(given) else f"rt-{uuid.uuid4().hex}"


LAYOUT_HELP = "auto: told apart by the column names; canonical: contract fields; source: the mapping's layout"
CANONICAL_LAYOUT = ("Requests are declarations in canonical fields (one goods item per object; contract §4): "
                    "`declaration_id`, `declaration_date`, `importer_id`, `hs_code`, `origin_country`, "
                    "`declared_value` required, the other contract fields optional, nothing else.")
SCORE_SUMMARY = "Score declarations: lane, risk and reasons for each"
ERROR_RESPONSES = {
    408: {"description": "The body did not arrive in time."},
    413: {"description": "The body is over the size cap, or the list over the declarations cap."},
    422: {"description": f"Not declarations: field-level errors (the first {MAX_ERRORS}) and `error_count`."},
    503: {"description": "No champion model or warehouse snapshot yet, or the decision log is full: retry after "
                         "`Retry-After` seconds."},
}


EXAMPLE_SEED = 7  # the simulator's own default seed (`aduana generate`)
EXAMPLE_ROWS = 100  # declarations simulated for the examples (the simulator's least)
EXAMPLE_LIST = 3


def _plain(value: object) -> object:
    """A simulated cell as JSON has it: a date as ISO text, a missing value as null, numpy numbers as Python's."""
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat()
    return value.item() if hasattr(value, "item") else value


@functools.cache
def request_examples() -> dict:
    """The OpenAPI request examples of POST /v1/score: declarations of a small seeded simulation (features/simulator)
    in canonical fields, each one accepted by `Declaration` (computed once per process)."""
    from features.simulator import simulate

    simulated = simulate(EXAMPLE_ROWS, seed=EXAMPLE_SEED).declarations
    fields = [f for f in Declaration.model_fields if f in simulated.columns]
    examples = []
    for record in simulated[fields].to_dict("records"):
        try:
            item = Declaration.model_validate({k: _plain(v) for k, v in record.items()})
        except ValidationError:  # the simulator writes a few bad rows on purpose
            continue
        examples.append(item.model_dump(mode="json", exclude_none=True))
        if len(examples) == EXAMPLE_LIST:
            break
    if not examples:
        return {}
    where = f"from the built-in simulator (seed {EXAMPLE_SEED})"
    return {"one": {"summary": "One declaration", "description": f"A goods item in canonical fields, {where}.",
                    "value": examples[0]},
            "list": {"summary": f"A list of {len(examples)} declarations",
                     "description": f"Goods items in canonical fields, {where}; the answer is a list in the same order.",
                     "value": examples}}


DOCS_ASSETS = "/docs-assets"
# The docs pages' own Content-Security-Policy: their scripts and styles from this server only (Swagger UI's one
# inline script by its hash), the OpenAPI document and "Try it out" requests to this server, and Redoc's search
# worker, which it starts from a blob.
PAGE_CSP = ("default-src 'none'; script-src 'self'{scripts}; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "font-src 'self' data:; connect-src 'self'; {extra}frame-ancestors 'none'; base-uri 'none'; "
            "form-action 'none'")
REDOC_CSP = PAGE_CSP.format(scripts="", extra="worker-src blob:; ")
INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL)  # every script without src


def docs_csp(html: bytes) -> str:
    """Swagger UI's policy: its inline scripts allowed by their SHA-256 and nothing else inline."""
    hashes = "".join(f" 'sha256-{base64.b64encode(hashlib.sha256(m).digest()).decode()}'"
                     for m in INLINE_SCRIPT.findall(html))
    return PAGE_CSP.format(scripts=hashes, extra="")


def docs_assets() -> Path:
    """Swagger UI and ReDoc as files, from the fastapi-offline package (its static folder only)."""
    return Path(importlib.util.find_spec("fastapi_offline").origin).parent / "static"


def create_app(scorer: Scorer, max_items: int = 100, max_body_bytes: int = MAX_BODY_BYTES,
               api_key: str | None = None, mapping: ColumnMapping | None = None, decision_log: bool = True,
               body_timeout_s: float = BODY_TIMEOUT_S, secure_cookie: bool = False) -> FastAPI:
    """The FastAPI app around a scorer (injected, so tests can pass one with a fixed model). With a `mapping`,
    /v1/score also takes records in the mapping's source layout. `decision_log=False` leaves real-time answers
    out of the decision log (benchmarks only: the contract logs every answer). `secure_cookie` marks the analysts'
    page's cookie Secure even on plain HTTP requests (a TLS proxy the server does not see); a request that came
    over HTTPS gets a Secure cookie either way."""
    state = ServiceState(scorer)
    key = ServiceKey(api_key)
    source = SourceLayout(mapping) if mapping is not None else None
    answers_log = DecisionLog(scorer.warehouse) if decision_log else None
    max_fields = max(MAX_FIELDS, 2 * len(source.columns)) if source is not None else MAX_FIELDS
    description = ("Lanes (red/yellow/green), risk and reasons for import declarations. "
                   "Real-time lanes apply thresholds learned from the latest scoring batch; every answer is "
                   "appended to the decision log.\n\n" + CANONICAL_LAYOUT)
    if source is not None:
        description += "\n\n" + source.describe()

    @asynccontextmanager
    async def lifespan(_: FastAPI):  # noqa: ANN202
        if answers_log is not None:
            answers_log.start()
        try:
            yield
        finally:
            if answers_log is not None:
                await anyio.to_thread.run_sync(answers_log.close)  # every buffered answer written (or spilled)

    app = FastAPI(title="Aduana scoring API", version=importlib.metadata.version("aduana"), description=description,
                  lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(BodyGuard, max_bytes=max_body_bytes, timeout_s=body_timeout_s)
    app.add_middleware(SecurityHeaders)  # outermost: BodyGuard's own answers are secured too
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(docs_assets())), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        """Swagger UI from local files: customs networks are often offline, and FastAPI's default loads a CDN."""
        page = get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title}: docs",
                                   swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png")
        page.headers["Content-Security-Policy"] = docs_csp(page.body)
        return page

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        page = get_redoc_html(openapi_url=app.openapi_url, title=f"{app.title}: reference",
                              redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png", with_google_fonts=False)
        page.headers["Content-Security-Policy"] = REDOC_CSP
        return page

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content=_capped(list(exc.errors())))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        content = _capped(exc.detail) if exc.status_code == 422 and isinstance(exc.detail, list) else \
            {"detail": exc.detail}
        return JSONResponse(status_code=exc.status_code, content=content, headers=exc.headers)

    security = []
    if key.required:
        key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                                  description="The service's key (ADUANA_API_KEY): required on /v1/score.")

        def require_key(given: str | None = Security(key_header)) -> None:  # noqa: B008 - FastAPI's idiom
            if not key.matches(given):
                raise HTTPException(status_code=401, detail="missing or wrong X-API-Key")

        security = [Security(require_key)]
    # GET /ui: the analysts' page, behind the same key
    app.state.ui = ui.install(app, scorer, key, secure_cookie=secure_cookie)

    @app.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict:  # on the event loop: never waits behind scoring threads
        return {"status": "ok"}

    def readiness_details() -> dict:
        """What /readyz tells a caller with the key (or anyone, on a keyless service): the service's internals."""
        return {"model_version": scorer.version,
                "registry": "unreachable" if scorer.registry_error else "ok",
                "warehouse": "ok" if not (state.warehouse_error or scorer.snapshot_error) else
                ("stale snapshot" if scorer.has_snapshot else "unavailable"),
                "thresholds_from": state.thresholds.batch_id if state.thresholds else None,
                "thresholds_source": state.thresholds_source,  # a batch or the recent declarations, and its rows
                "layouts": ["canonical", "source"] if source is not None else ["canonical"],
                "decisions_pending": answers_log.pending if answers_log is not None else 0}

    @app.get("/readyz", summary="Readiness: a champion is loaded and the warehouse snapshot is readable",
             description="`{\"ready\": true}`, or 503 with `Retry-After` when not ready. With the service's key as "
                         "`X-API-Key` (or on a service without a key) it also says which model version, thresholds' "
                         "batch, layouts, registry and warehouse state it serves with, and the decisions pending.")
    def readyz(request: Request) -> JSONResponse:
        state.refresh(wait=False)
        ready = state.ready
        body = {"ready": ready}
        if key.matches(request.headers.get("x-api-key")):
            body.update(readiness_details())
        headers = None if ready else {"Retry-After": str(RETRY_AFTER_S)}
        return JSONResponse(status_code=200 if ready else 503, content=body, headers=headers)

    def unavailable(detail: str) -> HTTPException:
        return HTTPException(status_code=503, detail=detail, headers={"Retry-After": str(RETRY_AFTER_S)})

    def answer(declarations: pd.DataFrame | list[dict], as_list: bool, request_id: str) -> bytes:
        state.refresh()
        if not scorer.ready:
            raise unavailable("no champion model loaded yet")
        if not scorer.has_snapshot:
            raise unavailable("the warehouse cannot be read yet (another process is writing it)")
        if answers_log is not None and answers_log.full:
            raise unavailable("the decision log cannot be written (the warehouse is busy) and its buffer is full")
        thresholds = state.thresholds
        try:
            out = scorer.score_realtime(declarations, thresholds)
        except WAREHOUSE_ERRORS as exc:  # a snapshot refresh that failed before any snapshot existed
            raise unavailable("the warehouse cannot be read yet (another process is writing it)") from exc
        results = [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}
                   for r in out.to_dict("records")]
        checked = _ANSWERS.validate_python(results)  # the answers as documented, before they are logged
        if answers_log is not None:
            answers_log.record(results, request_id, state.policy_hash, thresholds.batch_id if thresholds else None)
        return _ANSWERS.dump_json(checked) if as_list else _ANSWER.dump_json(checked[0])

    def canonical(records: list[dict], as_list: bool, request_id: str) -> bytes:
        return answer([i.model_dump() for i in read_canonical(records, as_list)], as_list, request_id)

    def source_layout(records: list[dict], as_list: bool, request_id: str) -> bytes:
        if errors := _invalid_text(records, as_list):
            raise _unprocessable(errors)
        where = (lambda i: ["body"]) if not as_list else (lambda i: ["body", i])
        nested = non_scalar_values(records)
        if nested:
            raise _unprocessable([{"loc": [*where(i), k], "msg": "a value is a number, a string or null, as in a "
                                   "file cell", "type": "not_a_value"} for i, k in nested])
        try:
            taken = read_checked(records_frame(records, source.mapping), "declarations", source.mapping)
        except UserError as exc:  # e.g. unknown columns under `unknown_columns: error`
            raise _unprocessable([{"loc": ["body"], "msg": str(exc), "type": "mapping"}]) from exc
        if len(taken.rejected):
            raise _unprocessable(source.errors(taken.failures, taken.rejected, not as_list))
        return answer(taken.valid, as_list, request_id)

    def handle(body: bytes, layout: str, request_id: str) -> bytes:
        """Everything a scoring request costs, in a worker thread: parse, check, validate, score, log."""
        records, as_list = _records(body, max_items, max_fields)
        if source is not None and source.layout(records, layout) == "source":
            return source_layout(records, as_list, request_id)
        return canonical(records, as_list, request_id)

    limiters: dict[int, anyio.CapacityLimiter] = {}

    def limiter() -> anyio.CapacityLimiter:
        """The scoring threads' limiter, one per event loop (a TestClient may run several)."""
        loop = id(asyncio.get_running_loop())
        if loop not in limiters:
            limiters.clear()
            limiters[loop] = anyio.CapacityLimiter(SCORING_THREADS)
        return limiters[loop]

    async def respond(request: Request, layout: str) -> Response:
        request_id = _request_id(request.headers.get("x-request-id"))
        body = await request.body()  # already read, and bounded, by BodyGuard
        run: Callable[[], bytes] = partial(handle, body, layout, request_id)
        content = await anyio.to_thread.run_sync(run, limiter=limiter())
        return Response(content=content, media_type="application/json", headers={"X-Request-ID": request_id})

    canonical_schema = Declaration.model_json_schema()
    schemas = [canonical_schema, {"type": "array", "items": canonical_schema, "minItems": 1, "maxItems": max_items}]
    if source is not None:
        record = source.schema()
        schemas += [record, {"type": "array", "items": record, "minItems": 1, "maxItems": max_items}]
    route = {"dependencies": security, "response_model": ScoreOut | list[ScoreOut],
             "responses": {**ERROR_RESPONSES, **({401: {"description": "Missing or wrong X-API-Key."}}
                                                 if security else {})},
             "openapi_extra": {"requestBody": {"required": True,
                                               "content": {"application/json": {
                                                   "schema": {"anyOf": schemas},
                                                   "examples": copy.deepcopy(request_examples())}}}}}
    if source is None:
        @app.post("/v1/score", summary=SCORE_SUMMARY, description=CANONICAL_LAYOUT, **route)
        async def score(request: Request) -> Response:
            return await respond(request, "canonical")
    else:
        @app.post("/v1/score", summary=SCORE_SUMMARY, description=CANONICAL_LAYOUT + "\n\n" + source.describe(),
                  **route)
        async def score(
            request: Request,
            layout: Annotated[Literal["auto", "canonical", "source"], Query(description=LAYOUT_HELP)] = "auto",
        ) -> Response:
            return await respond(request, layout)

    app.state.service = state
    app.state.layout = source
    app.state.decision_log = answers_log
    return app
