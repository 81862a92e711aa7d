"""customs-demo: the whole loop on the embedded default.

generate → ingest the history → train → promote → ingest the newest declarations (unlabelled, as they arrive)
→ score them → post-clearance audit. The simulator's hidden outcomes of the new declarations are kept in memory
only to report how the red lane would have done; nothing in the pipeline reads them.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import flow, task

from features.data.simulator import simulate, write_world
from features.data.simulator.holdout import selection_outcome, split_arrivals
from features.settings import get_settings
from flows.audit import customs_audit
from flows.ingest import customs_ingest
from flows.retrain import customs_retrain
from flows.runtime import progress
from flows.score import customs_score

ARRIVAL_SHARE = 0.1  # the newest declarations, scored as if they were arriving now


@task(name="generate_world")
def generate_world(rows: int, seed: int, out_dir: str) -> tuple[list[str], str, pd.DataFrame]:
    history, arrivals, truth = split_arrivals(simulate(rows, seed=seed), ARRIVAL_SHARE)
    paths = write_world(history, Path(out_dir))
    arrivals_path = Path(out_dir) / "arrivals.parquet"
    arrivals.to_parquet(arrivals_path, index=False)
    progress(f"simulated {rows:,} declarations (seed {seed}): {len(history.declarations):,} history, "
             f"{len(arrivals):,} arriving from {arrivals['declaration_date'].min().date()}")
    return [str(p) for p in paths.values()], str(arrivals_path), truth


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
    outcome = selection_outcome(pd.read_csv(scored_path, dtype={"declaration_id": "str"}), truth)
    dates = pd.read_parquet(arrivals, columns=["declaration_date"])["declaration_date"]
    audit = customs_audit(f"{dates.min().date()}:{dates.max().date()}", capacity=10)
    return {"landing": str(out_dir), "ingest": summaries, "train": trained, "score": scored, "outcome": outcome,
            "audit": audit, "data_docs": str(settings.data_docs_index), "warehouse": str(settings.warehouse_path)}

