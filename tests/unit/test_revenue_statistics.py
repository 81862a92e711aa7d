"""The revenue model's categorical statistics (training/models.py `_fit_revenue`): each categorical alone unless
CatBoost's own combinations predict the validation window's log revenue better; a configured setting stands."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from catboost import Pool

from features.build import FeatureSet
from features.progress import quiet
from training import models
from training.models import MIN_REVENUE_ROWS, FitConfig, Split, _fit_revenue, _single_statistics_suffice
from training.runs import _revenue_params

COLUMNS = ["a", "b", "x"]


def _caught(n: int = 1_200, seed: int = 5) -> tuple[FeatureSet, Split]:
    """n caught frauds whose log revenue rests on the pair (a, b), a train and a validation window."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 8, n), rng.integers(0, 8, n)
    log_revenue = rng.normal(0, 1.0, (8, 8))[a, b] + 8 + rng.normal(0, 0.3, n)
    X = pd.DataFrame({"a": pd.array([f"a{i}" for i in a], dtype="str"),
                      "b": pd.array([f"b{i}" for i in b], dtype="str"), "x": rng.normal(size=n)})
    meta = pd.DataFrame({"fraud": np.ones(n, dtype=int), "revenue": np.expm1(log_revenue)})
    fs = FeatureSet(X=X, meta=meta, categorical=["a", "b"], numeric=["x"])
    position = np.arange(n)
    split = Split(train=position < 0.7 * n, valid=(position >= 0.7 * n) & (position < 0.85 * n),
                  holdout=position >= 0.85 * n, valid_start=pd.Timestamp("2024-01-01"),
                  holdout_start=pd.Timestamp("2024-02-01"))
    return fs, split


class _Regressor:
    """A regressor that misses the validation window's log revenue by `errors[alone]` (alone: each categorical
    alone), as fitted on any rows."""

    errors: dict[bool, float] = {}

    def __init__(self, params: dict, config: FitConfig):  # noqa: ARG002 - the fitting's signature
        self.alone = params.get("max_ctr_complexity") == 1

    def predict(self, pool: Pool) -> np.ndarray:
        return self.truth[-pool.num_row():] + self.errors[self.alone]


@pytest.mark.parametrize(("alone", "combined", "chosen"), [(0.4, 0.5, True), (0.5, 0.4, False), (0.5, 0.5, True)])
def test_each_categorical_alone_unless_the_combinations_predict_the_validation_window_better(
        monkeypatch, alone, combined, chosen):
    fs, split = _caught()
    target = np.log1p(fs.meta["revenue"].to_numpy())
    monkeypatch.setattr(_Regressor, "errors", {True: alone, False: combined})
    monkeypatch.setattr(_Regressor, "truth", target[split.valid], raising=False)
    monkeypatch.setattr(models, "_revenue_regressor", _Regressor)
    monkeypatch.setattr(models, "_fit", lambda *args, **kwargs: None)
    config = FitConfig(iterations=20)
    assert _single_statistics_suffice(fs, split.train, split.valid, COLUMNS, target, {}, config, quiet) is chosen


def test_too_few_caught_frauds_on_either_side_keep_catboosts_own():
    fs, split = _caught()
    target = np.log1p(fs.meta["revenue"].to_numpy())
    few = split.valid & (np.cumsum(split.valid) < MIN_REVENUE_ROWS)
    config = FitConfig(iterations=20)
    assert not _single_statistics_suffice(fs, split.train, few, COLUMNS, target, {}, config, quiet)
    assert not _single_statistics_suffice(fs, few, split.valid, COLUMNS, target, {}, config, quiet)


@pytest.mark.parametrize("configured", [None, 3])
def test_the_revenue_model_takes_the_choice_or_the_configured_setting(configured):
    fs, split = _caught()
    config = FitConfig(iterations=60, seed=3, max_ctr_complexity=configured)
    model = SimpleNamespace(revenue_model=None, revenue_smearing=1.0)
    _fit_revenue(model, fs, split, config, COLUMNS)
    if configured is None:
        params = {k: v for k, v in config.catboost_params().items() if k != "eval_metric"}
        target = np.log1p(fs.meta["revenue"].to_numpy())
        alone = _single_statistics_suffice(fs, split.train, split.valid, COLUMNS, target, params, config, quiet)
        assert model.revenue_model.get_params().get("max_ctr_complexity") == (1 if alone else None)
        logged = 1 if alone else "default"
    else:
        assert model.revenue_model.get_params()["max_ctr_complexity"] == configured
        logged = configured
    assert model.revenue_smearing > 1.0  # Duan's factor of a fitted log-scale regression
    # the training run logs the setting the revenue model was fitted with
    assert _revenue_params(model) == {"revenue_max_ctr_complexity": logged}


def test_no_revenue_model_logs_no_setting():
    assert _revenue_params(SimpleNamespace(revenue_model=None)) == {}
