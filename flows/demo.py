"""customs-demo: the whole loop on the embedded default.

generate → ingest the history → train → promote → ingest the newest declarations (unlabelled, as they arrive)
→ score them → the red lane's controls report back (an outcomes file) → monitor → post-clearance audit.
The simulator's hidden outcomes of the new declarations are kept in memory only to report how the red lane did and
to write the controls' results for the declarations it selected; nothing else in the pipeline reads them.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import flow, task

from features.simulator import simulate, write_world
from features.simulator.holdout import control_outcomes, selection_outcome, split_arrivals
from flows.audit import customs_audit
from flows.ingest import customs_ingest
from flows.monitor import customs_monitor
from flows.orchestration import runtime
from flows.orchestration.runtime import progress
from flows.retrain import customs_retrain
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
    settings = runtime.current().settings
    out_dir = settings.landing_dir / "demo"
    paths, arrivals, truth = generate_world(rows, seed, str(out_dir))
    summaries = customs_ingest(paths)
    trained = customs_retrain(dataset="demo")
    customs_ingest([arrivals], kind="declarations")
    scored_path = settings.reports_dir / "demo-scores.csv"
    scored = customs_score(arrivals, str(scored_path))
    decisions = pd.read_csv(scored_path, dtype={"declaration_id": "str"})
    outcome = selection_outcome(decisions, truth)
    arrived = pd.read_parquet(arrivals, columns=["declaration_id", "declaration_date"])
    outcomes_path = out_dir / "outcomes.parquet"
    control_outcomes(decisions, arrived, truth).to_parquet(outcomes_path, index=False)
    customs_ingest([str(outcomes_path)], kind="outcomes")
    monitored = customs_monitor()
    dates = arrived["declaration_date"]
    audit = customs_audit(f"{dates.min().date()}:{dates.max().date()}", capacity=10)
    return {"landing": str(out_dir), "ingest": summaries, "train": trained, "score": scored, "outcome": outcome,
            "monitor": monitored, "audit": audit, "data_docs": str(settings.data_docs_index), "warehouse": str(settings.warehouse_path)}

