"""Training at scale: features built for the labelled rows alone (and the drift reference) are exactly those built
among all rows, so the model is the same; the ablation's screening fits learn from a bounded, seeded sample; the
retrain records what it read and its fitting cost."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from features.build import FeatureSet, build_features, integrate
from features.labels import labelled
from features.prices import PriceBands
from features.profiles import first_filings
from tests.conftest import FAST
from training import pipeline
from training.drift import reference_sample
from training.models import Split, fit_risk_model, time_split
from training.pipeline import explicit_split, featured_rows, screening_split, select_groups


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["declaration_date", "declaration_id"], kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def whole(world) -> tuple[pd.DataFrame, Split, PriceBands, FeatureSet]:
    """The world's integrated declarations, their time split, price bands and features built among all rows."""
    frame = _sorted(integrate(world.declarations, world.manifests, world.traders))
    split = time_split(frame["declaration_date"], labelled(frame), positive=frame["fraud"].fillna(0).to_numpy() == 1)
    bands = PriceBands.fit(frame[frame["declaration_date"] < split.valid_start])
    return frame, split, bands, build_features(frame, bands=bands)


def _alone(frame: pd.DataFrame, rows: np.ndarray, bands: PriceBands, history: pd.DataFrame) -> FeatureSet:
    return build_features(frame[rows], history=history, bands=bands, batch_first=first_filings(frame))


def _assert_same_rows(full: FeatureSet, rows: np.ndarray, alone: FeatureSet) -> None:
    pd.testing.assert_frame_equal(full.X.loc[rows].reset_index(drop=True), alone.X, check_exact=True)
    pd.testing.assert_frame_equal(full.meta.loc[rows].reset_index(drop=True), alone.meta, check_exact=True)
    assert np.array_equal(full.price_reference_log[rows].to_numpy(), alone.price_reference_log.to_numpy(),
                          equal_nan=True)
    assert (full.categorical, full.numeric, full.reference_columns) == \
        (alone.categorical, alone.numeric, alone.reference_columns)


def test_the_labelled_rows_get_exactly_their_features_among_all_rows(whole):
    frame, split, bands, full = whole
    featured, drift = featured_rows(frame, split)
    assert labelled(frame)[featured & ~drift].all() and featured.sum() < len(frame)
    _assert_same_rows(full, featured, _alone(frame, featured, bands, frame))


def test_so_do_an_explicit_splits_rows_with_a_label_free_history(world):
    """`aduana evaluate`: the test rows' labels never feed the profiles, built alone or among all rows."""
    d = world.declarations
    frame, split, history = explicit_split(d.iloc[:15_000], d.iloc[15_000:])
    frame = _sorted(frame)
    bands = PriceBands.fit(frame[frame["declaration_date"] < split.valid_start])
    featured, _ = featured_rows(frame, split)
    full = build_features(frame, history=history, bands=bands)
    _assert_same_rows(full, featured, _alone(frame, featured, bands, history))


def test_the_same_model_is_fitted_on_the_labelled_rows_alone(whole):
    frame, split, bands, full = whole
    featured, _ = featured_rows(frame, split)
    alone = _alone(frame, featured, bands, frame)
    narrowed = replace(split, train=split.train[featured], valid=split.valid[featured],
                       holdout=split.holdout[featured])
    before = fit_risk_model(full, split, FAST).predict(full.X.loc[split.holdout])
    after = fit_risk_model(alone, narrowed, FAST).predict(alone.X.loc[narrowed.holdout])
    assert np.array_equal(before.to_numpy(), after.to_numpy(), equal_nan=True)


def test_a_training_counts_its_history_and_logs_the_drift_reference_of_all_rows(trained, whole, world):
    frame, split, _, full = whole
    counts = trained.counts
    assert counts["rows"] == len(world.declarations) and counts["featured"] == len(trained.features.X)
    assert counts["train"] + counts["valid"] + counts["holdout"] < counts["featured"] < counts["rows"]
    # the reference monitoring compares windows with: the same sample of recent declarations, labelled or not
    expected = reference_sample(full.X, full.meta["declaration_date"], split.valid_start)
    pd.testing.assert_frame_equal(trained.drift_reference.reset_index(drop=True), expected.reset_index(drop=True),
                                  check_exact=True)
    assert not labelled(trained.features.meta.loc[trained.drift_rows]).all()
    assert {"features_s", "ablation_s", "model_fit_s", "reference_fit_s"} <= set(trained.timings)
    fits = sum(trained.timings[k] for k in ("ablation_s", "model_fit_s", "reference_fit_s"))
    assert trained.fit_seconds_per_100k_labelled == pytest.approx(fits / (counts["train"] + counts["valid"]) * 1e5)


def test_the_screening_sample_is_seeded_bounded_and_leaves_validation_whole(whole):
    _, split, _, _ = whole
    assert screening_split(split, int(split.train.sum()), seed=7) is split  # small enough: every training row
    sample = screening_split(split, 300, seed=7)
    assert sample.train.sum() == 300 and not (sample.train & ~split.train).any()
    assert np.array_equal(sample.valid, split.valid) and np.array_equal(sample.holdout, split.holdout)
    assert np.array_equal(sample.train, screening_split(split, 300, seed=7).train)
    assert not np.array_equal(sample.train, screening_split(split, 300, seed=8).train)


def test_the_ablation_screens_on_the_sample_and_scores_the_whole_validation_window(whole, monkeypatch):
    _, split, _, full = whole
    fitted, scored = [], []
    fit, score = pipeline.fit_risk_model, pipeline.validation_score
    monkeypatch.setattr(pipeline, "fit_risk_model", lambda fs, s, *a, **k: (fitted.append(s), fit(fs, s, *a, **k))[1])
    monkeypatch.setattr(pipeline, "validation_score", lambda m, fs, s: (scored.append(s), score(m, fs, s))[1])
    lines = []
    select_groups(full, split, replace(FAST, ablation=True, screening_rows=400), lines.append)
    assert fitted and all(s.train.sum() == 400 for s in fitted)
    assert all(np.array_equal(s.valid, split.valid) for s in scored)
    assert any(f"a sample of 400 of {int(split.train.sum()):,} training rows" in line for line in lines)


def test_screening_rows_below_one_is_refused():
    with pytest.raises(ValueError, match="screening_rows"):
        replace(FAST, screening_rows=0)
