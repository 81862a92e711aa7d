"""The real-time scoring API: the batch scorer, one declaration (or a short list) per request.

In real time there is no batch to rank within, so the capacity is applied through thresholds: the risk
cut-offs and the exploration draw cut-off of the latest scoring batch made with the same model (or, before
any batch, of the most recent declarations in the warehouse scored as one batch). A declaration from that
batch gets the same lane both ways.
"""
from __future__ import annotations

import datetime as dt
import math
import os
import threading
import time
from typing import Annotated

import pandas as pd
from fastapi import Body, Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from features.data.contract import (
    CANONICAL_DTYPES,
    EARLIEST_DATE,
    HS_CODE_PATTERN,
    ISO_COUNTRIES,
    field_types,
    today_limit,
)
from serving.scorer import Scorer, Thresholds

MAX_BODY_BYTES = 1_000_000
THRESHOLD_WINDOW = 5_000  # recent declarations scored to learn thresholds when no batch was scored yet

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


class ServiceState:
    """The scorer and its real-time thresholds, refreshed together."""

    def __init__(self, scorer: Scorer):
        self.scorer = scorer
        self.thresholds: Thresholds | None = None
        self._thresholds_for: tuple | None = None
        self._refreshed_at = -float("inf")
        self._lock = threading.Lock()

    def pin(self, thresholds: Thresholds) -> None:
        """Use these thresholds until the champion or the decision log changes (for benchmarks and tests)."""
        self.thresholds = thresholds
        self._thresholds_for = (self.scorer.version, self.scorer.warehouse.counts()["decisions"])

    def refresh(self) -> None:
        """Reload the champion and relearn thresholds when needed, at most every reload_seconds."""
        if time.monotonic() - self._refreshed_at < self.scorer.reload_seconds:
            return
        with self._lock:
            self._refreshed_at = time.monotonic()
            self.scorer.refresh_model()
            if not self.scorer.ready:
                return
            key = (self.scorer.version, self.scorer.warehouse.counts()["decisions"])
            if key != self._thresholds_for:
                self.thresholds = self._learn_thresholds()
                self._thresholds_for = key

    def _learn_thresholds(self) -> Thresholds | None:
        policy, warehouse = self.scorer.policy, self.scorer.warehouse
        latest = warehouse.read(
            "SELECT * FROM decisions WHERE batch_id = (SELECT batch_id FROM decisions WHERE model_version = ? "
            "ORDER BY decided_at DESC LIMIT 1) AND risk_score IS NOT NULL", [self.scorer.version])
        if latest.empty:
            recent = warehouse.read(f"SELECT declaration_id, declaration_date, importer_id, hs_code, origin_country, "
                                    f"declared_value, declarant_id, exporter_id, office_id, transport_mode, "
                                    f"departure_country, net_mass_kg, quantity, tax_rate, duty_paid, bill_of_lading "
                                    f"FROM declarations ORDER BY declaration_date DESC LIMIT {THRESHOLD_WINDOW}")
            if recent.empty:
                return None
            latest = self.scorer.score(recent, explain_lanes=()).assign(batch_id="recent-declarations")
        return Thresholds.from_decisions(latest, policy.rank_by, policy.seed)


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


def create_app(scorer: Scorer, max_items: int = 100, max_body_bytes: int = MAX_BODY_BYTES,
               api_key: str | None = None) -> FastAPI:
    """The FastAPI app around a scorer (injected, so tests can pass one with a fixed model)."""
    state = ServiceState(scorer)
    api_key = api_key if api_key is not None else os.environ.get("ADUANA_API_KEY")
    app = FastAPI(title="Aduana scoring API", version="0.5.0",
                  description="Lanes (red/yellow/green), risk and reasons for import declarations. "
                              "Real-time lanes apply thresholds learned from the latest scoring batch.")
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
                "thresholds_from": state.thresholds.batch_id if state.thresholds else None}
        return JSONResponse(status_code=200 if scorer.ready else 503, content=body)

    @app.post("/v1/score", dependencies=[Depends(require_key)], response_model=ScoreOut | list[ScoreOut])
    def score(payload: Annotated[Declaration | list[Declaration], Body()]) -> dict | list[dict]:
        items = payload if isinstance(payload, list) else [payload]
        if len(items) > max_items:
            raise HTTPException(status_code=413, detail=f"at most {max_items} declarations per request")
        if not items:
            raise HTTPException(status_code=422, detail=[{"loc": ["body"], "msg": "empty list", "type": "empty"}])
        state.refresh()
        if not scorer.ready:
            raise HTTPException(status_code=503, detail="no champion model loaded yet")
        one = items[0].model_dump() if len(items) == 1 else None  # one declaration: the pandas-free path
        out = scorer.score_realtime(one if one is not None else canonical_frame(items), state.thresholds)
        results = [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}
                   for r in out.to_dict("records")]  # FastAPI validates them against ScoreOut once, on the way out
        return results if isinstance(payload, list) else results[0]

    app.state.service = state
    return app
