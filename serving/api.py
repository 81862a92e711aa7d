"""The real-time scoring API (HTTP only): the batch scorer, one declaration (or a short list) per request.

Two request layouts:
- canonical fields (contract §4), always: validated here by the `Declaration` model, which holds the
  contract's row rules, then scored (one declaration on the pandas-free path);
- with a column mapping (`aduana serve --mapping M.yaml`), also the mapping's source layout (its column names,
  units and codes): records go through serving/intake.py, the same mapping and row checks as ingest and batch
  scoring (`aduana score --mapping`), so a declaration gets the same score and lane both ways and the mapping's
  extras (xcat_/xnum_) reach the model.

Lanes in real time come from thresholds (serving/selection.py `Thresholds`) that serving/realtime.py learns
from the latest scoring batch.
"""
from __future__ import annotations

import datetime as dt
import math
import os
from typing import Annotated, Any, Literal

import pandas as pd
from fastapi import Body, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from features.data.contract import (
    CANONICAL_DTYPES,
    EARLIEST_DATE,
    HS_CODE_PATTERN,
    ISO_COUNTRIES,
    field_types,
    required_fields,
    today_limit,
)
from features.data.errors import DataError
from features.data.mapping import ColumnMapping, describe_unit
from serving.intake import non_scalar_values, records_frame, source_columns, take_in
from serving.realtime import ServiceState
from serving.scorer import Scorer

MAX_BODY_BYTES = 1_000_000

Amount = Annotated[float, Field(ge=0, allow_inf_nan=False)]


def _known_country(code: str) -> str:
    if code not in ISO_COUNTRIES:
        raise ValueError("the country is not an ISO 3166-1 alpha-2 code")
    return code


Country = Annotated[str, Field(pattern=r"^[A-Z]{2}$", examples=["JP"]), AfterValidator(_known_country)]
OPTIONAL_TEXT = {"declarant_id", "exporter_id", "office_id", "transport_mode", "departure_country", "bill_of_lading"}


class Declaration(BaseModel):
    """One goods item in canonical fields.

    This model holds every rule of the declarations contract (features/data/contract.py) that applies to these
    fields, so a declaration it accepts goes straight to the scorer: the API does not run the pandera checks
    again per request (tests/integration/test_api.py proves the two agree).
    """

    model_config = ConfigDict(extra="forbid")
    declaration_id: str = Field(min_length=1, max_length=100)
    declaration_date: dt.date
    importer_id: str = Field(min_length=1, max_length=100)
    hs_code: str = Field(pattern=HS_CODE_PATTERN, examples=["870323"])
    origin_country: Country
    declared_value: Amount
    declarant_id: str | None = Field(None, max_length=100)
    exporter_id: str | None = Field(None, max_length=100)
    office_id: str | None = Field(None, max_length=100)
    transport_mode: str | None = Field(None, max_length=50)
    departure_country: Country | None = None
    net_mass_kg: Amount | None = None
    quantity: Amount | None = None
    tax_rate: Annotated[float, Field(ge=0, le=5, allow_inf_nan=False)] | None = None
    duty_paid: Amount | None = None
    bill_of_lading: str | None = Field(None, max_length=100)

    @model_validator(mode="before")
    @classmethod
    def _as_ingest_reads_text(cls, data: object) -> object:
        """Text is stripped as ingest strips it (Python's idea of whitespace), and a blank optional is missing."""
        if not isinstance(data, dict):
            return data
        stripped = {k: v.strip() if isinstance(v, str) else v for k, v in data.items()}
        return {k: None if v == "" and k in OPTIONAL_TEXT else v for k, v in stripped.items()}

    @field_validator("declaration_date")
    @classmethod
    def _in_range(cls, value: dt.date) -> dt.date:
        if not EARLIEST_DATE.date() <= value <= today_limit().date():
            raise ValueError(f"the date is outside {EARLIEST_DATE.date()} – today")
        return value


def canonical_frame(items: list[Declaration]) -> pd.DataFrame:
    """Validated declarations as the typed frame the scorer takes (the dtypes check_rows leaves)."""
    frame = pd.DataFrame([i.model_dump() for i in items])
    types = field_types("declarations")
    return frame.astype({c: CANONICAL_DTYPES[types[c]] for c in frame.columns})


class ScoreOut(BaseModel):
    declaration_id: str
    risk_score: float
    expected_revenue: float | None
    lane: str
    selected_by: str
    reasons: str
    model_version: str | None


class BodyLimit:
    """Answer 413 to bodies over the limit, declared (Content-Length) or streamed."""

    def __init__(self, app, max_bytes: int):  # noqa: ANN001 - ASGI app
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001 - ASGI callables
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await _too_large(send, self.max_bytes)
        seen = 0

        async def counting_receive():  # noqa: ANN202
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _TooLarge:
            await _too_large(send, self.max_bytes)


class _TooLarge(Exception):
    pass


async def _too_large(send, max_bytes: int) -> None:  # noqa: ANN001
    body = f'{{"detail":"request body over {max_bytes} bytes"}}'.encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class SourceLayout:
    """What a service started with a column mapping reads: the mapping's source layout, told apart from
    canonical requests by its column names."""

    def __init__(self, mapping: ColumnMapping):
        if mapping.kind not in (None, "declarations"):
            raise DataError(f"the API scores declarations: a mapping of {mapping.kind} cannot describe its requests")
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
        return [{"loc": where(i), "msg": str(r.message), "type": str(r.reason)} for i, r in rejected.iterrows()]


def _canonical_items(payload: Any) -> list[Declaration]:
    """A canonical body validated as FastAPI validates it without a mapping (errors located under 'body')."""
    try:
        if isinstance(payload, list):
            return _DECLARATIONS.validate_python(payload)
        return [Declaration.model_validate(payload)]
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from exc


