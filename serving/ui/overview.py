"""The overview's sections (`GET /ui`): the latest scoring batch (its red declarations listed, each a link to its
page), the latest post-clearance audit list and the latest risk ratings, each saying what to run when there is
none. Importers and rated entities are listed as text: only declarations have a page."""
from __future__ import annotations

from html import escape

import pandas as pd

from features.entities import NAMES
from serving.selection import RED
from serving.targeting import SOURCE_WORDS
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
            f'{compliance_section(batch.compliance)}'
            f'{lanes_by_office_and_day(batch, total)}{red_list(batch.red)}</section>')


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def compliance_section(compliance: dict | None) -> str:
    """The estimate of fraud among all the batch's declarations, released ones included, in an officer's words."""
    head = '<h3 id="compliance">Fraud among all declarations of this batch, released ones included</h3>'
    rate = (compliance or {}).get("fraud_rate")
    if not rate or rate["estimate"] is None:
        why = escape(rate["method"]) if rate else "no declaration of the batch has an inclusion probability"
        return (f'{head}<p class="empty">No estimate yet: {why}. It needs the outcomes of the controls of this '
                'batch\'s random draws (<code>aduana ingest OUTCOMES --kind outcomes</code>).</p>')
    level = f"{compliance['level']:.0%}"
    revenue = compliance.get("revenue_at_stake") or {}
    said = (f' Revenue at stake among them: about {revenue["estimate"]:,.0f}.' if revenue.get("estimate") is not None
            else "")
    rows = [[escape(group), escape(str(key)), _pct(v["estimate"]), f'{_pct(v["ci_low"])}–{_pct(v["ci_high"])}',
             count_text(v["population"])]
            for group, found in compliance["groups"].items() for key, v in list(found.items())[:MAX_BARS]]
    return (f'{head}<p>About <strong>{_pct(rate["estimate"])}</strong> of the batch\'s '
            f'{count_text(rate["population"])} declarations are fraudulent ({level} interval {_pct(rate["ci_low"])}–'
            f'{_pct(rate["ci_high"])}): estimated from {count_text(rate["observed"])} controlled declarations, each '
            f'weighted by its chance of being selected; {count_text(rate["sampled"])} of them were drawn at '
            f'random, which is what lets the estimate speak for the released goods.{said}</p>'
            + (f'<details><summary>By HS chapter, office and importer size</summary>'
               f'{table(["by", "group", "estimate", f"{level} interval", "declarations"], rows, {4})}</details>'
               if rows else ""))


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
             _selected_by(r.selected_by, getattr(r, "stratum", None)), _chance(getattr(r, "inclusion_probability", None)),
             escape(str(r.office)), "" if r.day == NOT_STORED else escape(str(r.day))]
            for r in red.head(MAX_LIST_ROWS).itertuples()]
    return (f'<h3>Red declarations ({count_text(len(red))}, highest risk first)</h3><div id="red-declarations">'
            f'{table(["declaration", "risk score", "selected by", "chance of selection", "office", "filing day"], rows, {1, 3})}'
            f'{more_rows(len(rows), len(red), "red declarations")}</div>')


def _selected_by(selected_by: object, stratum: object) -> str:
    """Who put a declaration red, and for an exploration pick how: the random draw or the targeted source."""
    if pd.isna(selected_by):
        return ""
    if selected_by == "exploration" and isinstance(stratum, str) and stratum:
        return escape(f"exploration: {SOURCE_WORDS.get(stratum, stratum)}")
    return escape(str(selected_by))


def _chance(probability: float | None) -> str:
    """A selection's inclusion probability as an officer reads it: certain (rule or model), or 1 in N."""
    if probability is None or pd.isna(probability):
        return ""
    return "certain" if probability >= 1 else f"1 in {1 / probability:,.0f}" if probability > 0 else "0"


def more_rows(shown: int, total: int, what: str = "rows") -> str:
    return f'<p class="note">…and {total - shown:,} more {what}.</p>' if total > shown else ""


def audit_section(audit: pd.DataFrame, findings: dict | None = None) -> str:
    if audit.empty:
        return ('<section id="audit"><h2>Post-clearance audit list</h2><p class="empty">No audit list yet: run '
                '<code>aduana audit</code>.</p></section>')
    first = audit.iloc[0]
    audit = audit.reindex(columns=[*audit.columns, *{"selected_by", "inclusion_probability"} - set(audit.columns)])
    rows = [[count_text(r.rank), escape(str(r.importer_id)), _audit_how(r.selected_by, r.inclusion_probability),
             score_text(r.audit_priority, 0), score_text(r.expected_unrecovered, 0), escape(str(r.reasons or ""))]
            for r in audit.head(MAX_LIST_ROWS).itertuples()]
    drawn = int((audit["selected_by"] == "random").sum())
    return (f'<section id="audit"><h2>Post-clearance audit list</h2><p>List <code>{escape(str(first.list_id))}</code> '
            f'for {escape(str(first.period))}, selected {when_text(first.selected_at)}: {len(audit)} enterprises '
            f'(capacity {count_text(first.capacity)}), {drawn} of them drawn at random from those the ranking left '
            f'out, so that their findings measure compliance in released goods.</p>'
            f'{_findings(findings)}'
            f'{table(["rank", "importer", "selected by", "priority", "expected unrecovered", "reasons"], rows, {0, 3, 4})}'
            f'{more_rows(len(rows), len(audit))}</section>')


def _findings(found: dict | None) -> str:
    """What the random audits' findings say of fraud in the released goods the rankings leave out, in words."""
    if not found or not found["fraud_rate"]:
        return ('<p id="audit-findings" class="note">No findings reported yet on the enterprises drawn at random: '
                'once their audits report (<code>aduana ingest FILE --kind outcomes</code>), this estimates the '
                'fraud in released goods.</p>')
    rate, level = found["fraud_rate"], 100 * found["level"]
    interval = (f" ({level:.0f} % interval {rate['ci_low']:.1%} to {rate['ci_high']:.1%})"
                if rate["ci_low"] is not None else " (no interval before two drawn enterprises have reported)")
    return (f'<p id="audit-findings">From the findings of {found["random_audited"]} enterprises drawn at random '
            f'({found["examined"]:,} declarations examined, {found["frauds_found"]:,} frauds), about '
            f'<strong>{rate["estimate"]:.1%}</strong>{interval} of the {found["released_outside_priority"]:,} '
            f'declarations released outside the audit rankings are fraudulent: some '
            f'{rate["released_total"]:,.0f} declarations nobody selected.</p>')


def _audit_how(kind: object, probability: float | None) -> str:
    """How an enterprise came onto the audit list, in words (a list stored before the random share: ranked)."""
    return f"random draw ({_chance(probability)})" if kind == "random" else "priority"


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
