"""customs-audit: the post-clearance audit list for a period, and the entity risk ratings.

Both are kept in the warehouse as published (append-only): the audit list in `audit_lists`, each ratings list in
`ratings` (`aduana ratings`, and the enterprise ratings the audit flow computes beside its list)."""
from __future__ import annotations

import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from serving.audit import audit_candidates, entity_ratings, latest_complete_month

from features.errors import UserError
from flows.orchestration import runtime
from flows.orchestration.runtime import Runtime, progress
from flows.render import ratings_markdown

RATED = {"importer": ["importer_id"], "declarant": ["declarant_id"], "hs_heading": ["hs_heading"],
         "lane": ["origin_country", "office_id"]}  # entity → the columns that identify it
ENTERPRISES = ("importer", "declarant")  # rated by the audit flow beside each audit list
RATINGS_TOP, RATINGS_MIN_CONTROLS = 20, 5  # `aduana ratings`' defaults


def parse_period(period: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """'2024-10-01:2024-12-31', or a month '2024-11', or a year '2024'."""
    try:
        if ":" in period:
            start, end = (pd.Timestamp(p) for p in period.split(":", 1))
        else:
            p = pd.Period(period)
            start, end = p.start_time.normalize(), p.end_time.normalize()
    except ValueError as exc:
        raise UserError(f"--period {period!r}: use START:END dates, a month (2024-11) or a year (2024)") from exc
    if end < start:
        raise UserError(f"--period {period!r}: the end is before the start")
    return start, end


@task(name="select_audits", cache_policy=NO_CACHE)
def select_audits(rt: Runtime, period: str, capacity: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    start, end = parse_period(period)
    warehouse = rt.warehouse
    released = warehouse.decisions.released(start, end)
    selected, evidence = audit_candidates(released, warehouse.table("traders"), warehouse.control_history(), capacity)
    progress(f"{len(released):,} released declarations in {start.date()}…{end.date()}; {len(selected)} enterprises selected")
    return selected, evidence


@flow(name="customs-audit")
def customs_audit(period: str | None = None, capacity: int = 20) -> dict:
    """Rank enterprises for post-clearance audit within the audit capacity (default period: the latest complete
    month of the warehouse's declarations, so a schedule follows the data, not the wall clock)."""
    rt = runtime.current()
    if period is None:
        newest = rt.warehouse.newest_declaration_date()
        if newest is None:
            raise UserError("the warehouse holds no declarations: run 'aduana ingest' first")
        period = latest_complete_month(newest)
        progress(f"audit period {period}: the latest complete month of the declarations (newest {newest.date()})")
    selected, evidence = select_audits(rt, period, capacity)
    list_id = rt.warehouse.audits.record(selected, period, capacity) if len(selected) else None
    if len(selected):
        create_table_artifact(key="customs-audit-list", table=selected.round(4).astype(str).to_dict("records"),
                              description=f"Post-clearance audit list for {period}")
    history, rated = declaration_history(rt), {}
    for entity in ENTERPRISES if len(history) else ():  # the enterprises' ratings beside the list they explain
        table = rate_entities(history, entity, RATINGS_MIN_CONTROLS).head(RATINGS_TOP)
        rated[entity] = record_ratings(rt, entity, table, RATINGS_MIN_CONTROLS, list_id)
    return {"period": period, "capacity": capacity, "list_id": list_id, "selected": selected.to_dict("records"),
            "evidence": evidence.to_dict("records"), "ratings": rated}


def declaration_history(rt: Runtime) -> pd.DataFrame:
    """Every stored declaration with its HS heading: what the ratings count controls and frauds in."""
    history = rt.warehouse.table("declarations")
    return history.assign(hs_heading=history["hs_code"].str[:4])


def rate_entities(history: pd.DataFrame, entity: str, min_controls: int = 0) -> pd.DataFrame:
    """One entity kind's ratings, best first, its key columns as columns."""
    return entity_ratings(history, RATED[entity], min_controls).reset_index()


@task(name="record_ratings", cache_policy=NO_CACHE)
def record_ratings(rt: Runtime, entity: str, rated: pd.DataFrame, min_controls: int,
                   audit_list_id: str | None = None) -> str | None:
    """Keep a ratings list in the warehouse (append-only); returns its id (None when it has no rows)."""
    list_id = rt.warehouse.ratings.record(rated, entity, RATED[entity], min_controls, audit_list_id)
    progress(f"{entity} ratings: {len(rated)} kept in the warehouse as {list_id}" if list_id else
             f"{entity} ratings: none with at least {min_controls} controls, nothing stored")
    return list_id


@flow(name="customs-ratings")
def customs_ratings(entity: str = "importer", top: int = RATINGS_TOP, min_controls: int = RATINGS_MIN_CONTROLS
                    ) -> list[dict]:
    """Risk ratings of goods, enterprises and trade lanes, kept in the warehouse and published as a Prefect
    artifact."""
    rt = runtime.current()
    table = rate_entities(declaration_history(rt), entity, min_controls).head(top)
    record_ratings(rt, entity, table, min_controls)
    create_markdown_artifact(key=f"customs-ratings-{entity.replace('_', '-')}",
                             markdown=ratings_markdown(table.to_dict("records"), RATED[entity]),
                             description=f"{entity} risk ratings")
    return table.to_dict("records")
