"""The promotion gate's policy (training/gate.py)."""
from __future__ import annotations

import numpy as np
import pytest

from training.gate import Comparison, GatePolicy, decide, metric_value, paired_bootstrap
from training.metrics import selection_metrics

GOOD_BEHAVIOUR = {"undervaluation_direction": {"passed": True}, "unseen_categories": {"passed": True}}
RNG = np.random.default_rng(0)
Y = (RNG.random(2000) < 0.2).astype(float)
NOISE = RNG.random((2, 2000))


def _scores(signal: float, model: int = 0) -> np.ndarray:
    """Scores that rank the frauds first more often as `signal` grows; each model has its own noise."""
    return signal * Y + NOISE[model]


def _compare(a: float, b: float, name: str = "reference") -> Comparison:
    return paired_bootstrap("pr_auc", Y, _scores(a, 0), _scores(b, 1), name, policy=GatePolicy(resamples=200))


def test_the_bootstrap_interval_brackets_the_difference_and_shrinks_with_a_clear_gap():
    small, large = _compare(0.21, 0.20), _compare(0.6, 0.2)
    assert small.low < small.difference < small.high and large.low < large.difference < large.high
    assert small.low < 0 < small.high  # a hair's difference on 2,000 rows is noise
    assert large.low > 0


def test_gate_metrics_match_the_selection_metrics():
    scores = _scores(0.4)
    expected = selection_metrics(Y, scores)
    for metric in ("pr_auc", "precision_at_5pct", "recall_at_10pct"):
        assert metric_value(metric, Y, scores) == pytest.approx(expected[metric])
    with pytest.raises(ValueError, match="unknown gate metric"):
        metric_value("accuracy", Y, scores)


def test_the_first_champion_is_whichever_of_model_and_reference_wins():
    assert decide(_compare(0.5, 0.3), None, GOOD_BEHAVIOUR, []).candidate == "model"
    lost = decide(_compare(0.3, 0.5), None, GOOD_BEHAVIOUR, [])
    assert lost.promote and lost.candidate == "reference"
    assert any("reference is put forward" in r for r in lost.reasons)


def test_a_challenger_below_the_reference_is_refused_even_when_it_beats_the_champion():
    decision = decide(_compare(0.3, 0.5), _compare(0.3, 0.2, "champion v1"), GOOD_BEHAVIOUR, [])
    assert decision.candidate == "reference"  # the model itself is not put forward
    assert any("model 0." in r and "reference is put forward" in r for r in decision.reasons)


def test_a_clearly_better_challenger_is_promoted_over_the_champion():
    decision = decide(_compare(0.7, 0.3), _compare(0.7, 0.3, "champion v1"), GOOD_BEHAVIOUR, [])
    assert decision.promote and decision.reference == "champion v1"
    assert any("interval" in r and "beats it" in r for r in decision.reasons)


@pytest.mark.parametrize(
    ("vs_champion", "behaviour", "warnings", "policy", "why"),
    [
        (_compare(0.31, 0.30, "champion v1"), GOOD_BEHAVIOUR, [], GatePolicy(), "does not beat it"),
        (_compare(0.2, 0.5, "champion v1"), GOOD_BEHAVIOUR, [], GatePolicy(), "does not beat it"),
        (None, {"undervaluation_direction": {"passed": False}}, [], GatePolicy(), "FAILED"),
        (None, GOOD_BEHAVIOUR, ["b1: warning"], GatePolicy(block_on_warnings=True), "blocks promotion"),
    ],
)
def test_the_gate_refuses_what_has_not_earned_it(vs_champion, behaviour, warnings, policy, why):
    decision = decide(_compare(0.8, 0.3), vs_champion, behaviour, warnings, policy)
    assert not decision.promote
    assert any(why in r for r in decision.reasons)


def test_warnings_are_reported_but_do_not_block_by_default():
    decision = decide(_compare(0.8, 0.3), None, GOOD_BEHAVIOUR, ["b1: warning: expect_column_median..."])
    assert decision.promote
    assert any("1 unacknowledged validation warning" in r and "do not block" in r for r in decision.reasons)


def test_a_model_that_fails_a_behavioural_check_leaves_the_reference_to_serve():
    failing = {"undervaluation_direction": {"passed": False}}
    decision = decide(_compare(0.8, 0.3), None, GOOD_BEHAVIOUR, [], model_behaviour=failing)
    assert decision.promote and decision.candidate == "reference"
    assert any("fails a behavioural check" in r for r in decision.reasons)
