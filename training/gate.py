"""The promotion gate: a challenger becomes champion only when it has earned it. Pure policy, no MLflow."""
from __future__ import annotations

from dataclasses import dataclass, field

from training.metrics import label


@dataclass(frozen=True)
class GatePolicy:
    metric: str = "precision_at_5pct"
    margin: float = 0.01  # the challenger must beat the reference by at least this much on `metric`
    guard_metric: str = "revenue_at_5pct"
    guard_tolerance: float = 0.02  # and may not lose more than this on `guard_metric`


@dataclass
class GateDecision:
    promote: bool
    reference: str  # "champion v3" or "baseline"
    reasons: list[str] = field(default_factory=list)


def decide(challenger: dict, reference: dict, reference_name: str, behaviour: dict[str, dict],
           data_validated: bool, policy: GatePolicy = GatePolicy()) -> GateDecision:
    """Compare on the same holdout; every condition is checked and reported, passed or not."""
    reasons, ok = [], True
    new, old = challenger.get(policy.metric), reference.get(policy.metric)
    if new is None or old is None:
        ok = False
        reasons.append(f"{label(policy.metric)} unavailable (challenger {new}, {reference_name} {old})")
    else:
        beats = new >= old + policy.margin
        ok &= beats
        reasons.append(f"{label(policy.metric)} {new:.4f} vs {reference_name} {old:.4f} "
                       f"({'beats' if beats else 'does not beat'} it by the margin {policy.margin:g})")
    g_new, g_old = challenger.get(policy.guard_metric), reference.get(policy.guard_metric)
    if g_new is None or g_old is None:
        reasons.append(f"{label(policy.guard_metric)} absent: guard not applied")
    else:
        holds = g_new >= g_old - policy.guard_tolerance
        ok &= holds
        reasons.append(f"{label(policy.guard_metric)} {g_new:.4f} vs {reference_name} {g_old:.4f} "
                       f"({'within' if holds else 'worse than'} the tolerance {policy.guard_tolerance:g})")
    for name, result in behaviour.items():
        ok &= bool(result.get("passed"))
        reasons.append(f"behavioural check {name}: {'passed' if result.get('passed') else 'FAILED'}")
    ok &= data_validated
    reasons.append("training data passed validation" if data_validated else "training data FAILED validation")
    return GateDecision(promote=ok, reference=reference_name, reasons=reasons)
