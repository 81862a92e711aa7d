"""The overview's sections (`GET /ui`): the latest scoring batch (its red declarations listed, each a link to its
page), the latest post-clearance audit list and the latest risk ratings, each saying what to run when there is
none. Importers and rated entities are listed as text: only declarations have a page."""
from __future__ import annotations

from html import escape

import pandas as pd

from features.entities import NAMES
from serving.selection import RED
from serving.ui.charts import histogram_svg, stacked_bars_svg
from serving.ui.layout import count_text, declaration_link, lane_badge, score_text, table, when_text
from serving.ui.page_data import LANES, NOT_STORED, BatchView

MAX_BARS = 30  # offices drawn as bars (the busiest); the table lists them all
MAX_LIST_ROWS = 100  # rows of a red, audit or ratings list shown (the rest are counted)


def batch_section(batch: BatchView | None) -> str:
    if batch is None:
        return ('<section id="batch"><h2>Latest scoring batch</h2><p class="empty">No scoring batch yet: run '
                '<code>aduana score FILE --out OUT.csv</code> (or <code>aduana demo</code>). Real-time answers of '
                '<code>/v1/score</code> are not a batch.</p></section>')
    total = sum(batch.lanes.values())
    lanes = " ".join(f"{lane_badge(lane)} {count_text(batch.lanes[lane])} ({batch.lanes[lane] / total:.1%})"
                     for lane in LANES)
    cut = ("; ".join(f"{lane}: from risk {value:.4f}" for lane, value in batch.cut_offs.items())
           or "none known (no model selection in this batch, or lanes ranked by expected revenue)")
    return (f'<section id="batch"><h2>Latest scoring batch</h2>'
            f'<p>Batch <code>{escape(batch.batch_id)}</code>, decided {when_text(batch.decided_at)} by model '
            f'{escape(", ".join("v" + v for v in batch.model_versions) or "?")}: {count_text(total)} declarations. '
            f'{lanes}</p>'
            f'<h3>Score distribution</h3>{histogram_svg(batch.edges, batch.counts, batch.cut_offs)}'
            f'<p class="note">Lane cut-offs (the lowest score the model put in each lane): {cut}. Red below the '
            f'cut-off is the random exploration draw or a rule hit.</p>'
            f'{lanes_by_office_and_day(batch, total)}{red_list(batch.red)}</section>')


def lanes_by_office_and_day(batch: BatchView, total: int) -> str:
    """The lanes by office and by filing day, over the declarations the warehouse holds (the others have none)."""
    held = total - batch.not_stored
    if not held:
        return (f'<h3>Lanes by office and by day</h3><p class="empty" id="not-stored">None of the batch\'s '
                f'{count_text(total)} declarations is in the warehouse, so their offices and filing days are '
                f'unknown: ingest their file (<code>aduana ingest FILE</code>) to see them here.</p>')
    missing = (f'<p class="note" id="not-stored">{count_text(batch.not_stored)} of the batch\'s {count_text(total)} '
               f'declarations are not in the warehouse, so their office and filing day are unknown: the lanes by '
               f'office and by day cover the other {count_text(held)} (ingest their file, <code>aduana ingest '
               f'FILE</code>, to see them).</p>' if batch.not_stored else "")
    office_rows = [[escape(str(o)), *(count_text(r[lane]) for lane in LANES), count_text(r["total"]),
                    f"{r[RED] / r['total']:.1%}"] for o, r in batch.by_office.iterrows()]
    day_rows = [[escape(str(d)), *(count_text(r[lane]) for lane in LANES), count_text(r["total"])]
                for d, r in batch.by_day.iterrows()]
    return (f'<h3>Lanes by office</h3>{missing}<div class="grid"><div>'
            f'{table(["office", "red", "yellow", "green", "total", "red share"], office_rows, {1, 2, 3, 4, 5})}'
            f'</div>{stacked_bars_svg(batch.by_office.head(MAX_BARS), "lanes-by-office", "lanes by office", True)}'
            f'</div><h3>Lanes by day</h3>{stacked_bars_svg(batch.by_day, "lanes-by-day", "lanes by filing day", False)}'
            f'<details><summary>Lanes by day as a table ({len(batch.by_day)} days)</summary>'
            f'{table(["day", "red", "yellow", "green", "total"], day_rows, {1, 2, 3, 4})}</details>')


