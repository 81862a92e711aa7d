"""The scoring app (`create_app`): its routes (POST /v1/score, /healthz, /readyz, the analysts' page and the docs),
error handlers and middleware, around an injected scorer.

A scoring request is read in a worker thread, never on the event loop, so /healthz answers while the heaviest
request is served: the body's shape and text (serving/api/body.py), then its declarations in canonical fields
(`Declaration`) or in a mapping's source layout (serving/api/source.py); each declaration is scored on the
pandas-free one-row path, as if it came alone, with the real-time thresholds of serving/realtime.py, and every
answer is durable in the decision log before it leaves. A scoring call with the key and a plain query is answered
by `DirectScore` before FastAPI's router (the route's own answer, for less of the event loop's time); any other goes
the route's way.
"""
from __future__ import annotations

import asyncio
import copy
import functools
import importlib.metadata
import math
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Annotated, Literal, get_args

import anyio
import pandas as pd
from fastapi import FastAPI, HTTPException, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader

from features.intake.mapping import ColumnMapping
from features.warehouse import BUSY, WAREHOUSE_ERRORS, OperationalLog, open_log
from serving import ui
from serving.api.body import MAX_FIELDS, capped, parse_records, read_canonical, request_id_of
from serving.api.docs import (
    CANONICAL_LAYOUT,
    DOCS_ASSETS,
    ERROR_RESPONSES,
    LAYOUT_HELP,
    SCORE_SUMMARY,
    install_docs,
    request_examples,
)
from serving.api.guards import BODY_TIMEOUT_S, MAX_BODY_BYTES, BodyGuard, SecurityHeaders
from serving.api.schemas import ANSWER, ANSWERS, Declaration, HealthOut, ReadyOut, ScoreOut
from serving.api.source import SourceLayout
from serving.keys import ServiceKey
from serving.realtime import DecisionLog, LogUnavailable, ServiceState
from serving.scorer import Scorer

SCORING_THREADS = 4  # requests scored at once; more wait their turn without holding a thread
RETRY_AFTER_S = 5
Layout = Literal["auto", "canonical", "source"]
LAYOUTS = get_args(Layout)


def refusal(exc: HTTPException) -> JSONResponse:
    """An HTTPException as the API answers it: a 422's field-level list capped, any other detail as it is."""
    content = capped(exc.detail) if exc.status_code == 422 and isinstance(exc.detail, list) else {"detail": exc.detail}
    return JSONResponse(status_code=exc.status_code, content=content, headers=exc.headers)


def header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    """A request's first header `name` (lower case), as Starlette reads it."""
    return next((value.decode("latin-1") for key, value in headers if key == name), None)


class DirectScore:
    """POST /v1/score answered straight from the ASGI call, past FastAPI's routing, dependencies and exception
    middleware: the event loop's CPU on a one-declaration call drops from 1.0 to 0.7 ms (measured per thread, one
    worker at concurrency 1; 0.16-0.36 ms less in a slow round). The call is the route's in every other respect:
    the same scoring in a worker thread, the same answer and headers, an HTTPException answered as the app's
    handler answers it. Only the calls `layout_of` accepts (the key given where one is set; no query but a valid
    `layout`) come here; any other goes on to the route, so a missing key is its 401 and a wrong layout its 422,
    as documented."""

    def __init__(self, app, layout_of: Callable[[bytes, list], str | None],  # noqa: ANN001 - ASGI app
                 scored: Callable[[bytes, str, str | None], Awaitable[Response]]):
        self.app, self.layout_of, self.scored = app, layout_of, scored

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001 - ASGI callables
        if scope["type"] != "http" or scope["path"] != "/v1/score" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        layout = self.layout_of(scope.get("query_string") or b"", scope["headers"])
        if layout is None:
            return await self.app(scope, receive, send)
        chunks, more = [], True
        while more:  # BodyGuard has read it whole: one message
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        try:
            response = await self.scored(b"".join(chunks), layout, header(scope["headers"], b"x-request-id"))
        except HTTPException as exc:
            response = refusal(exc)
        await response(scope, receive, send)


