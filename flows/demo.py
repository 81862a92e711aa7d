"""customs-demo: the whole loop on the embedded default.

generate → ingest the history → train → promote → ingest the newest declarations (unlabelled, as they arrive)
→ score them → post-clearance audit. The simulator's hidden outcomes of the new declarations are kept in memory
only to report how the red lane would have done; nothing in the pipeline reads them.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import flow, task

from features.build import LABELS
from features.data.simulator import simulate, write_world
from features.settings import get_settings
from flows.audit import customs_audit
from flows.ingest import customs_ingest
from flows.retrain import customs_retrain
from flows.runtime import progress
from flows.score import customs_score

ARRIVAL_SHARE = 0.1  # the newest declarations, scored as if they were arriving now


@task(name="generate_world")
def generate_world(rows: int, seed: int, out_dir: str) -> tuple[list[str], str, pd.DataFrame]:
    world = simulate(rows, seed=seed)
    cut = world.declarations["declaration_date"].quantile(1 - ARRIVAL_SHARE)
    arriving = world.declarations["declaration_date"] >= cut
    arrivals = world.declarations[arriving].drop(columns=list(LABELS))
    world.declarations = world.declarations[~arriving]
    paths = write_world(world, Path(out_dir))
    arrivals_path = Path(out_dir) / "arrivals.parquet"
    arrivals.to_parquet(arrivals_path, index=False)
    progress(f"simulated {rows:,} declarations (seed {seed}): {len(world.declarations):,} history, "
             f"{len(arrivals):,} arriving from {cut.date()}")
    truth = world.truth[arriving.to_numpy()][["declaration_id", "is_fraud", "revenue_at_stake"]]
    return [str(p) for p in paths.values()], str(arrivals_path), truth


def red_lane_outcome(scored: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """What the red lane would have found, by the simulator's hidden outcomes (for the demo report only)."""
    joined = scored.merge(truth, on="declaration_id")
    red = joined["lane"] == "red"
    model_red = red & (joined["selected_by"] == "model")
    explored = joined["selected_by"] == "exploration"
    total_revenue = joined["revenue_at_stake"].sum()
    return {"red": int(red.sum()), "red_hit_rate": float(joined.loc[red, "is_fraud"].mean()),
            "model_red_hit_rate": float(joined.loc[model_red, "is_fraud"].mean()),
            "exploration_hit_rate": float(joined.loc[explored, "is_fraud"].mean()) if explored.any() else None,
            "base_fraud_rate": float(joined["is_fraud"].mean()),
            "red_revenue_share": float(joined.loc[red, "revenue_at_stake"].sum() / total_revenue) if total_revenue else None}


@flow(name="customs-demo")
def customs_demo(rows: int = 200_000, seed: int = 7) -> dict:
    """Simulate a customs administration and run the whole loop on it."""
    settings = get_settings()
    out_dir = settings.landing_dir / "demo"
    paths, arrivals, truth = generate_world(rows, seed, str(out_dir))
    summaries = customs_ingest(paths)
    trained = customs_retrain(dataset="demo")
    customs_ingest([arrivals], kind="declarations")
    scored_path = settings.reports_dir / "demo-scores.csv"
    scored = customs_score(arrivals, str(scored_path))
    outcome = red_lane_outcome(pd.read_csv(scored_path, dtype={"declaration_id": "str"}), truth)
    start, end = truth_period(arrivals)
    audit = customs_audit(f"{start}:{end}", capacity=10)
    return {"landing": str(out_dir), "ingest": summaries, "train": trained, "score": scored, "outcome": outcome,
            "audit": audit, "data_docs": str(settings.data_docs_index), "warehouse": str(settings.warehouse_path)}


def truth_period(arrivals: str) -> tuple[str, str]:
    dates = pd.read_parquet(arrivals, columns=["declaration_date"])["declaration_date"]
    return str(dates.min().date()), str(dates.max().date())
