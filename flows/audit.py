"""customs-audit: the post-clearance audit list for a period, and the entity risk ratings.

Both are kept in the warehouse as published (append-only): the audit list in `audit_lists`, each ratings list in
`ratings` (`aduana ratings`, and the enterprise ratings the audit flow computes beside its list)."""
from __future__ import annotations

import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from features.entities import BY_NAME, ENTERPRISES
from features.errors import UserError
from flows.orchestration import runtime
from flows.orchestration.runtime import Runtime, progress
from flows.render import ratings_markdown
from serving.entity_ratings import counted_columns, rate_counts
from serving.periods import latest_complete_month, parse_period
from serving.post_clearance import audit_candidates, audit_findings

RATINGS_TOP, RATINGS_MIN_CONTROLS = 20, 5  # `aduana ratings`' defaults, and the audit flow's enterprise ratings


@task(name="select_audits", cache_policy=NO_CACHE)
def select_audits(rt: Runtime, period: str, capacity: int, random_share: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    start, end = (pd.Timestamp(day) for day in parse_period(period))
    warehouse = rt.warehouse
    rt.sync_decisions()  # every answer given, even those the API has not copied yet
    released = warehouse.decisions.released(start, end)
    selected, evidence = audit_candidates(released, warehouse.table("traders"), warehouse.entity_counts(["importer_id"]),
                                         capacity, random_share, seed=period)
    drawn = int((selected["selected_by"] == "random").sum()) if len(selected) else 0
    progress(f"{len(released):,} released declarations in {start.date()}…{end.date()}; {len(selected)} enterprises "
             f"selected ({drawn} drawn at random)")
    return selected, evidence


@flow(name="customs-audit")
def customs_audit(period: str | None = None, capacity: int = 20, random_share: float | None = None) -> dict:
    """Rank enterprises for post-clearance audit within the audit capacity (default period: the latest complete
    month of the warehouse's declarations, so a schedule follows the data, not the wall clock), `random_share` of it
    drawn at random from the rest (default: the audit_random_share setting)."""
    rt = runtime.current()
    if random_share is None:
        random_share = rt.settings.audit_random_share
    if not 0 <= random_share <= 1:
        raise UserError(f"random_share must be between 0 and 1, not {random_share}")
    if period is None:
        newest = rt.warehouse.newest_declaration_date()
        if newest is None:
            raise UserError("the warehouse holds no declarations: run 'aduana ingest' first")
        period = latest_complete_month(newest)
        progress(f"audit period {period}: the latest complete month of the declarations (newest {newest.date()})")
    selected, evidence = select_audits(rt, period, capacity, random_share)
    list_id = rt.warehouse.audits.record(selected, period, capacity) if len(selected) else None
    compliance = released_findings(rt)
    if len(selected):
        create_table_artifact(key="customs-audit-list", table=selected.round(4).astype(str).to_dict("records"),
                              description=f"Post-clearance audit list for {period}")
    rated = {}
    for entity in ENTERPRISES if rt.warehouse.counts()["declarations"] else ():  # beside the list they explain
        table = rated_entities(rt, entity, RATINGS_MIN_CONTROLS).head(RATINGS_TOP)
        rated[entity] = record_ratings(rt, entity, table, RATINGS_MIN_CONTROLS, list_id)
    return {"period": period, "capacity": capacity, "random_share": random_share, "list_id": list_id,
            "released_compliance": compliance, "selected": selected.to_dict("records"),
            "evidence": evidence.to_dict("records"), "ratings": rated}


@task(name="released_findings", cache_policy=NO_CACHE)
def released_findings(rt: Runtime) -> dict | None:
    """Fraud in the released goods the audit rankings leave out, from the findings reported on every period's
    random draws (serving/post_clearance.py `audit_findings`); None before any finding."""
    found = audit_findings(rt.warehouse)
    if found and found["fraud_rate"]:
        rate = found["fraud_rate"]
        progress(f"random audits: {found['random_audited']} of {found['random_drawn']} drawn enterprises reported "
                 f"findings; fraud in released goods outside the rankings ≈ {rate['estimate']:.1%}")
    return found


def rated_entities(rt: Runtime, entity: str, min_controls: int) -> pd.DataFrame:
    """An entity's ratings over the warehouse's declarations, counted by DuckDB (one row per entity reaches pandas)."""
    return rate_counts(rt.warehouse.entity_counts(counted_columns(entity)), entity, min_controls)


@task(name="record_ratings", cache_policy=NO_CACHE)
def record_ratings(rt: Runtime, entity: str, rated: pd.DataFrame, min_controls: int,
                   audit_list_id: str | None = None) -> str | None:
    """Keep a ratings list in the warehouse (append-only); returns its id (None when it has no rows)."""
    list_id = rt.warehouse.ratings.record(rated, entity, list(BY_NAME[entity].columns), min_controls, audit_list_id)
    progress(f"{entity} ratings: {len(rated)} kept in the warehouse as {list_id}" if list_id else
             f"{entity} ratings: none with at least {min_controls} controls, nothing stored")
    return list_id


@flow(name="customs-ratings")
def customs_ratings(entity: str = "importer", top: int = RATINGS_TOP, min_controls: int = RATINGS_MIN_CONTROLS
                    ) -> list[dict]:
    """Risk ratings of an entity of features/entities.py (goods, enterprises, trade lanes, pairs), kept in the
    warehouse and published as a Prefect artifact."""
    rt = runtime.current()
    table = rated_entities(rt, entity, min_controls).head(top)
    record_ratings(rt, entity, table, min_controls)
    create_markdown_artifact(key=f"customs-ratings-{entity.replace('_', '-')}",
                             markdown=ratings_markdown(table.to_dict("records"), list(BY_NAME[entity].columns)),
                             description=f"{entity} risk ratings")
    return table.to_dict("records")
