"""customs-backtest: replay labelled history week by week (the BACUDA protocol) and compare selection policies."""
from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from features.intake.batch import prepare_batch
from features.intake.mapping import load_mapping
from features.simulator import simulate
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
from training import runs
from training.models import FitConfig


@task(name="load_history", cache_policy=NO_CACHE)
def load_history(path: str | None, mapping: str | None, rows: int, seed: int) -> BacktestData:
    """The embedded simulator (oracle: its hidden truth), or a user's labelled file (oracle: its own labels)."""
    if path is None:
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
def customs_backtest(path: str | None = None, mapping: str | None = None, rows: int = 200_000, seed: int = 7,
                     capacity: float = 0.05, exploration: float = 0.1, retrain_every: int = 4, warmup_weeks: int = 8,
                     policies: list[str] | None = None, iterations: int | None = None) -> dict:
    """Replay the history week by week: each policy selects within the capacity and learns only what it selected."""
    config = BacktestConfig(capacity=capacity, exploration=exploration, retrain_every=retrain_every,
                            warmup_weeks=warmup_weeks, policies=tuple(policies or POLICIES), seed=seed,
                            fit=FitConfig(iterations=iterations or REFIT_ITERATIONS, seed=seed))
    data = load_history(path, mapping, rows, seed)
    result = replay_history(data, config)
    run_id = track_backtest(runtime.current(), result)
    summary = result.summary.to_dict()
    create_markdown_artifact(key="customs-backtest-report", markdown=backtest_markdown(summary),
                             description="Weekly replay of labelled history: precision, recall and revenue per policy")
    return {**summary, "mlflow_run_id": run_id}
