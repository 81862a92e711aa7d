"""Behavioural tests of the trained model: minimum functionality, direction, invariance to what it has not seen."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.build import build_features, integrate
from tests.conftest import FAST
from training.checks import behaviour_checks
from training.pipeline import train_and_evaluate


def test_training_uses_controlled_rows_only_and_a_time_split(trained):
    split, meta = trained.split, trained.features.meta
    used = split.train | split.valid | split.holdout
    assert (meta.loc[used, "inspected"] == 1).all()
    assert meta.loc[split.train, "declaration_date"].max() < meta.loc[split.holdout, "declaration_date"].min()


def test_the_model_finds_fraud_far_better_than_chance(trained):
    base_rate = trained.features.meta.loc[trained.split.holdout, "fraud"].astype(float).mean()
    assert trained.evaluation.metrics["precision_at_10pct"] > 2 * base_rate
    assert trained.evaluation.metrics["pr_auc"] > 1.5 * base_rate


def test_behavioural_checks_pass(trained):
    assert all(r["passed"] for r in trained.behaviour.values()), trained.behaviour


def test_deeper_undervaluation_never_lowers_risk_on_average(trained):
    """CatBoost's monotone constraint does not hold through categorical × numeric combinations (catboost#2272):
    the direction is checked on average, as the gate's behavioural check does."""
    if "undervaluation_depth" not in trained.model.columns:
        pytest.skip("the price group was left out of this model")
    X = trained.features.X.loc[trained.split.holdout].head(200)
    means = [trained.model.risk(X.assign(undervaluation_depth=d)).mean() for d in (0.0, 0.3, 0.8, 1.5)]
    assert all(b >= a - 1e-12 for a, b in zip(means, means[1:], strict=False))


def test_expected_revenue_is_risk_times_conditional_revenue(trained):
    X = trained.features.X.head(50)
    out = trained.model.predict(X)
    assert (out["expected_revenue"] >= 0).all()
    assert ((out["expected_revenue"] == 0) == (out["risk_score"] == 0)).all()


def test_a_batch_pool_built_from_arrays_reads_as_the_frames_pool_does(trained):
    """A batch's pool is built from two arrays (CatBoost's FeaturesData, numbers first): CatBoost places the columns
    by name, so the risk, the expected revenue and the SHAP values are the frame pool's, bit for bit. A frame those
    arrays would not read alike (a missing text value) gets the frame's pool."""
    from catboost import Pool

    from training.explainer import shap_values
    from training.models import _arrays_pool

    model = trained.model
    X = trained.features.X[model.columns].head(3_000)
    fast, plain = _arrays_pool(X, model.categorical, model.numeric), Pool(X, cat_features=model.categorical)
    assert fast is not None and fast.get_feature_names() != model.columns  # its columns in another order
    risk = model.classifier.predict_proba(plain)[:, 1]
    np.testing.assert_array_equal(model.classifier.predict_proba(fast)[:, 1], risk)
    np.testing.assert_array_equal(model.expected_revenue(fast, risk), model.expected_revenue(plain, risk))
    np.testing.assert_array_equal(shap_values(model.classifier, fast), shap_values(model.classifier, plain))
    first = model.categorical[0]
    holed = X.assign(**{first: X[first].where(np.arange(len(X)) > 0)})
    assert _arrays_pool(holed, model.categorical, model.numeric) is None


def test_unseen_categories_and_missing_optional_fields_still_score(trained, world):
    required = ["declaration_id", "declaration_date", "importer_id", "hs_code", "origin_country", "declared_value"]
    new = world.declarations[required].tail(20).assign(
        importer_id="IMP-NEVER-SEEN", hs_code="010121", origin_country="NA")
    history = integrate(world.declarations, world.manifests, world.traders)
    fs = build_features(integrate(new), history=history, bands=trained.features.price_bands)
    risk = trained.model.risk(fs.X)
    assert np.isfinite(risk).all() and ((risk >= 0) & (risk <= 1)).all()


def test_a_dataset_without_revenue_trains_the_classifier_alone(world):
    frame = integrate(world.declarations.drop(columns=["revenue"]), world.manifests, world.traders)
    result = train_and_evaluate(frame, FAST)
    assert result.model.revenue_model is None
    assert result.evaluation.metrics["revenue_at_5pct"] is None
    assert result.evaluation.metrics["precision_at_5pct"] is not None
    assert result.model.predict(result.features.X.head(5))["expected_revenue"].isna().all()


def test_too_few_labels_is_a_clear_error(world):
    frame = integrate(world.declarations.head(300))
    with pytest.raises(ValueError, match="controlled declarations"):
        train_and_evaluate(frame, FAST)


def test_behaviour_checks_catch_a_model_that_breaks_on_unseen_values(trained):
    class Fragile:
        categorical, numeric = trained.model.categorical, trained.model.numeric

        def risk(self, X: pd.DataFrame) -> np.ndarray:
            if (X[self.categorical] == "__never_seen__").any().any():
                raise KeyError("unknown category")
            return trained.model.risk(X)

    checks = behaviour_checks(Fragile(), trained.features.X.head(50))
    assert checks.get("undervaluation_direction", {"passed": True})["passed"]
    assert not checks["unseen_categories_and_missing_fields"]["passed"]


def test_feature_groups_are_kept_only_when_they_help_on_validation(trained):
    measured = [g for g in trained.groups if g.delta is not None]
    assert measured, trained.groups
    assert all(g.kept == (g.delta > 0) for g in measured)
    assert all(not g.kept for g in trained.groups if g.delta is None)
    engineered = trained.blend.members[0]
    assert set(engineered.columns) == set(trained.features.model_columns(tuple(trained.kept_groups)))
    # The served model holds the columns of the members the blend weighted (one CatBoost), and no others.
    weighted = [m for m in trained.blend.members if m.weight > 0]
    assert set(trained.model.columns) == set().union(*(m.columns for m in weighted))
    assert set(trained.reference.columns) == set(trained.features.reference_columns)


def test_a_group_without_data_is_not_fitted_but_reported(world):
    """An export without a trader registry: the registry group's columns are constant, so it is skipped."""
    from training.models import FitConfig
    from training.pipeline import train_and_evaluate

    result = train_and_evaluate(integrate(world.declarations, world.manifests), FitConfig(
        iterations=30, learning_rate=0.3, depth=4, threads=2, reference_iterations=30))
    registry = next(g for g in result.groups if g.group == "registry")
    assert not registry.kept and registry.delta is None and "no data" in registry.note


def test_training_reports_each_step_as_it_goes(world):
    """A long training is not silent: the flows pass their progress, and each step says what it does."""
    lines: list[str] = []
    frame = integrate(world.declarations.head(8_000), world.manifests, world.traders)
    train_and_evaluate(frame, FAST, report=lines.append)
    # the history's size is said (features may be built for its labelled rows only: "for N of 8,000 declarations")
    assert lines[0].startswith("building features for ") and "8,000 declarations" in lines[0]
    assert any(line.startswith("fitting the risk model on ") for line in lines)
    assert any(line.startswith("reference: ") for line in lines) and "holdout" in lines[-1]

