"""Hyperparameter search with Optuna within a time budget, judged on the validation window only.

The first trial starts from the given configuration's values, so the search keeps or improves on it (on validation).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

from features.build import FeatureSet
from features.progress import Advance, quiet
from training.models import FitConfig, Split, fit_risk_model, validation_score


@dataclass
class Trial:
    number: int
    params: dict
    value: float  # validation PR-AUC
    seconds: float


def _config(trial, base: FitConfig) -> FitConfig:  # noqa: ANN001 - an optuna Trial
    return replace(base,
                   learning_rate=trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
                   depth=trial.suggest_int("depth", 4, 9),
                   l2_leaf_reg=trial.suggest_float("l2_leaf_reg", 1.0, 30.0, log=True),
                   max_ctr_complexity=trial.suggest_int("max_ctr_complexity", 1, 4))


def tune(fs: FeatureSet, split: Split, columns: list[str], base: FitConfig, seconds: float,
         advance: Advance = quiet) -> tuple[FitConfig, list[Trial]]:
    """Search CatBoost's learning rate, depth, L2 and categorical-combination depth for `seconds`; returns the best
    configuration found (on validation PR-AUC) and every trial. `advance` is told the seconds spent of the budget
    as each trial ends, and each trial's rounds."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=base.seed))
    study.enqueue_trial({"learning_rate": base.learning_rate or 0.08, "depth": base.depth,
                         "l2_leaf_reg": base.l2_leaf_reg or 3.0, "max_ctr_complexity": base.max_ctr_complexity or 4})
    trials: list[Trial] = []
    what, budget, began = "tuning: seconds of the budget", max(1, round(seconds)), time.monotonic()
    advance(what, 0, budget)

    def objective(trial) -> float:  # noqa: ANN001
        started = time.monotonic()
        model = fit_risk_model(fs, split, _config(trial, base), columns, revenue=False,
                               what=f"tuning: trial {trial.number + 1}", advance=advance)
        value = validation_score(model, fs, split)
        trials.append(Trial(trial.number, dict(trial.params), value, time.monotonic() - started))
        advance(what, min(budget - 1, round(time.monotonic() - began)), budget)
        return value

    study.optimize(objective, timeout=seconds, n_trials=None, catch=())
    advance(what, budget, budget)
    best = max(trials, key=lambda t: t.value)
    return replace(base, **best.params), trials
