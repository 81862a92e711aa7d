"""customs-backtest: replay labelled history week by week (the BACUDA protocol) and compare selection policies."""
from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from features.intake.mapping import load_mapping
from features.intake.prepared import prepare_batch
from features.labels import labelled
from features.simulator import simulate
from features.warehouse import read_tables
from flows.orchestration import runtime
from flows.orchestration.runtime import Runtime, progress
from flows.render import backtest_markdown
from serving.backtest import (
    POLICIES,
    REFIT_ITERATIONS,
    BacktestConfig,
    BacktestData,
    BacktestResult,
    from_labelled,
    from_world,
    run_backtest,
)
from serving.lanes import load_policy
from training import runs
from training.models import FitConfig

SIMULATED_ROWS = 200_000  # the simulated world replayed when the warehouse holds no label and no size is given


@task(name="load_history", cache_policy=NO_CACHE)
def load_history(rt: Runtime, path: str | None, mapping: str | None, rows: int | None, seed: int) -> BacktestData:
    """A user's labelled file or the warehouse's labelled declarations (oracle: their own labels), or the embedded
    simulator (oracle: its hidden truth): the simulator when `rows` is given or the warehouse holds no label."""
    if path is None and rows is None:
        with rt.warehouse.process_lock():
            tables = read_tables(rt.warehouse)
        if len(tables.declarations) and labelled(tables.declarations).any():
            data = from_labelled(tables.declarations, "warehouse", tables.manifests, tables.traders)
            progress(f"{len(data.frame):,} labelled declarations of the warehouse to replay; "
                     f"{data.left_out:,} unlabelled left out")
            return data
        progress(f"the warehouse holds no labelled declaration: replaying a simulated world of {SIMULATED_ROWS:,}")
    if path is None:
        rows = rows or SIMULATED_ROWS
        data = from_world(simulate(rows, seed=seed), source=f"simulator (rows={rows}, seed={seed})")
        progress(f"simulated {rows:,} declarations (seed {seed}); drift from {data.drift_date.date()}")
        return data
    batch = prepare_batch(Path(path), "declarations", load_mapping(Path(mapping) if mapping else None))
    if len(batch.rejected):
        progress(f"{len(batch.rejected):,} invalid rows left out ({batch.rejected['reason'].value_counts().to_dict()})")
    data = from_labelled(batch.rows, source=Path(path).name)
    progress(f"{len(data.frame):,} labelled declarations to replay; {data.left_out:,} unlabelled rows left out")
    return data


def _report(week: dict) -> None:
    if week["retrained"] or week["week"] == week["weeks"]:
        precision = " · ".join(f"{p} {v:.1%}" for p, v in week["precision"].items())
        progress(f"week {week['week']}/{week['weeks']} ({week['week_start'].date()}): cumulative precision {precision}")


@task(name="replay_history", cache_policy=NO_CACHE)
def replay_history(data: BacktestData, config: BacktestConfig) -> BacktestResult:
    return run_backtest(data, config, on_week=_report)


@task(name="track_backtest", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def track_backtest(rt: Runtime, result: BacktestResult) -> str:
    return runs.log_backtest(rt.client, result, rt.artifacts, flow_run.get_id())


@flow(name="customs-backtest")
def customs_backtest(path: str | None = None, mapping: str | None = None, rows: int | None = None, seed: int = 7,
                     capacity: float | None = None, exploration: float | None = None, retrain_every: int = 4,
                     warmup_weeks: int = 8, policies: list[str] | None = None, iterations: int | None = None,
                     lane_policy: str | None = None) -> dict:
    """Replay the history week by week: each policy selects within the capacity and learns only what it selected.

    The capacity, the hybrid's exploration share and the rules policy's hard rules are the lane policy's (`lane_policy`,
    default the home's), unless `capacity` or `exploration` is given."""
    rt = runtime.current()
    lanes = load_policy(Path(lane_policy) if lane_policy else rt.settings.lane_policy)
    given = {k: v for k, v in (("capacity", capacity), ("exploration", exploration)) if v is not None}
    config = BacktestConfig.from_lanes(lanes, retrain_every=retrain_every, warmup_weeks=warmup_weeks,
                                       policies=tuple(policies or POLICIES), seed=seed,
                                       fit=FitConfig(iterations=iterations or REFIT_ITERATIONS, seed=seed), **given)
    data = load_history(rt, path, mapping, rows, seed)
    result = replay_history(data, config)
    run_id = track_backtest(rt, result)
    summary = result.summary.to_dict()
    create_markdown_artifact(key="customs-backtest-report", markdown=backtest_markdown(summary),
                             description="Weekly replay of labelled history: precision, recall and revenue per policy")
    return {**summary, "mlflow_run_id": run_id}
