"""Register a challenger and let the gate decide: the same holdout for challenger and champion (or baseline)."""
from __future__ import annotations

from mlflow.tracking import MlflowClient

from training import tracking
from training.gate import GateDecision, GatePolicy, decide
from training.pipeline import TrainingResult, evaluate


def gate_challenger(client: MlflowClient, result: TrainingResult, run_id: str, version: str,
                    data_validated: bool, policy: GatePolicy = GatePolicy()) -> GateDecision:
    """Compare the challenger with the champion on this run's holdout (the baseline when there is no champion)."""
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
    tracking.record_decision(client, run_id, version, decision)
    return decision
