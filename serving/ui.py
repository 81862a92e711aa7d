"""The analysts' page (`GET /ui`): plain server-rendered HTML from the API app, with nothing but inline CSS and
inline SVG, so it works on an offline customs network and its Content-Security-Policy allows no script at all.

- `/ui`: the latest scoring batch (lanes by office and by day, the score distribution with the lane cut-offs), the
  latest post-clearance audit list and the latest stored risk ratings, each with what to run when there is none.
- `/ui/declaration?id=ID`: a declaration's latest decision (lane, score, selected_by, reasons, model version) and
  its top feature contributions (SHAP values, log-odds): those the deciding model gave at decision time, stored with
  the decision (the decision log's `contributions`); for a decision without them (a green release, or one logged
  before they were stored) the current champion's, recomputed for the declaration as the warehouse stores it
  through the scorer's own one-row path (serving/scorer.py), and the page says so.

The page reads the warehouse as the scorer reads its snapshot (`PageSnapshot`): under the process's warehouse lock,
waiting at most the scorer's `snapshot_wait` for another process, at most every `reload_seconds`; while the file is
busy the last read keeps serving, so the page never blocks on a writer. A lookup reads one declaration live, with
the same bounded wait (503 when the warehouse stays busy).

With ADUANA_API_KEY set the page needs the key, like scoring (one check, serving/keys.py `ServiceKey`): as
X-API-Key, or once as `?key=` on any /ui URL, which answers a redirect to the same URL without it and sets an
HttpOnly, SameSite=Strict cookie. The cookie holds a signed, expiring token (when it was issued, and an HMAC of that
under the key), not the key: a copied cookie opens these pages only, never /v1/score, and only for
SESSION_SECONDS. It is Secure when the request came over HTTPS, or always with `create_app(secure_cookie=True)`.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from urllib.parse import urlencode

import numpy as np
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from features.contract import LABEL_FIELDS, MAX_ID_LENGTH
from features.intake.text import normalise
from serving.keys import KEY_COOKIE, SESSION_SECONDS, ServiceKey, session_token, valid_session
from serving.realtime import BOOKKEEPING
from serving.reasons import TOP_CONTRIBUTIONS, explanations, feature_value_text
from serving.scorer import WAREHOUSE_ERRORS, Scorer
from serving.selection import GREEN, RED, YELLOW, Thresholds

# How long a /ui cookie opens the pages: an analyst's working day, after which `?key=` is needed again, so a cookie
# copied from a shared or lost machine stops working by the next day.
MAX_BARS = 30  # offices drawn as bars (the busiest); the table lists them all
LANES = (RED, YELLOW, GREEN)
COLOURS = {RED: "#c0392b", YELLOW: "#e2b007", GREEN: "#2e8b57"}
HISTOGRAM_BINS = 40
MAX_LIST_ROWS = 100  # rows of an audit or ratings list shown (the rest are counted)
NOT_STORED = "(not in the warehouse)"  # a scored declaration the warehouse does not hold: office and day unknown
RETRY_AFTER_S = 5
# The pages' own policy: inline CSS and SVG, no script. The app adds the other security headers to every answer
# (serving/api.py `SecurityHeaders`).
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
}


# ---------------------------------------------------------------- what the page shows

@dataclass(frozen=True)
class BatchView:
    """The latest scoring batch, summarised."""

    batch_id: str
    decided_at: pd.Timestamp
    model_versions: list[str]
    lanes: dict[str, int]
    by_office: pd.DataFrame  # office × lane counts (and total), busiest first
    by_day: pd.DataFrame  # filing day × lane counts (and total), by day
    edges: np.ndarray  # histogram bin edges of the risk score
    counts: dict[str, np.ndarray]  # lane → declarations per bin
    cut_offs: dict[str, float]  # lane → the lowest risk score the model put in it (when lanes rank by risk)
    not_stored: int  # scored declarations the warehouse does not hold


def lane_table(rows: pd.DataFrame, by: str) -> pd.DataFrame:
    """Declarations per `by` value and lane, with a total column."""
    table = pd.crosstab(rows[by], rows["lane"]).reindex(columns=list(LANES), fill_value=0)
    return table.assign(total=table.sum(axis=1)).astype("int64")


def summarise_batch(rows: pd.DataFrame, rank_by: str, seed: int) -> BatchView | None:
    """A scoring batch's decisions (features/warehouse/decisions.py `latest_scoring_batch`) as the page shows them."""
    if rows.empty:
        return None
    stored = rows["declaration_date"].notna()
    rows = rows.assign(office=rows["office_id"].astype("object").where(stored, NOT_STORED).fillna("(none)"),
                       day=pd.to_datetime(rows["declaration_date"]).dt.strftime("%Y-%m-%d").where(stored, NOT_STORED))
    by_office = lane_table(rows, "office").sort_values(["total"], ascending=False, kind="stable")
    scored = rows[rows["risk_score"].notna()]
    top = float(scored["risk_score"].max()) if len(scored) else 1.0
    edges = np.linspace(0.0, min(1.0, max(math.ceil(top * 20) / 20, 0.05)), HISTOGRAM_BINS + 1)
    counts = {lane: np.histogram(scored.loc[scored["lane"] == lane, "risk_score"], bins=edges)[0] for lane in LANES}
    cut_offs = {}
    if rank_by == "risk_score" and len(scored):
        learned = Thresholds.from_decisions(scored, rank_by, seed)
        cut_offs = {lane: value for lane, value in ((RED, learned.red), (YELLOW, learned.yellow))
                    if math.isfinite(value)}
    return BatchView(batch_id=str(rows["batch_id"].iloc[0]), decided_at=pd.Timestamp(rows["decided_at"].max()),
                     model_versions=sorted({str(v) for v in rows["model_version"].dropna()}),
                     lanes={lane: int((rows["lane"] == lane).sum()) for lane in LANES}, by_office=by_office,
                     by_day=lane_table(rows, "day").sort_index(), edges=edges, counts=counts, cut_offs=cut_offs,
                     not_stored=int((~stored).sum()))


