"""Register a challenger and let the gate decide: the same holdout for the model, the reference and the champion.

Promotion is serialised: a file lock under ADUANA_HOME makes overlapping retrains on one home take turns (the
second is then compared with the first's champion), and the alias only moves if the champion is still the one the
challenger was compared with, which also holds when retrains on different machines share one registry.
"""
from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from mlflow.tracking import MlflowClient

from training import registry
from training.gate import Comparison, GateDecision, GatePolicy, choose_candidate, decide, paired_bootstrap
from training.pipeline import TrainingResult


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


def compare(result: TrainingResult, challenger: np.ndarray, other: np.ndarray, other_name: str,
            policy: GatePolicy) -> Comparison:
    """A paired comparison of two score vectors on this training's holdout rows."""
    meta = result.features.meta.loc[result.split.holdout]
    fraud = meta["fraud"].astype("float64").to_numpy()
    revenue = meta["revenue"].astype("float64").to_numpy() if "revenue" in meta else None
    return paired_bootstrap(policy.metric, fraud, challenger, other, other_name, revenue, policy)


def gate_challenger(client: MlflowClient, result: TrainingResult, runs: dict[str, str], warnings: list[str],
                    policy: GatePolicy = GatePolicy(), lock: Path | None = None,
                    log: Path | None = None) -> tuple[str, GateDecision]:
    """Put forward the better of this training's two models (`runs`: role → MLflow run id), register it as
    @challenger, and compare it with the champion on this run's holdout. Returns (version, decision)."""
    if lock is not None:
        with promotion_lock(lock):
            return gate_challenger(client, result, runs, warnings, policy, log=log)
    model_scores = result.evaluation.predictions["risk_score"].to_numpy()
    reference_scores = result.reference_evaluation.predictions["risk_score"].to_numpy()
    vs_reference = compare(result, model_scores, reference_scores, "reference", policy)
    candidate = choose_candidate(vs_reference, result.behaviour)
    version = registry.register_challenger(client, runs[candidate])
    scores = model_scores if candidate == "model" else reference_scores
    behaviour = result.behaviour if candidate == "model" else result.reference_behaviour
    champion = registry.alias_version(client, registry.CHAMPION)
    vs_champion = None
    if champion is not None and champion != version:
        model = registry.load_version(champion)
        missing = sorted(set(model.columns) - set(result.features.X.columns))
        if missing:
            decision = GateDecision(False, f"champion v{champion}",
                                    [f"champion v{champion} needs features this data lacks ({', '.join(missing[:5])}): "
                                     "cannot compare on the same holdout; promote by hand if intended"], candidate)
            registry.record_decision(client, runs[candidate], version, decision, compared_with=champion, log=log)
            return version, decision
        champion_scores = model.risk(result.features.X.loc[result.split.holdout])
        vs_champion = compare(result, scores, champion_scores, f"champion v{champion}", policy)
    decision = decide(vs_reference, vs_champion, behaviour, warnings, policy, model_behaviour=result.behaviour)
    registry.record_decision(client, runs[candidate], version, decision, compared_with=champion, log=log)
    return version, decision
