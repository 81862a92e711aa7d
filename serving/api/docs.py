"""The API's documentation: the texts and request examples of the OpenAPI document, and the docs pages (Swagger UI
at /docs, ReDoc at /redoc) served from local files with their own Content-Security-Policy (`install_docs`).
"""
from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import math
import re
from pathlib import Path

import pandas as pd
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError

from features.contract import required_fields
from serving.api.body import MAX_ERRORS
from serving.api.schemas import Declaration

LAYOUT_HELP = "auto: told apart by the column names; canonical: contract fields; source: the mapping's layout"
CANONICAL_LAYOUT = ("Requests are declarations in canonical fields (one goods item per object; contract §4): "
                    + ", ".join(f"`{f}`" for f in required_fields("declarations"))
                    + " required, the other contract fields optional, nothing else.")
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




def install_docs(app: FastAPI) -> None:
    """/docs and /redoc, and the assets they load, on `app`."""
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
