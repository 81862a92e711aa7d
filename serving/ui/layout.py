"""The page shell every /ui answer is wrapped in (its header, the stylesheet and the pages' security policy), the
lookup form, and the small formatters the sections share. Cells and bodies are HTML: escape text before."""
from __future__ import annotations

import math
from html import escape
from urllib.parse import urlencode

import pandas as pd
from fastapi.responses import HTMLResponse

from features.contract import MAX_ID_LENGTH
from serving.ui.style import STYLE

# The pages' own policy: inline CSS and SVG, no script. The app adds the other security headers to every answer
# (serving/api/guards.py `SecurityHeaders`).
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
}


def count_text(value: float) -> str:
    return f"{int(value):,}"


def score_text(value: object, digits: int = 4) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):,.{digits}f}"


def when_text(value: object) -> str:
    if value is None or pd.isna(value):
        return ""
    stamp = pd.Timestamp(value)
    return stamp.strftime("%Y-%m-%d %H:%M:%S") + " UTC"


def lane_badge(lane: str) -> str:
    return f'<span class="lane lane-{escape(lane)}">{escape(lane)}</span>'


def table(headers: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    """An HTML table; cells are HTML already (escape text before)."""
    head = "".join(f'<th{" class=n" if i in numeric else ""}>{h}</th>' for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td{" class=n" if i in numeric else ""}>{c}</td>' for i, c in enumerate(r))
                   + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def declaration_link(declaration_id: str) -> str:
    """A link to a declaration's page. It carries the id only: behind the key, the /ui cookie opens it."""
    return f'<a href="/ui/declaration?{escape(urlencode({"id": declaration_id}))}">{escape(declaration_id)}</a>'


def record_table(pairs: list[tuple[str, str]], table_id: str) -> str:
    """A record as a two-column table: one row per field (names are text, values HTML already)."""
    body = "".join(f"<tr><th>{escape(name)}</th><td>{value}</td></tr>" for name, value in pairs)
    return f'<table id="{table_id}">{body}</table>'


def lookup_form(value: str = "") -> str:
    return (f'<form method="get" action="/ui/declaration"><label for="id"><b>Declaration</b></label>'
            f'<input type="text" id="id" name="id" value="{escape(value)}" maxlength="{MAX_ID_LENGTH}" required '
            f'placeholder="declaration id"><button type="submit">Look up</button></form>')


def page(title: str, body: str, champion: str | None, status: int = 200, headers: dict | None = None,
         names_champion: bool = True) -> HTMLResponse:
    """A whole page. Its header names the champion, unless `names_champion` is off (the 401 page: which model
    decides is behind the key too)."""
    named = (f'<span>champion customs-risk {escape("v" + champion) if champion else "(none loaded)"}</span>'
             if names_champion else "")
    html = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head><body>'
            f'<header><h1><a href="/ui" style="color:inherit;text-decoration:none">Aduana: risk analysts</a></h1>'
            f'{named}<span><a href="/docs" style="color:#cfe3ff">API docs</a></span></header><main>{body}</main>'
            f'</body></html>')
    return HTMLResponse(html, status_code=status, headers={**HEADERS, **(headers or {})})