def red_list(red: pd.DataFrame) -> str:
    """The batch's red declarations, highest risk first, each a link to its page."""
    if red.empty:
        return '<h3>Red declarations</h3><p class="empty" id="red-declarations">None in this batch.</p>'
    rows = [[declaration_link(str(r.declaration_id)), score_text(r.risk_score),
             "" if pd.isna(r.selected_by) else escape(str(r.selected_by)), escape(str(r.office)),
             "" if r.day == NOT_STORED else escape(str(r.day))] for r in red.head(MAX_LIST_ROWS).itertuples()]
    return (f'<h3>Red declarations ({count_text(len(red))}, highest risk first)</h3><div id="red-declarations">'
            f'{table(["declaration", "risk score", "selected by", "office", "filing day"], rows, {1})}'
            f'{more_rows(len(rows), len(red), "red declarations")}</div>')


def more_rows(shown: int, total: int, what: str = "rows") -> str:
    return f'<p class="note">…and {total - shown:,} more {what}.</p>' if total > shown else ""


def audit_section(audit: pd.DataFrame) -> str:
    if audit.empty:
        return ('<section id="audit"><h2>Post-clearance audit list</h2><p class="empty">No audit list yet: run '
                '<code>aduana audit</code>.</p></section>')
    first = audit.iloc[0]
    rows = [[count_text(r.rank), escape(str(r.importer_id)), score_text(r.audit_priority, 0),
             score_text(r.expected_unrecovered, 0), escape(str(r.reasons or ""))]
            for r in audit.head(MAX_LIST_ROWS).itertuples()]
    return (f'<section id="audit"><h2>Post-clearance audit list</h2><p>List <code>{escape(str(first.list_id))}</code> '
            f'for {escape(str(first.period))}, selected {when_text(first.selected_at)}: {len(audit)} enterprises '
            f'(capacity {count_text(first.capacity)}).</p>'
            f'{table(["rank", "importer", "priority", "expected unrecovered", "reasons"], rows, {0, 2, 3})}'
            f'{more_rows(len(rows), len(audit))}</section>')


def entity_order(entity: str) -> tuple[int, str]:
    """Ratings in the entity table's order (features/entities.py: enterprises first, then goods and lanes); an
    entity it does not name (rated by an older or newer version) after those, by name."""
    return (NAMES.index(entity) if entity in NAMES else len(NAMES), entity)


def ratings_section(ratings: pd.DataFrame) -> str:
    if ratings.empty:
        return ('<section id="ratings"><h2>Risk ratings</h2><p class="empty">No ratings yet: run '
                '<code>aduana ratings</code> (or <code>aduana audit</code>, which rates the enterprises too).'
                '</p></section>')
    parts = ['<section id="ratings"><h2>Risk ratings</h2>']
    for entity in sorted(ratings["entity"].unique(), key=entity_order):
        rated = ratings[ratings["entity"] == entity]
        first = rated.iloc[0]
        beside = (f", with audit list <code>{escape(str(first.audit_list_id))}</code>"
                  if isinstance(first.audit_list_id, str) else "")
        rows = [[count_text(r.rank), escape(str(r.entity_key)), escape(str(r.band)),
                 f"{r.hit_rate:.1%} ({r.interval_low:.1%}–{r.interval_high:.1%})", count_text(r.controls),
                 count_text(r.hits), count_text(r.volume)] for r in rated.head(MAX_LIST_ROWS).itertuples()]
        parts.append(f'<h3>{escape(entity)}</h3><p class="note">List <code>{escape(str(first.list_id))}</code>, rated '
                     f'{when_text(first.rated_at)} (at least {count_text(first.min_controls)} controls){beside}.</p>'
                     + table(["rank", escape(str(first.key_columns)), "band", "hit rate (90% interval)", "controls",
                              "frauds", "declarations"], rows, {0, 4, 5, 6}) + more_rows(len(rows), len(rated)))
    return "".join(parts) + "</section>"
