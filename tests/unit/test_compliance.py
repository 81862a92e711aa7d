"""HT estimates of the fraud rate and revenue at stake (training/compliance.py) on simulated periods with known truth."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from training.compliance import Estimate, by_group, fraud_rate, korn_graubard, revenue_at_stake

REPLICATIONS = 400
N = 5000
CERTAIN = 100


def _population(rate: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A fixed period: model scores, fraud 0/1 (more likely at high scores) and revenue (> 0 only for fraud)."""
    rng = np.random.default_rng(seed)
    score = rng.normal(size=N)
    weight = np.exp(score)
    fraud = (rng.random(N) < np.clip(rate * weight / weight.mean(), 0, 1)).astype(float)
    revenue = fraud * rng.lognormal(mean=7, sigma=1.2, size=N)
    return score, fraud, revenue


def _split(score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the CERTAIN top scores, and the rest."""
    top = np.argsort(-score, kind="stable")[:CERTAIN]
    return top, np.setdiff1d(np.arange(N), top)


def _design(split: tuple[np.ndarray, np.ndarray], sampled: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Top rows selected with certainty, then an SRS of `sampled` among the rest: (selected, probability)."""
    rng = np.random.default_rng(seed)
    top, rest = split
    selected = np.zeros(N, dtype=bool)
    selected[top] = True
    selected[rng.choice(rest, size=sampled, replace=False)] = True
    probability = np.full(N, sampled / len(rest))
    probability[top] = 1.0
    return selected, probability


def _replicate(truth_values: np.ndarray, score: np.ndarray, sampled: int, estimator, hide: float = 0.0,
               hide_certain: float = 0.0) -> list[Estimate]:
    """REPLICATIONS designs on one fixed period; `hide` / `hide_certain` blank a random share of selected outcomes."""
    estimates = []
    split = _split(score)
    for seed in range(REPLICATIONS):
        selected, probability = _design(split, sampled, seed)
        rng = np.random.default_rng(10_000 + seed)
        pending = rng.random(N) < np.where(probability == 1, hide_certain, hide)
        outcome = np.where(selected & ~pending, truth_values, np.nan)
        estimates.append(estimator(outcome, probability))
    return estimates


def _assert_unbiased(estimates: list[Estimate], truth: float) -> None:
    values = np.array([e.estimate for e in estimates])
    standard_error = values.std(ddof=1) / np.sqrt(len(values))
    assert standard_error > 0
    assert abs(values.mean() - truth) < 3 * standard_error, (values.mean(), truth, standard_error)


def _coverage(estimates: list[Estimate], truth: float) -> float:
    return float(np.mean([e.ci_low <= truth <= e.ci_high for e in estimates]))


def test_fraud_rate_is_unbiased_and_its_90pct_interval_covers():
    score, fraud, _ = _population(0.06, seed=1)
    estimates = _replicate(fraud, score, 30, fraud_rate)
    truth = fraud.mean()
    assert 0.04 < truth < 0.08
    # the certain rows alone are a biased view: the estimator has to correct for it
    assert fraud[np.argsort(-score)[:CERTAIN]].mean() > 2 * truth
    _assert_unbiased(estimates, truth)
    assert _coverage(estimates, truth) >= 0.85
    first = estimates[0]
    assert (first.population, first.certain, first.sampled, first.observed) == (N, CERTAIN, 30, CERTAIN + 30)
    assert first.method == "Horvitz-Thompson; Korn-Graubard interval"


def test_rare_fraud_interval_still_covers_with_ten_sampled_rows():
    score, fraud, _ = _population(0.01, seed=2)
    estimates = _replicate(fraud, score, 10, fraud_rate)
    truth = fraud.mean()
    assert 0.005 < truth < 0.02
    assert _coverage(estimates, truth) >= 0.85
    assert any(e.ci_low < e.ci_high for e in estimates)


def test_all_zero_sample_gives_the_exact_clopper_pearson_bound_mapped_to_the_period():
    # 100 certain rows with 20 frauds, 10 of 900 other rows sampled and clean: the random part is CP(0, 10).
    outcome = np.full(1000, np.nan)
    outcome[:100] = np.r_[np.ones(20), np.zeros(80)]
    outcome[100:110] = 0.0
    probability = np.r_[np.ones(100), np.full(900, 10 / 900)]
    estimate = fraud_rate(outcome, probability, level=0.90)
    cp_upper = 1 - 0.05 ** (1 / 10)
    assert estimate.estimate == pytest.approx(0.02)
    assert estimate.ci_low == pytest.approx(0.02)
    assert estimate.ci_high == pytest.approx((20 + 900 * cp_upper) / 1000)


def test_korn_graubard_is_clopper_pearson_at_the_actual_size_for_srs():
    # SRS without fpc: v = p(1 - p)/n, so n* = n and the interval is CP(3, 20).
    low, high = korn_graubard(0.15, 0.15 * 0.85 / 20, 20, 0.95)
    assert (low, high) == pytest.approx((0.0321, 0.3789), abs=1e-4)


def test_certainty_stratum_covering_the_period_is_exact():
    rng = np.random.default_rng(3)
    fraud = (rng.random(200) < 0.1).astype(float)
    revenue = fraud * rng.lognormal(6, 1, 200)
    rate = fraud_rate(fraud, np.ones(200))
    total = revenue_at_stake(revenue, np.ones(200))
    assert rate.estimate == pytest.approx(fraud.mean())
    assert rate.ci_low == rate.ci_high == rate.estimate
    assert total.estimate == pytest.approx(revenue.sum())
    assert total.ci_low == total.ci_high == total.estimate
    assert rate.method == "Horvitz-Thompson; exact (every row observed)"


def test_certain_rows_alone_say_nothing_about_released_rows():
    outcome = np.r_[np.ones(10), np.full(90, np.nan)]
    estimate = fraud_rate(outcome, np.r_[np.ones(10), np.full(90, 0.1)])
    assert (estimate.estimate, estimate.ci_low, estimate.ci_high) == (None, None, None)
    assert (estimate.population, estimate.certain, estimate.sampled) == (100, 10, 0)
    assert "no estimate" in estimate.method


@pytest.mark.parametrize("bad", [0.0, -0.2, 1.5, np.nan])
def test_invalid_inclusion_probabilities_raise(bad):
    probability = np.full(10, 0.5)
    probability[3] = bad
    with pytest.raises(ValueError, match=r"inclusion probabilities must lie in \(0, 1\].*row 3"):
        fraud_rate(np.zeros(10), probability)
    with pytest.raises(ValueError, match="inclusion probabilities"):
        revenue_at_stake(np.zeros(10), probability)


@pytest.mark.parametrize(("estimator", "outcome", "message"), [
    (fraud_rate, [0.0, 2.0], "0, 1 or NaN"),
    (revenue_at_stake, [5.0, -1.0], "≥ 0"),
])
def test_invalid_outcomes_raise(estimator, outcome, message):
    with pytest.raises(ValueError, match=message):
        estimator(np.array(outcome), np.ones(2))


def test_revenue_total_is_unbiased_and_its_lower_bound_is_the_observed_revenue():
    score, fraud, revenue = _population(0.06, seed=4)
    estimates = _replicate(revenue, score, 30, revenue_at_stake)
    truth = revenue.sum()
    _assert_unbiased(estimates, truth)
    bounded = [e for e in estimates if e.ci_high is not None]
    # the normal interval is approximate on skewed revenue (about 0.70 here), but not meaningless
    assert _coverage(bounded, truth) >= 0.6
    split = _split(score)
    for seed, estimate in enumerate(estimates):
        selected, probability = _design(split, 30, seed)
        assert estimate.ci_low >= revenue[selected].sum() - 1e-6
        sampled_revenue = revenue[selected & (probability < 1)]
        if sampled_revenue.max() == 0:  # no sampled row had revenue: no upper bound rather than a zero-width one
            assert estimate.ci_high is None and "no upper bound" in estimate.method
        else:
            assert estimate.ci_low <= estimate.estimate < estimate.ci_high


def test_nonresponse_within_strata_keeps_the_estimate_unbiased():
    score, fraud, _ = _population(0.06, seed=5)
    # 60 sampled, a random quarter of them and a tenth of the certain rows still pending
    estimates = _replicate(fraud, score, 60, fraud_rate, hide=0.25, hide_certain=0.10)
    truth = fraud.mean()
    _assert_unbiased(estimates, truth)
    assert _coverage(estimates, truth) >= 0.85
    assert all(e.observed < CERTAIN + 60 for e in estimates)
    assert all(e.certain == CERTAIN for e in estimates)


def test_single_observed_row_in_a_stratum_takes_the_conservative_variance():
    outcome = np.r_[np.zeros(50), 0.0, np.full(49, np.nan), 1.0, 1.0, np.full(48, np.nan)]
    probability = np.r_[np.ones(50), np.full(50, 0.02), np.full(50, 0.04)]
    estimate = fraud_rate(outcome, probability)
    assert estimate.estimate == pytest.approx(50 / 150)
    assert estimate.ci_low < estimate.estimate < estimate.ci_high
    assert estimate.method.endswith("single-row stratum variance fallback")


def test_by_group_gives_one_estimate_per_group_adding_up_to_the_period():
    score, fraud, revenue = _population(0.06, seed=6)
    selected, probability = _design(_split(score), 300, seed=0)
    frame = pd.DataFrame({"port": np.random.default_rng(7).choice(["AICM", "MZO", "VER"], size=N),
                          "fraud": np.where(selected, fraud, np.nan),
                          "revenue": np.where(selected, revenue, np.nan), "probability": probability})
    frame.loc[frame.index[:5], "port"] = None  # a missing port is a group of its own
    groups = by_group(frame, "port", "fraud", "probability")
    assert set(groups) == {"AICM", "MZO", "VER", "nan"}
    assert sum(e.population for e in groups.values()) == N
    assert sum(e.observed for e in groups.values()) == int(selected.sum())
    ver = frame[frame["port"] == "VER"]
    assert groups["VER"] == fraud_rate(ver["fraud"].to_numpy(), ver["probability"].to_numpy())
    revenue_groups = by_group(frame, "port", "revenue", "probability", measure="revenue_at_stake")
    assert revenue_groups["MZO"].method.startswith("Horvitz-Thompson; normal interval")
    sparse = by_group(frame, "port", "fraud", "probability", min_rows=50)
    missing = sparse["nan"]
    assert missing.estimate is None and missing.population == 5
    assert sparse["VER"].estimate == groups["VER"].estimate


def test_to_dict_is_json_and_rounded():
    estimate = Estimate(1 / 3, 0.1234567891, 0.5, 0.9, 10, 4, 2, 2, "m")
    data = estimate.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["estimate"] == 0.333333 and data["ci_low"] == 0.123457 and data["population"] == 10
    assert Estimate(None, None, None, 0.9, 0, 0, 0, 0, "m").to_dict()["estimate"] is None
