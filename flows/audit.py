"""customs-audit: the post-clearance audit list for a period, and the entity risk ratings."""
from __future__ import annotations

import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from features.errors import UserError
from flows import runtime
from flows.render import ratings_markdown
from flows.runtime import Runtime, progress
from serving.audit import audit_candidates, entity_ratings, latest_complete_month

RATED = {"importer": ["importer_id"], "declarant": ["declarant_id"], "hs_heading": ["hs_heading"],
         "lane": ["origin_country", "office_id"]}  # entity → the columns that identify it


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
    return {"period": period, "capacity": capacity, "list_id": list_id, "selected": selected.to_dict("records"),
            "evidence": evidence.to_dict("records")}


def ratings_table(rt: Runtime, entity: str, min_controls: int = 0) -> pd.DataFrame:
    history = rt.warehouse.table("declarations")
    history = history.assign(hs_heading=history["hs_code"].str[:4])
    return entity_ratings(history, RATED[entity], min_controls)


@flow(name="customs-ratings")
def customs_ratings(entity: str = "importer", top: int = 20, min_controls: int = 5) -> list[dict]:
    """Risk ratings of goods, enterprises and trade lanes, published as a Prefect artifact."""
    table = ratings_table(runtime.current(), entity, min_controls).head(top).reset_index()
    create_markdown_artifact(key=f"customs-ratings-{entity.replace('_', '-')}",
                             markdown=ratings_markdown(table.to_dict("records"), RATED[entity]),
                             description=f"{entity} risk ratings")
    return table.to_dict("records")