@dataclass(frozen=True)
class PageData:
    batch: BatchView | None
    audit: pd.DataFrame
    ratings: pd.DataFrame
    read_at: datetime


class PageSnapshot:
    """What /ui shows, read from the warehouse the way the scorer reads its snapshot (see the module docstring)."""

    def __init__(self, scorer: Scorer):
        self.scorer = scorer
        self.data: PageData | None = None
        self.error: str | None = None  # why the last refresh could not read the warehouse
        self._version: tuple | None = None
        self._checked_at = -math.inf
        self._lock = threading.Lock()

    def get(self) -> PageData | None:
        """The page's data, refreshed when due; None only while there is none and the warehouse cannot be read."""
        due = self.data is None or time.monotonic() - self._checked_at >= self.scorer.reload_seconds
        if due and self._lock.acquire(blocking=self.data is None):  # a refresh under way: serve the last read
            try:
                self._refresh()
            finally:
                self._lock.release()
        return self.data

    def _refresh(self) -> None:
        self._checked_at = time.monotonic()
        warehouse = self.scorer.reader()
        policy = self.scorer.policy
        try:
            with warehouse.process_lock():
                counts = warehouse.counts()
                version = tuple(sorted(counts.items()))
                if self.data is not None and version == self._version:
                    self.error = None
                    return
                batch = warehouse.decisions.latest_scoring_batch()
                audit = warehouse.audits.latest()
                ratings = warehouse.ratings.latest()
        except WAREHOUSE_ERRORS as exc:
            self.error = f"{type(exc).__name__}: {str(exc)[:200]}"
            return
        self.data = PageData(batch=summarise_batch(batch, policy.rank_by, policy.seed), audit=audit, ratings=ratings,
                             read_at=datetime.now(UTC))
        self._version, self.error = version, None


# ---------------------------------------------------------------- a declaration's contributions

