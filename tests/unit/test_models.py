"""The served model: a patient CatBoost on the engineered columns blended with the same CatBoost on the mapped
columns (weight chosen on the validation window), refitted on train + validation, within a time budget; and a time
split that leaves every window its positives."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from features.build import build_features, integrate
from features.errors import UserError
from features.labels import labelled
from tests.conftest import FAST
from training.models import (
    BLEND_WEIGHTS,
    Deadline,
    fit_blended_model,
    learning_rate_for,
    patience_for,
    time_split,
)
from training.pipeline import select_groups


@pytest.fixture(scope="module")
def features(world):
    frame = integrate(world.declarations, world.manifests, world.traders)
    frame = frame.sort_values(["declaration_date", "declaration_id"], kind="stable").reset_index(drop=True)
    fs = build_features(frame)
    split = time_split(fs.meta["declaration_date"], labelled(frame),
                       positive=frame["fraud"].fillna(0).to_numpy() == 1)
    return fs, split


def test_a_patient_rate_from_the_data_size_and_a_patience_as_a_learning_distance():
    assert learning_rate_for(30_000, 5000) == pytest.approx(0.05)
    assert learning_rate_for(400_000, 5000) == pytest.approx(0.10)  # √4 × 0.05: time grows as √rows
    assert learning_rate_for(30_000, 80) > 0.2  # a small round cap (tests) gets a brisk rate
    assert patience_for(0.05) == 300 and patience_for(0.10) == 150


def test_the_blend_is_one_catboost_whose_weight_is_the_best_on_validation(features):
    fs, split = features
    columns = fs.model_columns(("price", "profiles"))
    model, blend = fit_blended_model(fs, split, replace(FAST, refit=False), columns)
    assert [m.name for m in blend.members] == ["engineered", "mapped columns"]
    engineered, mapped = blend.members
    assert engineered.weight in BLEND_WEIGHTS and engineered.weight + mapped.weight == pytest.approx(1)
    fraud = fs.meta.loc[split.valid, "fraud"].fillna(0).to_numpy()
    served = average_precision_score(fraud, model.risk(fs.X.loc[split.valid]))
    if 0 < engineered.weight < 1:  # both members served, each fitted again on one layout with the same rounds
        assert set(model.columns) == set(columns) | set(fs.reference_columns)
    else:  # one member alone: the model holds its columns only (nothing it ignores is monitored or explained)
        alone = engineered if engineered.weight == 1 else mapped
        assert set(model.columns) == set(alone.columns)
        assert served == pytest.approx(blend.validation_pr_auc, abs=1e-9)  # the served model is the chosen one
    shap = model.classifier.get_feature_importance(model.pool(fs.X.loc[split.valid].head(50)), type="ShapValues")
    risk = model.risk(fs.X.loc[split.valid].head(50))
    np.testing.assert_allclose(shap.sum(axis=1), np.log(risk / (1 - risk)), atol=1e-6)  # reasons explain it


def test_one_member_alone_serves_its_own_columns_only(features):
    fs, split = features
    columns = fs.model_columns(("price",))
    model, blend = fit_blended_model(fs, split, replace(FAST, blend=False), columns)
    assert [m.name for m in blend.members] == ["engineered"]
    assert model.columns == columns  # no mapped column it would ignore, to monitor or explain
    assert not set(fs.reference_columns) - set(columns) & set(model.columns)


def test_the_refit_learns_from_the_validation_window_with_the_rounds_scaled(features):
    fs, split = features
    columns = fs.model_columns(("price",))
    model, blend = fit_blended_model(fs, split, FAST, columns)
    assert blend.refit
    chosen = [m for m in blend.members if m.weight > 0]
    assert model.classifier.tree_count_ == sum(m.rounds for m in chosen)  # the refitted members, summed
    assert all(m.rounds <= FAST.iterations for m in chosen)  # the cap holds after scaling
    before = 1 / (1 + np.exp(-blend.train_only_logits(fs, split.valid)))
    assert not np.allclose(before, model.risk(fs.X.loc[split.valid]))  # another model: it saw the window


def test_a_spent_time_budget_stops_boosting_and_serves_one_member_unrefitted(features):
    fs, split = features
    model, blend = fit_blended_model(fs, split, replace(FAST, iterations=2000), fs.model_columns(()),
                                     deadline=Deadline(0.0))
    assert not blend.refit and "time budget" in blend.note
    assert all(m.rounds <= 2 for m in blend.members)  # stopped after its first round, not at 2,000
    assert sum(m.weight > 0 for m in blend.members) == 1  # no time to fit both on one layout


def test_a_spent_ablation_share_keeps_the_unscreened_groups_and_says_so(features):
    fs, split = features
    groups = select_groups(fs, split, replace(FAST, ablation=True), deadline=Deadline(0.0))
    unscreened = [g for g in groups if "time budget" in g.note]
    assert unscreened and all(g.kept and g.delta is None for g in unscreened)


def test_the_time_split_leaves_every_window_its_positives_for_a_rare_label():
    dates = pd.Series(pd.date_range("2024-01-01", periods=1000, freq="D"))
    labelled = np.ones(1000, dtype=bool)
    positive = np.zeros(1000, dtype=bool)
    positive[[10, 50, 100, 200, 300, 400, 500, 550, 600, 650]] = True  # all before the rows' 70 % quantile
    plain = time_split(dates, labelled)
    assert not (plain.holdout & positive).any()  # cut by rows alone, the holdout has no positive to evaluate on
    split = time_split(dates, labelled, positive=positive)
    for window in (split.train, split.valid, split.holdout):
        assert (window & positive).any()
    assert (split.train | split.valid | split.holdout).sum() == 1000
    with pytest.raises(UserError, match="no positive label"):
        time_split(dates, labelled, positive=np.eye(1, 1000, 999, dtype=bool)[0])


def test_a_summed_model_saves_and_loads_silently_with_the_weighted_log_odds(tmp_path, capfd):
    from catboost import CatBoostClassifier, Pool

    from training.models import _summed

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.choice(list("xyz"), 500), "b": rng.normal(size=500), "c": rng.normal(size=500)})
    pool = Pool(X, ((X["b"] + (X["a"] == "x")) > 0.5).astype(int), cat_features=["a"])
    members = [CatBoostClassifier(iterations=20, verbose=False, thread_count=1, ignored_features=ignored).fit(pool)
               for ignored in (["c"], ["a"])]
    summed = _summed(members, [0.75, 0.25])
    summed.save_model(str(tmp_path / "blend.cbm"))
    loaded = CatBoostClassifier().load_model(str(tmp_path / "blend.cbm"))
    raw = [m.predict(pool, prediction_type="RawFormulaVal") for m in members]
    np.testing.assert_allclose(loaded.predict(pool, prediction_type="RawFormulaVal"), 0.75 * raw[0] + 0.25 * raw[1],
                               atol=1e-9)
    out, err = capfd.readouterr()
    assert "invalid params" not in out + err  # served models load without CatBoost's warning


def test_the_revenue_model_predicts_through_a_lean_copy_with_the_same_bits_and_leaves_the_model_as_it_was():
    import json

    from catboost import CatBoostRegressor, Pool

    from training.models import revenue_predictor

    rng = np.random.default_rng(1)
    X = pd.DataFrame({"a": rng.choice(list("xyzw"), 400), "b": rng.normal(size=400), "c": rng.normal(size=400)})
    y = X["b"] * 2 + (X["a"] == "x") + rng.normal(scale=0.1, size=400)
    regressor = CatBoostRegressor(iterations=30, verbose=False, thread_count=1).fit(Pool(X, y, cat_features=["a"]))
    params = regressor.get_metadata()["params"]
    lean = revenue_predictor(regressor)
    assert lean is not regressor and revenue_predictor(regressor) is lean  # made once per model
    assert regressor.get_metadata()["params"] == params  # what is stored and logged keeps its parameters
    assert json.loads(lean.get_metadata()["params"]) == {"flat_params": {"loss_function": "RMSE"}}
    rows = X.to_numpy(dtype=object).tolist()
    for one in rows[:20]:  # a request's single row, as the API builds its pool
        single = Pool([one], cat_features=[0], feature_names=list(X.columns), thread_count=1)
        assert lean.predict(single, thread_count=1).tobytes() == regressor.predict(single).tobytes()
    whole = Pool(X, cat_features=["a"])
    assert lean.predict(whole).tobytes() == regressor.predict(whole).tobytes()
