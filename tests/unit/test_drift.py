"""Drift statistics (training/drift.py) on controlled samples."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.drift import categorical_drift, feature_drift, numeric_drift, psi, wilson


def test_psi_is_zero_for_identical_and_grows_with_shift():
    rng = np.random.default_rng(0)
    reference = pd.Series(rng.normal(size=20_000))
    same = numeric_drift(reference, pd.Series(rng.normal(size=5_000)))
    shifted = numeric_drift(reference, pd.Series(rng.normal(0.5, size=5_000)))
    moved = numeric_drift(reference, pd.Series(rng.normal(1.5, size=5_000)))
    assert same["psi"] < 0.02 and same["p_value"] > 0.001
    assert 0.1 < shifted["psi"] < moved["psi"]
    assert shifted["p_value"] < 1e-6 and shifted["test"] == "ks"
    assert psi(np.array([10, 10]), np.array([10, 10])) == 0


def test_missing_values_are_a_bin_and_a_rate():
    reference = pd.Series(np.arange(1000, dtype="float64"))
    current = pd.Series(np.where(np.arange(1000) % 2 == 0, np.nan, np.arange(1000)))
    result = numeric_drift(reference, current)
    assert result["missing_reference"] == 0 and result["missing_current"] == pytest.approx(0.5)
    assert result["psi"] > 1


def test_categorical_drift_buckets_rare_and_new_categories():
    reference = pd.Series(["CN"] * 500 + ["US"] * 500)
    assert categorical_drift(reference, pd.Series(["CN"] * 50 + ["US"] * 50))["psi"] == pytest.approx(0)
    new = categorical_drift(reference, pd.Series(["CN"] * 50 + ["XX"] * 50))
    assert new["psi"] > 1 and new["test"] == "chi2" and new["p_value"] < 1e-6


def test_feature_table_is_sorted_worst_first():
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({"a": rng.normal(size=3000), "b": rng.normal(size=3000), "c": rng.choice(["x", "y"], 3000)})
    cur = pd.DataFrame({"a": rng.normal(size=3000), "b": rng.normal(2, size=3000), "c": rng.choice(["x", "y"], 3000)})
    table = feature_drift(ref, cur, categorical=["c"])
    assert table["feature"].iloc[0] == "b" and set(table["kind"]) == {"numeric", "categorical"}


def test_wilson_interval_covers_the_rate():
    low, high = wilson(30, 100)
    assert low < 0.3 < high and high - low < 0.2
    assert wilson(0, 50)[0] == pytest.approx(0, abs=1e-12) and wilson(0, 50)[1] > 0
    assert all(np.isnan(wilson(0, 0)))
