"""`install`: the analysts' routes on the API app (`/ui`, `/ui/declaration`) and the key check in front of them
(serving/keys.py; its 401 page says nothing of the model behind the key)."""
from __future__ import annotations

import time
from html import escape
from urllib.parse import urlencode

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from features.contract import MAX_ID_LENGTH
from features.intake.text import normalise
from features.warehouse import BUSY, WAREHOUSE_ERRORS
from serving.keys import KEY_COOKIE, SESSION_SECONDS, ServiceKey, session_token, valid_session
from serving.scorer import Scorer
from serving.ui.contributions import contributions, scorer_input, stored_contributions
from serving.ui.layout import HEADERS, lookup_form, page, when_text
from serving.ui.lookup import contributions_section, decision_section, declaration_section
from serving.ui.overview import audit_section, batch_section, ratings_section
from serving.ui.page_snapshot import PageSnapshot

RETRY_AFTER_S = 5


def install(app: FastAPI, scorer: Scorer, key: ServiceKey, secure_cookie: bool = False) -> PageSnapshot:
    """Add the analysts' pages to the API app (see the module docstring); returns their warehouse snapshot."""
    snapshot = PageSnapshot(scorer)

    def champion() -> str | None:
        return scorer.version

    def refused(request: Request) -> Response | None:
        """None when the request may see the page; else the answer: 401, or the redirect that keeps `?key=`."""
        if not key.required:
            return None
        query = request.query_params.get("key")
        if query is not None and key.matches(query):
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "key"]
            target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
            answer = RedirectResponse(target, status_code=303, headers=HEADERS)
            answer.set_cookie(KEY_COOKIE, session_token(key, int(time.time())), max_age=SESSION_SECONDS,
                              httponly=True, samesite="strict", path="/ui",
                              secure=secure_cookie or request.url.scheme == "https")
            return answer
        if query is None and (key.matches(request.headers.get("x-api-key"))
                              or valid_session(key, request.cookies.get(KEY_COOKIE), time.time())):
            return None
        return page("Key needed", '<section><h2>This page needs the service\'s key</h2><p>The service was started '
                    'with <code>ADUANA_API_KEY</code>. Open <code>/ui?key=YOUR_KEY</code> once (a token derived from '
                    'it is then kept in a cookie for this browser\'s /ui pages), or send the key as the '
                    '<code>X-API-Key</code> header.'
                    '</p></section>', None, status=401, names_champion=False)

    @app.get("/ui", include_in_schema=False)
    def overview(request: Request) -> Response:
        if (answer := refused(request)) is not None:
            return answer
        data = snapshot.get()
        if data is None:
            return page("Warehouse busy", f'<section class="warn"><h2>{BUSY.capitalize()}</h2><p>Nothing read from it '
                        'yet. This page retries on reload.</p></section>', champion(), status=503,
                        headers={"Retry-After": str(RETRY_AFTER_S)})
        stale = (f'<section class="warn">{BUSY.capitalize()}: showing what was read '
                 f'at {when_text(data.read_at)}.</section>' if snapshot.error else "")
        body = (f'<section>{lookup_form()}</section>{stale}{batch_section(data.batch)}{audit_section(data.audit, data.audit_findings)}'
                f'{ratings_section(data.ratings)}<p class="note">Read from the warehouse at {when_text(data.read_at)}.</p>')
        return page("Aduana: risk analysts", body, champion())

    @app.get("/ui/declaration", include_in_schema=False)
    def declaration(request: Request, id: str | None = None) -> Response:  # noqa: A002 - the form's field name
        if (answer := refused(request)) is not None:
            return answer
        wanted = normalise(id or "")
        if not wanted or len(wanted) > MAX_ID_LENGTH:
            problem = "give a declaration id" if not wanted else f"a declaration id has at most {MAX_ID_LENGTH} characters"
            return page("Not a declaration id", f'<section>{lookup_form()}</section><section class="warn"><h2>Not a '
                        f'declaration id</h2><p>{problem}.</p></section>', champion(), status=422)
        warehouse = scorer.reader()
        try:
            with warehouse.process_lock():
                decision, decisions = warehouse.decisions.latest_for(wanted)
                stored = warehouse.declaration(wanted) if decision is not None else None
        except WAREHOUSE_ERRORS:
            return page("Warehouse busy", f'<section>{lookup_form(wanted)}</section><section class="warn"><h2>'
                        f'{BUSY.capitalize()}</h2><p>Retry in a few seconds.</p></section>',
                        champion(), status=503, headers={"Retry-After": str(RETRY_AFTER_S)})
        if decision is None:
            return page("Not found", f'<section>{lookup_form(wanted)}</section><section class="warn" id="not-found">'
                        f'<h2>Declaration not found</h2><p>No decision is recorded for <code>{escape(wanted)}</code>: '
                        'it has not been scored (<code>aduana score FILE --out OUT.csv</code>, or '
                        '<code>POST /v1/score</code>), or the id is mistyped.</p></section>', champion(), status=404)
        found, unavailable = stored_contributions(decision), None
        if found is not None:
            pass  # the deciding model's own, kept with the decision: nothing to recompute
        elif decision.get("selected_by") == "validation" or pd.isna(decision.get("risk_score")):
            unavailable = "None: the declaration failed validation when it was scored, so no model scored it."
        elif stored is None:
            unavailable = ("Unavailable: the warehouse does not hold this declaration (run <code>aduana ingest</code> "
                           "on its file), so its features cannot be recomputed.")
        else:
            scorer.refresh_model()
            if not scorer.ready:
                unavailable = "Unavailable: no champion model is loaded (<code>aduana train</code>)."
            else:
                try:
                    found = contributions(scorer, scorer_input(stored))
                except WAREHOUSE_ERRORS:
                    unavailable = f"Unavailable for now: {BUSY}."
        body = (f'<section>{lookup_form(wanted)}</section>{decision_section(decision, decisions)}'
                f'{declaration_section(stored)}{contributions_section(found, decision, unavailable)}')
        return page(f"Declaration {wanted}", body, champion())

    return snapshot