def create_app(scorer: Scorer, max_items: int = 100, max_body_bytes: int = MAX_BODY_BYTES,
               api_key: str | None = None, mapping: ColumnMapping | None = None, decision_log: bool = True,
               body_timeout_s: float = BODY_TIMEOUT_S, secure_cookie: bool = False,
               oplog: OperationalLog | None = None, refresher: bool = True) -> FastAPI:
    """The FastAPI app around a scorer (injected, so tests can pass one with a fixed model). With a `mapping`,
    /v1/score also takes records in the mapping's source layout. Answers are made durable in `oplog` (default: the
    journal beside the warehouse, features/warehouse/oplog.py); `decision_log=False` leaves them out of the decision
    log (benchmarks only: the contract logs every answer). `secure_cookie` marks the analysts'
    page's cookie Secure even on plain HTTP requests (a TLS proxy the server does not see); a request that came
    over HTTPS gets a Secure cookie either way. `refresher=False` leaves each reload slot's refresh to the request
    that crosses it (benchmarks only: what the refresher saves a call)."""
    state = ServiceState(scorer)
    key = ServiceKey(api_key)
    source = SourceLayout(mapping) if mapping is not None else None
    if decision_log and oplog is None:
        oplog = open_log(None, scorer.warehouse.path)
    answers_log = DecisionLog(scorer.warehouse, oplog) if decision_log else None
    max_fields = max(MAX_FIELDS, 2 * len(source.columns)) if source is not None else MAX_FIELDS
    description = ("Lanes (red/yellow/green), risk and reasons for import declarations. "
                   "Real-time lanes apply thresholds learned from the latest scoring batch; every answer is "
                   "appended to the decision log.\n\n" + CANONICAL_LAYOUT)
    if source is not None:
        description += "\n\n" + source.describe()

    @asynccontextmanager
    async def lifespan(_: FastAPI):  # noqa: ANN202
        # The first snapshot and thresholds, read before the copier starts its first copy (a write) and waiting for
        # any other process's lock as long as the warehouse waits: the first requests find them read.
        await anyio.to_thread.run_sync(functools.partial(state.refresh, patient=True))
        if answers_log is not None:
            answers_log.start()
        if refresher:
            state.start_refresher()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(state.stop_refresher)
            if answers_log is not None:
                await anyio.to_thread.run_sync(answers_log.close)  # the last copy to the warehouse

    app = FastAPI(title="Aduana scoring API", version=importlib.metadata.version("aduana"), description=description,
                  lifespan=lifespan, docs_url=None, redoc_url=None)
    install_docs(app)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content=capped(list(exc.errors())))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        return refusal(exc)

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

    @app.get("/healthz", summary="Liveness: the process answers", response_model=HealthOut)
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
                "decision_log": answers_log.oplog.where if answers_log is not None else "off",
                "decision_log_error": answers_log.last_error if answers_log is not None else None}

    @app.get("/readyz", summary="Readiness: a champion is loaded and the warehouse snapshot is readable",
             description="`{\"ready\": true}`, or 503 with `Retry-After` when not ready. With the service's key as "
                         "`X-API-Key` (or on a service without a key) it also says which model version, thresholds' "
                         "batch, layouts, registry and warehouse state it serves with, and the decisions pending.",
             response_model=ReadyOut,
             responses={503: {"model": ReadyOut, "description": "Not ready: no champion model or no warehouse "
                                                                "snapshot yet; retry after `Retry-After` seconds."}})
    def readyz(request: Request) -> JSONResponse:
        state.refresh_for_request(wait=False)
        ready = state.ready
        body = {"ready": ready}
        if key.matches(request.headers.get("x-api-key")):
            body.update(readiness_details())
        headers = None if ready else {"Retry-After": str(RETRY_AFTER_S)}
        return JSONResponse(status_code=200 if ready else 503, content=body, headers=headers)

    def unavailable(detail: str) -> HTTPException:
        return HTTPException(status_code=503, detail=detail, headers={"Retry-After": str(RETRY_AFTER_S)})

    def answer(declarations: pd.DataFrame | list[dict], as_list: bool, request_id: str) -> bytes:
        state.refresh_for_request()
        if not scorer.ready:
            raise unavailable("no champion model loaded yet")
        if not scorer.has_snapshot:
            raise unavailable(f"{BUSY}: nothing read from it yet")
        thresholds = state.thresholds
        try:
            out = scorer.score_realtime(declarations, thresholds)
        except WAREHOUSE_ERRORS as exc:  # a snapshot refresh that failed before any snapshot existed
            raise unavailable(f"{BUSY}: nothing read from it yet") from exc
        results = [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()} for r in out]
        checked = ANSWERS.validate_python(results)  # the answers as documented, before they are logged
        if answers_log is not None:  # durable before it is given; else no answer
            try:
                answers_log.record(results, request_id, state.policy_hash, thresholds.batch_id if thresholds else None)
            except LogUnavailable as exc:
                raise unavailable(str(exc)) from exc
        return ANSWERS.dump_json(checked) if as_list else ANSWER.dump_json(checked[0])

    def handle(body: bytes, layout: str, request_id: str) -> bytes:
        """Everything a scoring request costs, in a worker thread: parse, check, validate, score, log."""
        records, as_list = parse_records(body, max_items, max_fields)
        if source is not None and source.layout(records, layout) == "source":
            return answer(source.read(records, as_list), as_list, request_id)
        return answer([i.model_dump() for i in read_canonical(records, as_list)], as_list, request_id)

    limiters: dict[int, anyio.CapacityLimiter] = {}

    def limiter() -> anyio.CapacityLimiter:
        """The scoring threads' limiter, one per event loop (a TestClient may run several)."""
        loop = id(asyncio.get_running_loop())
        if loop not in limiters:
            limiters.clear()
            limiters[loop] = anyio.CapacityLimiter(SCORING_THREADS)
        return limiters[loop]

    async def scored(body: bytes, layout: str, given_id: str | None) -> Response:
        request_id = request_id_of(given_id)
        run: Callable[[], bytes] = partial(handle, body, layout, request_id)
        content = await anyio.to_thread.run_sync(run, limiter=limiter())
        return Response(content=content, media_type="application/json", headers={"X-Request-ID": request_id})

    async def respond(request: Request, layout: str) -> Response:
        return await scored(await request.body(), layout, request.headers.get("x-request-id"))

    def direct_layout(query: bytes, headers: list[tuple[bytes, bytes]]) -> str | None:
        """The layout of a scoring call DirectScore may answer itself (with the key, no query but a valid layout),
        else None: the route answers it (401, 422) as documented."""
        if key.required and not key.matches(header(headers, b"x-api-key")):
            return None
        if not query:
            return "auto" if source is not None else "canonical"
        layout = query.removeprefix(b"layout=").decode("latin-1")
        return layout if source is not None and query.startswith(b"layout=") and layout in LAYOUTS else None

    app.add_middleware(DirectScore, layout_of=direct_layout, scored=scored)
    app.add_middleware(BodyGuard, max_bytes=max_body_bytes, timeout_s=body_timeout_s)
    app.add_middleware(SecurityHeaders, static_prefix=DOCS_ASSETS)  # outermost: BodyGuard's own answers are secured too

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
            layout: Annotated[Layout, Query(description=LAYOUT_HELP)] = "auto",
        ) -> Response:
            return await respond(request, layout)

    app.state.service = state
    app.state.layout = source
    app.state.decision_log = answers_log
    return app