_DECLARATIONS = TypeAdapter(list[Declaration])


LAYOUT_HELP = "auto: told apart by the column names; canonical: contract fields; source: the mapping's layout"
CANONICAL_LAYOUT = ("Requests are declarations in canonical fields (one goods item per object; contract §4): "
                    "`declaration_id`, `declaration_date`, `importer_id`, `hs_code`, `origin_country`, "
                    "`declared_value` required, the other contract fields optional, nothing else.")


def create_app(scorer: Scorer, max_items: int = 100, max_body_bytes: int = MAX_BODY_BYTES,
               api_key: str | None = None, mapping: ColumnMapping | None = None) -> FastAPI:
    """The FastAPI app around a scorer (injected, so tests can pass one with a fixed model). With a `mapping`,
    /v1/score also takes records in the mapping's source layout."""
    state = ServiceState(scorer)
    source = SourceLayout(mapping) if mapping is not None else None
    api_key = api_key if api_key is not None else os.environ.get("ADUANA_API_KEY")
    description = ("Lanes (red/yellow/green), risk and reasons for import declarations. "
                   "Real-time lanes apply thresholds learned from the latest scoring batch.\n\n" + CANONICAL_LAYOUT)
    if source is not None:
        description += "\n\n" + source.describe()
    app = FastAPI(title="Aduana scoring API", version="0.5.0", description=description)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", [])), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": errors})

    def require_key(x_api_key: Annotated[str | None, Header()] = None) -> None:
        if api_key and x_api_key != api_key:
            raise HTTPException(status_code=401, detail="missing or wrong X-API-Key")

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        state.refresh()
        body = {"ready": scorer.ready, "model_version": scorer.version,
                "registry": scorer.registry_error or "ok",
                "thresholds_from": state.thresholds.batch_id if state.thresholds else None,
                "layouts": ["canonical", "source"] if source is not None else ["canonical"]}
        return JSONResponse(status_code=200 if scorer.ready else 503, content=body)

    def check_count(items: list) -> None:
        if len(items) > max_items:
            raise HTTPException(status_code=413, detail=f"at most {max_items} declarations per request")
        if not items:
            raise HTTPException(status_code=422, detail=[{"loc": ["body"], "msg": "empty list", "type": "empty"}])

    def answer(declarations: pd.DataFrame | dict, as_list: bool) -> dict | list[dict]:
        state.refresh()
        if not scorer.ready:
            raise HTTPException(status_code=503, detail="no champion model loaded yet")
        out = scorer.score_realtime(declarations, state.thresholds)
        results = [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}
                   for r in out.to_dict("records")]  # FastAPI validates them against ScoreOut once, on the way out
        return results if as_list else results[0]

    def canonical(items: list[Declaration], as_list: bool) -> dict | list[dict]:
        check_count(items)
        one = items[0].model_dump() if len(items) == 1 else None  # one declaration: the pandas-free path
        return answer(one if one is not None else canonical_frame(items), as_list)

    def source_layout(records: list, as_list: bool) -> dict | list[dict]:
        check_count(records)
        where = (lambda i: ["body"]) if not as_list else (lambda i: ["body", i])
        not_objects = [i for i, r in enumerate(records) if not isinstance(r, dict)]
        if not_objects:
            raise HTTPException(status_code=422, detail=[{"loc": where(i), "msg": "a declaration is a JSON object",
                                                          "type": "not_an_object"} for i in not_objects])
        nested = non_scalar_values(records)
        if nested:
            raise HTTPException(status_code=422, detail=[
                {"loc": [*where(i), k], "msg": "a value is a number, a string or null, as in a file cell",
                 "type": "not_a_value"} for i, k in nested])
        try:
            taken = take_in(records_frame(records, source.mapping), source.mapping)
        except DataError as exc:  # e.g. unknown columns under `unknown_columns: error`
            raise HTTPException(status_code=422, detail=[{"loc": ["body"], "msg": str(exc), "type": "mapping"}]) from exc
        if len(taken.rejected):
            raise HTTPException(status_code=422, detail=source.errors(taken.failures, taken.rejected, not as_list))
        return answer(taken.valid, as_list)

    if source is None:
        @app.post("/v1/score", dependencies=[Depends(require_key)], response_model=ScoreOut | list[ScoreOut],
                  description=CANONICAL_LAYOUT)
        def score(payload: Annotated[Declaration | list[Declaration], Body()]) -> dict | list[dict]:
            items = payload if isinstance(payload, list) else [payload]
            return canonical(items, isinstance(payload, list))
    else:
        canonical_schema = Declaration.model_json_schema()
        record = source.schema()
        body_schema = {"anyOf": [canonical_schema, {"type": "array", "items": canonical_schema},
                                 record, {"type": "array", "items": record}]}

        @app.post("/v1/score", dependencies=[Depends(require_key)], response_model=ScoreOut | list[ScoreOut],
                  description=CANONICAL_LAYOUT + "\n\n" + source.describe(),
                  openapi_extra={"requestBody": {"required": True,
                                                 "content": {"application/json": {"schema": body_schema}}}})
        def score(payload: Annotated[Any, Body()],
                  layout: Annotated[Literal["auto", "canonical", "source"], Query(description=LAYOUT_HELP)] = "auto",
                  ) -> dict | list[dict]:
            records = payload if isinstance(payload, list) else [payload]
            if source.layout(records, layout) == "source":
                return source_layout(records, isinstance(payload, list))
            return canonical(_canonical_items(payload), isinstance(payload, list))

    app.state.service = state
    app.state.layout = source
    return app