@dataclass(frozen=True)
class Contributions:
    """One declaration's SHAP values (log-odds): base + sum of every feature's contribution = logit(risk)."""

    model_version: str | None
    base: float
    risk_score: float
    features: pd.DataFrame  # feature, family, value, contribution; strongest (by size) first
    families: pd.DataFrame  # family, contribution: the grouping the reasons use (serving/reasons.py)
    stored: bool = False  # the deciding model's, kept with the decision (only its strongest features); else recomputed


def _by_family(features: pd.DataFrame) -> pd.DataFrame:
    return (features.groupby("family", sort=False)["contribution"].sum().reset_index()
            .sort_values("contribution", ascending=False, kind="stable").reset_index(drop=True))


def stored_contributions(decision: dict) -> Contributions | None:
    """The contributions the decision log kept with a decision (the deciding model's at decision time), if any."""
    kept = decision.get("contributions")
    if not kept:
        return None
    features = pd.DataFrame(kept, columns=["feature", "family", "value", "contribution"])
    base = decision.get("contribution_base")
    return Contributions(model_version=decision.get("model_version"),
                         base=math.nan if base is None or pd.isna(base) else float(base),
                         risk_score=float(decision["risk_score"]), features=features, families=_by_family(features),
                         stored=True)


def scorer_input(stored: dict) -> dict:
    """A stored declaration as the scorer takes one: canonical fields and a mapping's extras, labels and
    bookkeeping aside (what serving/realtime.py scores of the warehouse's own rows)."""
    return {k: v for k, v in stored.items() if k not in LABEL_FIELDS and k not in BOOKKEEPING}


def contributions(scorer: Scorer, declaration: dict) -> Contributions:
    """The champion's feature contributions for one declaration, on the API's one-row feature path."""
    for _ in range(3):  # the champion may be swapped by a hot reload in between: compute again with the new one
        model, version = scorer.model, scorer.version
        frame, X, scores = scorer.scores_rows([declaration])  # the one-row path the API scores on
        if scorer.model is model:
            break
    found = explanations(model, X, frame, top_contributions=len(model.columns))  # the reasons' SHAP, every feature
    features = pd.DataFrame(found.contributions[0], columns=["feature", "family", "value", "contribution"])
    return Contributions(model_version=version, base=found.base, risk_score=float(scores["risk_score"].iloc[0]),
                         features=features, families=_by_family(features))


