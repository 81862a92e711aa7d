"""Hyperparameter search within a budget, judged on the validation window only."""
from __future__ import annotations

import pytest

from features.build import integrate
from tests.conftest import FAST
from training.pipeline import train_and_evaluate


def test_tuning_keeps_the_best_trial_on_validation(world):
    frame = integrate(world.declarations.head(8000), world.manifests, world.traders)
    told = []
    result = train_and_evaluate(frame, FAST, tune_seconds=3, advance=lambda *call, **_: told.append(call))
    assert result.trials, "the first trial (the given configuration) always runs"
    budget = [(done, total) for what, done, total in told if what == "tuning: seconds of the budget"]
    assert budget[0] == (0, 3) and budget[-1] == (3, 3) and len(budget) == len(result.trials) + 2
    assert {f"tuning: trial {n}" for n in range(1, len(result.trials) + 1)} <= {what for what, _, _ in told}
    best = max(result.trials, key=lambda t: t.value)
    assert result.model.params["depth"] == best.params["depth"]
    assert result.model.params["learning_rate"] == pytest.approx(best.params["learning_rate"])
    assert all(0 < t.value <= 1 and t.seconds > 0 for t in result.trials)
