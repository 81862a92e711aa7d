"""Register a challenger and let the gate decide: the same holdout for challenger and champion (or baseline).

Promotion is serialised: a file lock under ADUANA_HOME makes overlapping retrains on one home take turns (the
second is then compared with the first's champion), and the alias only moves if the champion is still the one the
challenger was compared with, which also holds when retrains on different machines share one registry.
"""
from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlflow.tracking import MlflowClient

from training import tracking
from training.gate import GateDecision, GatePolicy, decide
from training.pipeline import TrainingResult, evaluate


@contextmanager
def promotion_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (blocking) for the duration of a gate decision."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def gate_challenger(client: MlflowClient, result: TrainingResult, run_id: str, version: str,
                    data_validated: bool, policy: GatePolicy = GatePolicy(), lock: Path | None = None) -> GateDecision:
    """Compare the challenger with the champion on this run's holdout (the baseline when there is no champion)."""
    if lock is not None:
        with promotion_lock(lock):
            return gate_challenger(client, result, run_id, version, data_validated, policy)
    champion = tracking.alias_version(client, tracking.CHAMPION)
    reference_name, reference = "baseline", result.baseline_evaluation.metrics
    if champion is not None and champion != version:
        model = tracking.load_version(champion)
        if set(model.columns) <= set(result.features.X.columns):
            reference_name = f"champion v{champion}"
            reference = evaluate(model, result.features, result.split.holdout).metrics
        else:
            missing = sorted(set(model.columns) - set(result.features.X.columns))
            decision = GateDecision(False, f"champion v{champion}",
                                    [f"champion v{champion} needs features this data lacks ({', '.join(missing[:5])}): "
                                     "cannot compare on the same holdout; promote by hand if intended"])
            tracking.record_decision(client, run_id, version, decision)
            return decision
    decision = decide(result.evaluation.metrics, reference, reference_name, result.behaviour, data_validated, policy)
    tracking.record_decision(client, run_id, version, decision, compared_with=champion)
    return decision