# ---------------------------------------------------------------- HTML and SVG

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d2733;background:#f4f6f8}
header{background:#17324d;color:#fff;padding:14px 28px;display:flex;gap:24px;align-items:baseline;flex-wrap:wrap}
header h1{font-size:20px;margin:0} header span{opacity:.85}
main{padding:8px 28px 40px;max-width:1280px}
section{background:#fff;border:1px solid #d9dee4;border-radius:6px;padding:14px 18px;margin:16px 0}
h2{font-size:17px;margin:2px 0 10px} h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse;margin:6px 0 10px} th,td{border-bottom:1px solid #e3e7eb;padding:4px 10px;text-align:left}
th{background:#eef1f4;font-weight:600} td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.lane{display:inline-block;padding:1px 9px;border-radius:10px;color:#fff;font-weight:600}
.lane-red{background:#c0392b}.lane-yellow{background:#e2b007;color:#1d2733}.lane-green{background:#2e8b57}
.empty{color:#55606c;font-style:italic} .note{color:#55606c} .warn{background:#fff4d6;border-color:#e2b007}
code{background:#eef1f4;padding:1px 4px;border-radius:3px}
form{display:flex;gap:8px;align-items:center} input[type=text]{padding:5px 8px;width:260px;font:inherit}
button{padding:5px 14px;font:inherit;background:#17324d;color:#fff;border:0;border-radius:4px}
.grid{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start} svg text{font:11px system-ui,sans-serif;fill:#1d2733}
details summary{cursor:pointer;color:#17324d}
"""


def _n(value: float) -> str:
    return f"{int(value):,}"


def _score(value: object, digits: int = 4) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):,.{digits}f}"


def _when(value: object) -> str:
    if value is None or pd.isna(value):
        return ""
    stamp = pd.Timestamp(value)
    return stamp.strftime("%Y-%m-%d %H:%M:%S") + " UTC"


def _lane(lane: str) -> str:
    return f'<span class="lane lane-{escape(lane)}">{escape(lane)}</span>'


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    """An HTML table; cells are HTML already (escape text before)."""
    head = "".join(f'<th{" class=n" if i in numeric else ""}>{h}</th>' for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td{" class=n" if i in numeric else ""}>{c}</td>' for i, c in enumerate(r))
                   + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def histogram_svg(edges: np.ndarray, counts: dict[str, np.ndarray], cut_offs: dict[str, float]) -> str:
    """The score distribution as stacked bars on a log scale (each bar split by its lanes' shares), with the
    lanes' cut-offs as dashed lines."""
    width, height, left, right, top, bottom = 760, 280, 52, 16, 26, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = sum(counts.values())
    peak = max(int(totals.max()) if len(totals) else 0, 1)
    scale = math.log10(peak + 1)
    y = lambda c: plot_h * math.log10(c + 1) / scale  # noqa: E731 - the bar height of a count
    x = lambda s: left + plot_w * (s - edges[0]) / (edges[-1] - edges[0])  # noqa: E731
    parts = [f'<svg id="score-histogram" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="risk score distribution of the batch">']
    for power in range(int(math.log10(peak)) + 1):  # grid lines at 1, 10, 100…
        gy = top + plot_h - y(10 ** power)
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{gy:.1f}" y2="{gy:.1f}" stroke="#e3e7eb"/>'
                     f'<text x="{left - 6}" y="{gy + 4:.1f}" text-anchor="end">{10 ** power:,}</text>')
    for i in range(len(edges) - 1):
        total = int(totals[i])
        if not total:
            continue
        bar, x0, w = y(total), x(edges[i]) + 0.5, max(x(edges[i + 1]) - x(edges[i]) - 1, 1)
        base = top + plot_h
        tip = f"{edges[i]:.3f}–{edges[i + 1]:.3f}: {total:,} declarations (" + ", ".join(
            f"{int(counts[lane][i]):,} {lane}" for lane in LANES if counts[lane][i]) + ")"
        for lane in LANES:
            if counts[lane][i]:
                h = bar * counts[lane][i] / total
                base -= h
                parts.append(f'<rect class="bar-{lane}" x="{x0:.1f}" y="{base:.1f}" width="{w:.1f}" height="{h:.1f}" '
                             f'fill="{COLOURS[lane]}"><title>{escape(tip)}</title></rect>')
    for k in range(5):
        value = edges[0] + (edges[-1] - edges[0]) * k / 4
        parts.append(f'<text x="{x(value):.1f}" y="{top + plot_h + 16}" text-anchor="middle">{value:.2f}</text>')
    for lane, value in cut_offs.items():
        parts.append(f'<line class="cut-off" x1="{x(value):.1f}" x2="{x(value):.1f}" y1="{top - 6}" y2="{top + plot_h}" '
                     f'stroke="{COLOURS[lane]}" stroke-width="2" stroke-dasharray="5 3"/>'
                     f'<text x="{x(value) + 4:.1f}" y="{top + (4 if lane == RED else 16)}">{lane} from {value:.3f}</text>')
    parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#55606c"/>'
                 f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle">risk score (P(fraud))</text>'
                 f'<text x="12" y="{top + plot_h / 2}" transform="rotate(-90 12 {top + plot_h / 2})" '
                 f'text-anchor="middle">declarations (log scale)</text></svg>')
    return "".join(parts)


def stacked_bars_svg(table: pd.DataFrame, svg_id: str, label: str, horizontal: bool) -> str:
    """Lane counts per row of a lane table as stacked bars: one bar per office (horizontal) or per day."""
    peak = max(int(table["total"].max()), 1) if len(table) else 1
    if horizontal:
        row_h, left, width = 20, 170, 560
        height = row_h * len(table) + 24
        parts = [f'<svg id="{svg_id}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
                 f'role="img" aria-label="{escape(label)}">']
        for i, (name, r) in enumerate(table.iterrows()):
            y0, x0 = 4 + i * row_h, left
            parts.append(f'<text x="{left - 6}" y="{y0 + 13}" text-anchor="end">{escape(str(name))}</text>')
            for lane in LANES:
                w = (width - left - 60) * r[lane] / peak
                if w:
                    parts.append(f'<rect x="{x0:.1f}" y="{y0}" width="{w:.1f}" height="{row_h - 5}" fill="{COLOURS[lane]}">'
                                 f'<title>{escape(str(name))}: {int(r[lane]):,} {lane}</title></rect>')
                x0 += w
            parts.append(f'<text x="{x0 + 4:.1f}" y="{y0 + 13}">{int(r["total"]):,}</text>')
        return "".join(parts) + "</svg>"
    width, height, left, bottom = 760, 220, 44, 34
    plot_w, plot_h = width - left - 10, height - bottom - 10
    bar_w = plot_w / max(len(table), 1)
    every = max(1, math.ceil(len(table) / 8))
    parts = [f'<svg id="{svg_id}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(label)}"><text x="{left - 6}" y="18" text-anchor="end">{peak:,}</text>'
             f'<line x1="{left}" x2="{width - 10}" y1="{10 + plot_h}" y2="{10 + plot_h}" stroke="#55606c"/>']
    for i, (name, r) in enumerate(table.iterrows()):
        x0, base = left + i * bar_w, 10 + plot_h
        for lane in LANES:
            h = plot_h * r[lane] / peak
            if h:
                base -= h
                parts.append(f'<rect x="{x0:.1f}" y="{base:.1f}" width="{max(bar_w - 1, 0.5):.1f}" height="{h:.1f}" '
                             f'fill="{COLOURS[lane]}"><title>{escape(str(name))}: {int(r[lane]):,} {lane}</title></rect>')
        if i % every == 0:
            parts.append(f'<text x="{x0 + bar_w / 2:.1f}" y="{height - 14}" text-anchor="middle">{escape(str(name))}</text>')
    return "".join(parts) + "</svg>"


def contributions_svg(features: pd.DataFrame) -> str:
    """The strongest contributions as diverging bars: right raises the risk, left lowers it."""
    row_h, label_w, width = 20, 250, 720
    peak = max(float(features["contribution"].abs().max()), 1e-9) if len(features) else 1.0
    mid, half = label_w + (width - label_w) / 2, (width - label_w) / 2 - 50
    parts = [f'<svg id="contributions-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{row_h * len(features) + 10}" role="img" aria-label="feature contributions">'
             f'<line x1="{mid}" x2="{mid}" y1="0" y2="{row_h * len(features) + 10}" stroke="#55606c"/>']
    for i, r in enumerate(features.itertuples()):
        y0, w = 4 + i * row_h, half * abs(r.contribution) / peak
        x0 = mid if r.contribution >= 0 else mid - w
        colour = COLOURS[RED] if r.contribution >= 0 else COLOURS[GREEN]
        parts.append(f'<text x="{label_w - 6}" y="{y0 + 13}" text-anchor="end">{escape(r.feature)}</text>'
                     f'<rect x="{x0:.1f}" y="{y0}" width="{max(w, 0.5):.1f}" height="{row_h - 6}" fill="{colour}">'
                     f'<title>{escape(r.feature)}: {r.contribution:+.4f}</title></rect>'
                     f'<text x="{(x0 + w + 4) if r.contribution >= 0 else (x0 - 4):.1f}" y="{y0 + 13}" '
                     f'text-anchor="{"start" if r.contribution >= 0 else "end"}">{r.contribution:+.3f}</text>')
    return "".join(parts) + "</svg>"


def lookup_form(value: str = "") -> str:
    return (f'<form method="get" action="/ui/declaration"><label for="id"><b>Declaration</b></label>'
            f'<input type="text" id="id" name="id" value="{escape(value)}" maxlength="{MAX_ID_LENGTH}" required '
            f'placeholder="declaration id"><button type="submit">Look up</button></form>')


def page(title: str, body: str, champion: str | None, status: int = 200, headers: dict | None = None) -> HTMLResponse:
    html = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head><body>'
            f'<header><h1><a href="/ui" style="color:inherit;text-decoration:none">Aduana: risk analysts</a></h1>'
            f'<span>champion customs-risk {escape("v" + champion) if champion else "(none loaded)"}</span>'
            f'<span><a href="/docs" style="color:#cfe3ff">API docs</a></span></header><main>{body}</main></body></html>')
    return HTMLResponse(html, status_code=status, headers={**HEADERS, **(headers or {})})


def batch_section(batch: BatchView | None) -> str:
    if batch is None:
        return ('<section id="batch"><h2>Latest scoring batch</h2><p class="empty">No scoring batch yet: run '
                '<code>aduana score FILE --out OUT.csv</code> (or <code>aduana demo</code>). Real-time answers of '
                '<code>/v1/score</code> are not a batch.</p></section>')
    total = sum(batch.lanes.values())
    lanes = " ".join(f"{_lane(lane)} {_n(batch.lanes[lane])} ({batch.lanes[lane] / total:.1%})" for lane in LANES)
    cut = ("; ".join(f"{lane}: from risk {value:.4f}" for lane, value in batch.cut_offs.items())
           or "none known (no model selection in this batch, or lanes ranked by expected revenue)")
    missing = (f'<p class="note">{_n(batch.not_stored)} scored declarations are not in the warehouse (ingest their '
               f'file to see their office and day).</p>' if batch.not_stored else "")
    office_rows = [[escape(str(o)), *(_n(r[lane]) for lane in LANES), _n(r["total"]), f"{r[RED] / r['total']:.1%}"]
                   for o, r in batch.by_office.iterrows()]
    day_rows = [[escape(str(d)), *(_n(r[lane]) for lane in LANES), _n(r["total"])] for d, r in batch.by_day.iterrows()]
    return (f'<section id="batch"><h2>Latest scoring batch</h2>'
            f'<p>Batch <code>{escape(batch.batch_id)}</code>, decided {_when(batch.decided_at)} by model '
            f'{escape(", ".join("v" + v for v in batch.model_versions) or "?")}: {_n(total)} declarations. {lanes}</p>'
            f'{missing}<h3>Score distribution</h3>{histogram_svg(batch.edges, batch.counts, batch.cut_offs)}'
            f'<p class="note">Lane cut-offs (the lowest score the model put in each lane): {cut}. Red below the '
            f'cut-off is the random exploration draw or a rule hit.</p>'
            f'<h3>Lanes by office</h3><div class="grid"><div>'
            f'{_table(["office", "red", "yellow", "green", "total", "red share"], office_rows, {1, 2, 3, 4, 5})}'
            f'</div>{stacked_bars_svg(batch.by_office.head(MAX_BARS), "lanes-by-office", "lanes by office", True)}</div>'
            f'<h3>Lanes by day</h3>{stacked_bars_svg(batch.by_day, "lanes-by-day", "lanes by filing day", False)}'
            f'<details><summary>Lanes by day as a table ({len(batch.by_day)} days)</summary>'
            f'{_table(["day", "red", "yellow", "green", "total"], day_rows, {1, 2, 3, 4})}</details></section>')


def _more(shown: int, total: int) -> str:
    return f'<p class="note">…and {total - shown:,} more rows.</p>' if total > shown else ""


def audit_section(audit: pd.DataFrame) -> str:
    if audit.empty:
        return ('<section id="audit"><h2>Post-clearance audit list</h2><p class="empty">No audit list yet: run '
                '<code>aduana audit</code>.</p></section>')
    first = audit.iloc[0]
    rows = [[_n(r.rank), escape(str(r.importer_id)), _score(r.audit_priority, 0), _score(r.expected_unrecovered, 0),
             escape(str(r.reasons or ""))] for r in audit.head(MAX_LIST_ROWS).itertuples()]
    return (f'<section id="audit"><h2>Post-clearance audit list</h2><p>List <code>{escape(str(first.list_id))}</code> '
            f'for {escape(str(first.period))}, selected {_when(first.selected_at)}: {len(audit)} enterprises '
            f'(capacity {_n(first.capacity)}).</p>'
            f'{_table(["rank", "importer", "priority", "expected unrecovered", "reasons"], rows, {0, 2, 3})}'
            f'{_more(len(rows), len(audit))}</section>')


ENTITY_ORDER = ("importer", "declarant", "exporter")  # enterprises first, then goods and lanes


def ratings_section(ratings: pd.DataFrame) -> str:
    if ratings.empty:
        return ('<section id="ratings"><h2>Risk ratings</h2><p class="empty">No ratings yet: run '
                '<code>aduana ratings</code> (or <code>aduana audit</code>, which rates the enterprises too).'
                '</p></section>')
    parts = ['<section id="ratings"><h2>Risk ratings</h2>']
    entities = sorted(ratings["entity"].unique(), key=lambda e: (ENTITY_ORDER.index(e) if e in ENTITY_ORDER else 9, e))
    for entity in entities:
        rated = ratings[ratings["entity"] == entity]
        first = rated.iloc[0]
        beside = (f", with audit list <code>{escape(str(first.audit_list_id))}</code>"
                  if isinstance(first.audit_list_id, str) else "")
        rows = [[_n(r.rank), escape(str(r.entity_key)), escape(str(r.band)),
                 f"{r.hit_rate:.1%} ({r.interval_low:.1%}–{r.interval_high:.1%})", _n(r.controls), _n(r.hits),
                 _n(r.volume)] for r in rated.head(MAX_LIST_ROWS).itertuples()]
        parts.append(f'<h3>{escape(entity)}</h3><p class="note">List <code>{escape(str(first.list_id))}</code>, rated '
                     f'{_when(first.rated_at)} (at least {_n(first.min_controls)} controls){beside}.</p>'
                     + _table(["rank", escape(str(first.key_columns)), "band", "hit rate (90% interval)", "controls",
                               "frauds", "declarations"], rows, {0, 4, 5, 6}) + _more(len(rows), len(rated)))
    return "".join(parts) + "</section>"


def decision_section(decision: dict, decisions: int) -> str:
    reasons = decision.get("reason_list")
    if reasons is None:  # logged before the reasons were kept as a list: the sentence is all there is
        reasons = [r for r in str(decision.get("reasons") or "").split("; ") if r]
    listed = "".join(f"<li>{escape(r)}</li>" for r in reasons) or '<li class="empty">none (a green release)</li>'
    where = (f"real-time answer (request <code>{escape(str(decision['request_id']))}</code>)"
             if isinstance(decision.get("request_id"), str) else f"scoring batch <code>{escape(str(decision['batch_id']))}</code>")
    rows = [["lane", _lane(str(decision["lane"]))], ["risk score", _score(decision.get("risk_score"))],
            ["expected revenue", _score(decision.get("expected_revenue"), 2) or "(no revenue model)"],
            ["selected by", escape(str(decision.get("selected_by") or "")) or "(none: released)"],
            ["model version", escape(str(decision.get("model_version") or ""))],
            ["decided", f"{_when(decision.get('decided_at'))} in a {where}"]]
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    again = f'<p class="note">Decided {decisions} times: the latest is shown.</p>' if decisions > 1 else ""
    return (f'<section id="decision"><h2>Latest decision for <code>{escape(str(decision["declaration_id"]))}</code></h2>'
            f'<table>{body}</table>{again}<h3>Reasons</h3><ol id="reasons">{listed}</ol></section>')


def contributions_section(found: Contributions | None, decision: dict, unavailable: str | None) -> str:
    if found is None:
        return f'<section id="contributions"><h2>Feature contributions</h2><p class="empty">{unavailable}</p></section>'
    top = found.features.head(TOP_CONTRIBUTIONS)
    rows = [[escape(r.feature), escape(r.family), escape(_value(r.value)), f"{r.contribution:+.4f}"]
            for r in top.itertuples()]
    families = [[escape(r.family), f"{r.contribution:+.4f}"] for r in found.families.itertuples()]  # every one
    notes = []
    if found.stored:
        shown = float(found.features["contribution"].sum())
        rest = (f" The other features add {_logit(found.risk_score) - found.base - shown:+.4f}."
                if math.isfinite(found.base) and 0 < found.risk_score < 1 else "")
        intro = (f'<p id="contributions-source" data-source="stored">Stored with the decision: the SHAP values '
                 f'customs-risk v{escape(str(found.model_version))} gave when it decided, in log-odds, for its '
                 f'{len(found.features)} strongest features. The base {found.base:+.4f} plus every feature\'s '
                 f'contribution gives logit(risk), risk {found.risk_score:.4f}.{rest} Positive raises the risk.</p>')
    else:
        why = ("a green release is not explained when it is decided" if decision.get("lane") == GREEN else
               "it was logged before decisions kept their contributions")
        intro = (f'<p id="contributions-source" data-source="recomputed">Recomputed now: this decision has no stored '
                 f'contributions ({why}), so these are the SHAP values of today\'s champion, customs-risk '
                 f'v{escape(str(found.model_version))}, in log-odds, for the declaration as the warehouse stores it: the '
                 f'base {found.base:+.4f} plus every contribution gives logit(risk), risk {found.risk_score:.4f}. '
                 f'Positive raises the risk.</p>')
        if str(decision.get("model_version")) != str(found.model_version):
            notes.append(f"The decision was made by v{escape(str(decision.get('model_version')))}; these "
                         f"contributions are the current champion's (v{escape(str(found.model_version))}).")
        stored = decision.get("risk_score")
        if stored is not None and not pd.isna(stored) and abs(float(stored) - found.risk_score) > 1e-6:
            notes.append(f"Recomputed now, the score is {found.risk_score:.4f} (decided: {float(stored):.4f}): the "
                         "warehouse's history or the champion has changed since.")
    family_title = ("By family, of the stored features" if found.stored else "By family (as the reasons group them)")
    return (f'<section id="contributions"><h2>Feature contributions</h2>{intro}'
            + "".join(f'<p class="note">{n}</p>' for n in notes)
            + f'{contributions_svg(top)}<div class="grid"><div><h3>Strongest features</h3>'
            f'{_table(["feature", "family", "value", "contribution"], rows, {3})}</div>'
            f'<div><h3>{family_title}</h3>{_table(["family", "contribution"], families, {1})}'
            f'</div></div></section>')


def _value(value: object) -> str:
    shown = feature_value_text(value)
    return "(missing)" if shown is None else shown


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


# ---------------------------------------------------------------- routes

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
                    '</p></section>', None, status=401)

    @app.get("/ui", include_in_schema=False)
    def overview(request: Request) -> Response:
        if (answer := refused(request)) is not None:
            return answer
        data = snapshot.get()
        if data is None:
            return page("Warehouse busy", '<section class="warn"><h2>The warehouse cannot be read yet</h2><p>Another '
                        'process is writing it. This page retries on reload.</p></section>', champion(), status=503,
                        headers={"Retry-After": str(RETRY_AFTER_S)})
        stale = (f'<section class="warn">The warehouse is busy (another process is writing it): showing what was read '
                 f'at {_when(data.read_at)}.</section>' if snapshot.error else "")
        body = (f'<section>{lookup_form()}</section>{stale}{batch_section(data.batch)}{audit_section(data.audit)}'
                f'{ratings_section(data.ratings)}<p class="note">Read from the warehouse at {_when(data.read_at)}.</p>')
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
            return page("Warehouse busy", f'<section>{lookup_form(wanted)}</section><section class="warn"><h2>The '
                        'warehouse is busy</h2><p>Another process is writing it: retry in a few seconds.</p></section>',
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
                    unavailable = "Unavailable for now: the warehouse is busy (another process is writing it)."
        body = (f'<section>{lookup_form(wanted)}</section>{decision_section(decision, decisions)}'
                f'{contributions_section(found, decision, unavailable)}')
        return page(f"Declaration {wanted}", body, champion())

    return snapshot

