"""A feature declared once in the catalogue, with its two computations, reaches every consumer: the feature set
(batch), the one-row path (the API), the reasons officers read, the drift monitor and the ablation groups."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from features import catalogue
from features.build import build_features, integrate
from features.catalogue import Feature
from features.context import ScoringContext
from features.labels import labelled
from features.row import integrate_row, row_features
from serving.reasons import explain
from training.models import FitConfig, fit_risk_model, time_split
from training.monitoring import monitor

MADE_UP = Feature(
    "made_up_value_signal", "documents", family="office", alerts=True,
    batch=lambda frame: np.log1p(frame["declared_value"].astype("float64")),
    one=lambda row: math.log1p(float(row["declared_value"])),
)


@pytest.fixture
def declared(monkeypatch):
    """The catalogue with one more feature, as a developer adding it would write it."""
    def add(feature: Feature) -> Feature:
        kept = tuple(f for f in catalogue.CATALOGUE if f.name != feature.name)
        monkeypatch.setattr(catalogue, "CATALOGUE", (*kept, feature))
        monkeypatch.setattr(catalogue, "BY_NAME", {**catalogue.BY_NAME, feature.name: feature})
        return feature
    return add


@pytest.fixture(scope="module")
def context(world) -> ScoringContext:
    return ScoringContext.from_tables(world.declarations.iloc[:12_000], world.manifests, world.traders)


def test_a_declared_feature_is_in_the_feature_set_and_equal_on_the_one_row_path(declared, context, world):
    feature = declared(MADE_UP)
    arriving = world.declarations.iloc[12_000:12_040].reset_index(drop=True)
    fs = build_features(integrate(arriving, context=context), bands=context.price_bands, profiles=context.profiles)
    assert feature.name in fs.numeric and feature.name in fs.model_columns(("documents",))
    assert feature.name not in fs.model_columns(())  # its group decides whether the ablation keeps it
    for i, record in enumerate(arriving.to_dict("records")):
        one = row_features(integrate_row(record, context), context.price_bands, context)
        assert one[feature.name] == pytest.approx(fs.X.loc[i, feature.name], rel=1e-12)


def test_a_declared_feature_speaks_in_its_reason_family_and_alerts_as_declared(declared, world):
    feature = declared(MADE_UP)
    frame = integrate(world.declarations, world.manifests, world.traders)
    fs = build_features(frame)
    split = time_split(fs.meta["declaration_date"], labelled(frame))
    model = fit_risk_model(fs, split, FitConfig(iterations=30, threads=2), columns=[feature.name], revenue=False)

    rows = fs.X.index[split.holdout][:200]
    reasons = explain(model, fs.X.loc[rows], frame.loc[rows])
    said = [r for reason in reasons for r in reason]
    assert said and all(r.startswith("entry through office ") for r in said)  # the family the catalogue gives

    reference, current = fs.X.iloc[:5000], fs.X.iloc[5000:10_000].copy()
    current[feature.name] += 3.0
    window = (pd.Timestamp("2024-01-01"),) * 2
    no_outcomes = pd.DataFrame(columns=["lane", "selected_by", "risk_score", "expected_revenue", "fraud", "revenue"])
    assert feature.name in monitor(model, "1", reference, current, no_outcomes, window).drifted_features
    declared(replace(feature, alerts=False))
    quiet = monitor(model, "1", reference, current, no_outcomes, window)
    assert feature.name not in quiet.drifted_features
    assert quiet.features.set_index("feature").loc[feature.name, "psi"] > 0.25  # still measured and reported
