"""The promotion gate: a challenger becomes champion only when it has earned it. Pure policy, no MLflow.

Comparisons are paired: the same holdout rows scored by both models, resampled together (a paired bootstrap), so
the gate states the difference on its primary metric with an interval and does not act on noise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from training.metrics import label, pr_auc
from training.user_policies import GatePolicy


@dataclass
class Comparison:
    """challenger − other on the primary metric, with its bootstrap interval."""

    other: str
    metric: str
    challenger: float
    value: float
    difference: float
    low: float
    high: float

    def text(self, challenger: str, verdict: str) -> str:
        return (f"{label(self.metric)} {challenger} {self.challenger:.4f} vs {self.other} {self.value:.4f}: "
                f"difference {self.difference:+.4f} (interval {self.low:+.4f} to {self.high:+.4f}) — {verdict}")


@dataclass
class GateDecision:
    promote: bool
    reference: str  # what the challenger had to beat: "champion v3", or "reference" for a first champion
    reasons: list[str] = field(default_factory=list)
    candidate: str = "model"  # which of this training's two models was put forward: "model" or "reference"
    comparisons: list[Comparison] = field(default_factory=list)


def metric_value(metric: str, fraud: np.ndarray, scores: np.ndarray, revenue: np.ndarray | None = None) -> float:
    """One selection metric (contract 8) on one set of rows."""
    fraud = np.asarray(fraud, dtype="float64")
    if metric == "pr_auc":
        return pr_auc(fraud, scores)
    kind, _, rate = metric.partition("_at_")
    if not rate.endswith("pct") or kind not in ("precision", "recall", "revenue"):
        raise ValueError(f"unknown gate metric {metric!r}: use pr_auc or precision|recall|revenue_at_Npct")
    k = math.ceil(float(rate.removesuffix("pct")) / 100 * len(scores))
    top = np.argsort(-np.asarray(scores, dtype="float64"), kind="stable")[:k]
    if kind == "precision":
        return float(fraud[top].sum() / k) if k else float("nan")
    weights = fraud if kind == "recall" else (np.nan_to_num(revenue) if revenue is not None else None)
    if weights is None or weights.sum() == 0:
        return float("nan")
    return float(weights[top].sum() / weights.sum())


def paired_bootstrap(metric: str, fraud: np.ndarray, challenger: np.ndarray, other: np.ndarray, other_name: str,
                     revenue: np.ndarray | None = None, policy: GatePolicy = GatePolicy()) -> Comparison:
    """The difference challenger − other on `metric`, and its interval from resampling the rows of both together.

    The resampling is stratified by label (frauds and the rest each drawn with replacement to their own number), so
    that with a rare label no resample is left without frauds and the interval is not that of fewer resamples."""
    rng = np.random.default_rng(policy.seed)
    positives = np.flatnonzero(np.asarray(fraud) == 1)
    negatives = np.flatnonzero(np.asarray(fraud) != 1)
    a, b = metric_value(metric, fraud, challenger, revenue), metric_value(metric, fraud, other, revenue)
    differences = []
    for _ in range(policy.resamples):
        rows = rng.permutation(np.concatenate([rng.choice(positives, len(positives)) if len(positives) else positives,
                                               rng.choice(negatives, len(negatives)) if len(negatives) else negatives]))
        rev = revenue[rows] if revenue is not None else None
        d = metric_value(metric, fraud[rows], challenger[rows], rev) - metric_value(metric, fraud[rows], other[rows], rev)
        if not math.isnan(d):
            differences.append(d)
    tail = (1 - policy.confidence) / 2
    low, high = (np.quantile(differences, [tail, 1 - tail]) if differences else (float("nan"), float("nan")))
    return Comparison(other_name, metric, a, b, a - b, float(low), float(high))


def passed(behaviour: dict[str, dict]) -> bool:
    return all(bool(r.get("passed")) for r in behaviour.values())


def choose_candidate(vs_reference: Comparison, model_behaviour: dict[str, dict] | None = None) -> str:
    """The model put forward from one training: the engineered model, unless the reference scores higher on the
    holdout or the model fails a behavioural check."""
    if vs_reference.difference < 0 or not passed(model_behaviour or {}):
        return "reference"
    return "model"


def decide(vs_reference: Comparison, vs_champion: Comparison | None, behaviour: dict[str, dict],
           warnings: list[str], policy: GatePolicy = GatePolicy(),
           model_behaviour: dict[str, dict] | None = None) -> GateDecision:
    """Promote this training's best model when it passes every condition; each is reported, passed or not.

    - It is the better of the engineered model and the reference on the holdout (the reference is itself a
      candidate, so a training never ends with nothing to serve).
    - With a champion, the interval of the difference over it lies above the margin (an improvement, not noise).
    - Its behavioural checks pass, and warnings on the training data block it only if the policy says so.
    `behaviour`: the checks of the model put forward; `model_behaviour`: the engineered model's, when the
    reference was put forward because of them.
    """
    candidate = choose_candidate(vs_reference, model_behaviour)
    if candidate == "reference" and vs_reference.difference >= 0:
        verdict = "the model fails a behavioural check, so the reference is put forward instead"
    else:
        verdict = "the reference is put forward instead" if candidate == "reference" else "the model is put forward"
    reasons = [vs_reference.text("model", verdict)]
    ok = not math.isnan(vs_reference.difference)
    comparisons = [vs_reference]
    if vs_champion is None:
        reasons.append(f"no champion yet: the {candidate} becomes the first champion if its checks pass")
        against = "reference"
    else:
        beats = vs_champion.low > policy.margin
        ok &= beats
        reasons.append(vs_champion.text(candidate, "beats it" if beats else
                                        f"does not beat it: the interval's lower bound is not above {policy.margin:g}"))
        comparisons.append(vs_champion)
        against = vs_champion.other
    for name, result in behaviour.items():
        ok &= bool(result.get("passed"))
        reasons.append(f"behavioural check {name}: {'passed' if result.get('passed') else 'FAILED'}")
    if warnings:
        blocking = policy.block_on_warnings
        ok &= not blocking
        reasons.append(f"training data has {len(warnings)} unacknowledged validation warning(s)"
                       + (": the gate policy blocks promotion on warnings" if blocking else
                          " (recorded; see 'aduana warnings'; they do not block promotion)"))
    else:
        reasons.append("training data: no unacknowledged validation warnings")
    return GateDecision(promote=bool(ok), reference=against, reasons=reasons, candidate=candidate,
                        comparisons=comparisons)
