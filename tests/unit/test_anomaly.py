"""The anomaly model: injected outliers found and named, scores as percentiles, label-free columns, missing values,
an MLflow round trip, and a fit on a simulated feature set."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from features.profiles import PROFILE_COLUMNS, PROFILE_SUFFIXES
from training.anomaly import (
    ANOMALY_MODEL_NAME,
    LABEL_DERIVED_SUFFIXES,
    AnomalyModel,
    anomaly_columns,
    fit_anomaly,
    load_anomaly,
    log_anomaly_model,
    register_anomaly,
)

ROWS, INJECTED = 20_000, 400  # 2 % outliers


def declarations(seed: int = 7) -> tuple[pd.DataFrame, pd.Series]:
    """A synthetic feature frame, and per row the column an outlier was injected in ("" for none): half of the
    injected rows priced far from their band, half with a mass far above the manifest's."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "importer_id": rng.choice(["IMP1", "IMP2", "IMP3"], ROWS),  # categorical: not read
        "log_declared_value": rng.normal(10.7, 0.95, ROWS),
        "unit_price_zscore": rng.normal(0, 1, ROWS),
        "manifest_mass_ratio": 1 + rng.lognormal(np.log(0.2), 0.3, ROWS),
        "bl_items": rng.integers(1, 7, ROWS).astype("float64"),
        "transshipped": (rng.random(ROWS) < 0.17).astype("float64"),
        "credit_rating_rank": np.where(rng.random(ROWS) < 0.01, np.nan, rng.integers(1, 11, ROWS)),
        "company_age_days": rng.gamma(2.0, 1700.0, ROWS),
        "importer_hit_rate": rng.beta(2, 12, ROWS),  # label-derived: never read
    })
    frame["declared_value"] = np.exp(frame["log_declared_value"])  # its log twin is read instead
    injected = pd.Series("", index=frame.index)
    rows = rng.choice(ROWS, INJECTED, replace=False)
    price, mass = rows[: INJECTED // 2], rows[INJECTED // 2:]
    frame.loc[price, "unit_price_zscore"] = rng.choice([-1, 1], len(price)) * rng.uniform(4.5, 8, len(price))
    frame.loc[mass, "manifest_mass_ratio"] = rng.uniform(3, 6, len(mass))
    injected[price], injected[mass] = "unit_price_zscore", "manifest_mass_ratio"
    return frame, injected


@pytest.fixture(scope="module")
def synthetic() -> tuple[pd.DataFrame, pd.Series, AnomalyModel]:
    frame, injected = declarations()
    return frame, injected, AnomalyModel().fit(frame)


def test_label_derived_and_duplicated_columns_are_left_out():
    numeric = ["log_declared_value", "declared_value", "unit_price_zscore", "xnum_container_volume", "fraud",
               *PROFILE_COLUMNS, "xnum_broker_hit_rate"]
    kept = anomaly_columns(numeric)
    assert kept == ["log_declared_value", "unit_price_zscore", "xnum_container_volume"]
    assert set(LABEL_DERIVED_SUFFIXES) <= set(PROFILE_SUFFIXES)  # the rule follows the profile catalogue
    with_familiarity = anomaly_columns(numeric, familiarity=True)
    assert "importer_volume_90d" in with_familiarity and "lane_days_known" in with_familiarity
    assert not any(c.endswith(("_hit_rate", "_hit_rate_90d", "_revenue_rate", "_inspections"))
                   for c in with_familiarity)


def test_injected_outliers_rank_high(synthetic):
    frame, injected, model = synthetic
    assert set(model.used) == {"log_declared_value", "unit_price_zscore", "manifest_mass_ratio", "bl_items",
                               "transshipped", "credit_rating_rank", "company_age_days"}
    score = model.score(frame)
    assert score.min() >= 0 and score.max() <= 1
    assert roc_auc_score(injected != "", score) >= 0.9
    assert np.mean(score[injected != ""] > 0.95) >= 0.8


def test_contributions_name_the_injected_column(synthetic):
    frame, injected, model = synthetic
    rows = np.flatnonzero(injected != "")
    found = model.contributions(frame.iloc[rows], top=3)
    first = found[found["rank"] == 1].set_index("row")["column"]
    assert (first.to_numpy() == injected.iloc[rows].to_numpy()).mean() >= 0.95
    named = found.groupby("row")["column"].agg(set)
    assert all(injected.iloc[rows[r]] in columns for r, columns in named.items())
    assert found["share"].between(0, 1).all() and (found["contribution"] >= 0).all()


def test_explanations_read_as_sentences(synthetic):
    frame, injected, model = synthetic
    row = int(np.flatnonzero(injected == "unit_price_zscore")[0])
    sentences = model.explain(frame.iloc[[row, row]], top=2)
    assert len(sentences) == 2 and sentences[0] == sentences[1]
    assert sentences[0][0].startswith(f"unit_price_zscore = {frame['unit_price_zscore'].iloc[row]:.3g}")
    assert "% of declarations" in sentences[0][0]
    beyond = frame.iloc[[row]].assign(manifest_mass_ratio=50.0)
    assert any(s.startswith("manifest_mass_ratio = 50, above every declaration seen") for s in model.explain(beyond)[0])


def test_scores_grow_with_rarity(synthetic):
    frame, _, model = synthetic
    typical = frame.median(numeric_only=True)
    rows = pd.DataFrame([typical] * 6).assign(unit_price_zscore=[0.0, 1.0, 2.0, 3.0, 4.0, 9.0])
    score, raw = model.score(rows), model.raw_score(rows)
    assert np.all(np.diff(raw) >= 0) and np.all(np.diff(score) >= 0) and raw[-1] > raw[2] > raw[0]
    assert score[0] < 0.5 < 0.99 < score[-1]
    histogram = model.histograms["unit_price_zscore"]  # within a column: the rarer the bin, the larger its part
    order = np.argsort(histogram.share)
    assert np.all(np.diff(histogram.penalty(model.typical_share)[order]) <= 0)


def test_missing_values_and_constant_columns():
    frame, _ = declarations(seed=1)
    frame = frame.assign(constant=3.0, empty=np.nan,
                         nullable=pd.array([1.5, 2.5, None, 4.0] * (ROWS // 4), dtype="Float64"))
    model = AnomalyModel().fit(frame, ["unit_price_zscore", "constant", "empty", "nullable", "credit_rating_rank"])
    assert model.used == ["unit_price_zscore", "nullable", "credit_rating_rank"]
    holes = frame.head(4).copy()
    holes.loc[:, "unit_price_zscore"] = np.nan
    holes["credit_rating_rank"] = pd.NA
    score = model.score(holes)
    assert np.isfinite(score).all() and ((score >= 0) & (score <= 1)).all()
    assert any("is missing" in s for s in model.explain(holes)[0])
    with pytest.raises(ValueError, match="unit_price_zscore"):
        model.score(frame.drop(columns="unit_price_zscore"))


def test_to_dict_round_trip(synthetic):
    frame, _, model = synthetic
    again = AnomalyModel.from_dict(model.to_dict())
    np.testing.assert_array_equal(again.score(frame), model.score(frame))


@pytest.fixture
def tracking(tmp_path):
    """A fresh sqlite tracking store and experiment under tmp_path; the tracking URI is restored afterwards."""
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service.utils import is_tracking_uri_set

    previous = mlflow.get_tracking_uri() if is_tracking_uri_set() else None
    previous_registry = registry_utils._registry_uri  # a flow run earlier in this process set it to its home's store
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        yield client, client.create_experiment("anomaly", artifact_location=(tmp_path / "artifacts").as_uri())
    finally:
        mlflow.set_tracking_uri(previous)
        registry_utils._registry_uri = previous_registry


def test_mlflow_round_trip(synthetic, tracking):
    import mlflow

    frame, _, model = synthetic
    client, experiment = tracking
    with mlflow.start_run(experiment_id=experiment) as run:
        log_anomaly_model(None, model, X=frame)
    metrics = client.get_run(run.info.run_id).data.metrics
    assert metrics["anomaly_rows_fitted"] == ROWS and metrics["anomaly_columns_used"] == len(model.used)
    assert 0.005 < metrics["anomaly_share_above_0.99"] < 0.015
    assert register_anomaly(client, run.info.run_id) == "1"
    assert str(client.get_model_version_by_alias(ANOMALY_MODEL_NAME, "champion").version) == "1"
    loaded = load_anomaly("champion")
    assert isinstance(loaded, AnomalyModel)
    np.testing.assert_array_equal(loaded.score(frame), model.score(frame))
    pyfunc = mlflow.pyfunc.load_model(f"models:/{ANOMALY_MODEL_NAME}@champion")
    np.testing.assert_array_equal(np.asarray(pyfunc.predict(frame[model.used].head(50))), model.score(frame.head(50)))

    later = client.create_run(experiment).info.run_id  # by run id, with no active run
    log_anomaly_model(client, AnomalyModel().fit(frame.head(5_000)), run_id=later)
    assert register_anomaly(client, later) == "2"
    assert load_anomaly(client=client).rows_fitted == 5_000


def test_a_simulated_feature_set_scores_with_spread():
    from features.build import build_features, integrate
    from features.prices import PriceBands
    from features.simulator import simulate

    world = simulate(20_000, seed=5)
    frame = integrate(world.declarations, world.manifests, world.traders)
    frame = frame.sort_values(["declaration_date", "declaration_id"], kind="stable").reset_index(drop=True)
    fs = build_features(frame, bands=PriceBands.fit(frame))
    model = fit_anomaly(fs)
    assert not any(c.endswith(("_hit_rate", "_revenue_rate", "_inspections")) for c in model.columns)
    assert {"unit_price_zscore", "manifest_mass_ratio", "log_declared_value"} <= set(model.used)
    score = model.score(fs.X)
    assert len(score) == len(fs.X) and np.isfinite(score).all()
    assert score.std() > 0.2 and np.quantile(score, 0.9) - np.quantile(score, 0.1) > 0.6
    assert 0.005 < (score > 0.99).mean() < 0.02
    top = np.argsort(-score)[:5]
    assert all(len(sentences) >= 1 for sentences in model.explain(fs.X.iloc[top]))
