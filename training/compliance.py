"""Design-based estimates of the fraud rate and of the revenue at stake among ALL declarations of a period.

Outcomes (fraud 0/1, revenue recovered ≥ 0) are known only for inspected declarations, and most of those
were not picked at random, so their raw fraud rate says little about the declarations that were released.
These functions weight each inspected row by its known inclusion probability (Horvitz & Thompson, 1952) to
estimate the rate and the total over the whole period, released declarations included.

Design assumed: a stratified simple random sample without replacement. Rows selected with certainty (model top
picks, rule hits, targeted picks) have probability 1; the other rows are drawn by SRS without replacement, each
with probability m/M. Rows of equal probability (rounded to 12 digits) form one stratum; two draws that happen
to share a probability are pooled into one stratum. A design where every row has its own probability (e.g.
probability-proportional-to-size) is not this design: its strata hold one row each and give no estimate.

A NaN outcome is a row not selected, or selected with no result yet. Both are handled the same way: within each
stratum the observed rows are taken as a simple random sample of the stratum (missing at random), so the
stratum total is M_h·ȳ_h. With every selected row observed and m_h = π_h·M_h this is exactly the HT total
Σ y_i/π_i; with pending results it is HT with the weights of the stratum's respondents scaled up to M_h. A
certainty row without an outcome is therefore reweighted among the certainty rows that have one, and adds
sampling variance, since the certain part is then no longer known exactly.

Variance: stratified SRS without replacement with finite population correction (Cochran, Sampling Techniques,
3rd ed., 1977, ch. 5): Σ_h M_h²(1 − m_h/M_h)s_h²/m_h. A fully observed stratum (a certainty stratum with every
outcome) adds 0. A stratum with one observed row has no s_h²; it takes the largest variance values within the
known range can have: 0.25 (p = 0.5) for fraud, (largest observed revenue)²/4 for revenue, and `method` says so.

Interval for the rate: Korn & Graubard (1998, Survey Methodology 24(2):193-201), a Clopper-Pearson interval at
the effective sample size n* = p̂(1 − p̂)/v̂ and x* = n*·p̂, computed on the part that is not fully observed and
mapped back to the period adding the fully observed part exactly. Interval for revenue: normal, approximate for
skewed revenue (on a simulated period with 30 sampled rows it covered about 70 % at the 90 % level), with no upper
bound where the sampled outcomes do not vary.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Literal

import numpy as np
import pandas as pd

STRATUM_DIGITS = 12  # probabilities equal to 12 digits form one stratum
ROUND_DIGITS = 6  # floats in to_dict
FRAUD_FALLBACK_VARIANCE = 0.25  # p(1 − p) at p = 0.5: the largest a 0/1 outcome can have

Measure = Literal["fraud_rate", "revenue_at_stake"]


@dataclass(frozen=True)
class Estimate:
    """A rate (fraud) or a total (revenue) over the period, with its interval; None when nothing can be said."""

    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    level: float
    population: int  # N: declarations in the period
    observed: int  # rows with a known outcome
    certain: int  # rows with probability 1
    sampled: int  # observed rows with probability < 1
    method: str

    def to_dict(self) -> dict:
        """JSON-able dict, floats rounded to 6 places."""
        return {key: round(value, ROUND_DIGITS) if isinstance(value, float) else value
                for key, value in asdict(self).items()}


@dataclass(frozen=True)
class _Stratum:
    """One stratum of equal inclusion probability: its size, its observed rows and their moments."""

    probability: float
    size: int  # M_h
    observed: int  # m_h
    mean: float  # ȳ_h over observed rows (NaN when none)
    variance: float | None  # s_h² (ddof 1), None with fewer than two observed rows
    observed_total: float  # Σ y over observed rows

    @property
    def complete(self) -> bool:
        return self.observed == self.size


@dataclass(frozen=True)
class _Totals:
    """The HT total split into its fully observed (exact) part and the part estimated from a sample."""

    variance: float
    exact_total: float  # Σ y over fully observed strata
    estimated_total: float  # Σ M_h·ȳ_h over the other strata
    estimated_rows: int  # rows in strata that are not fully observed
    estimated_observed: int  # observed rows in those strata
    used_fallback: bool

    @property
    def total(self) -> float:
        return self.exact_total + self.estimated_total


def _validated(outcome: np.ndarray, probability: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Outcome and probability as 1-D float arrays of equal length; ValueError on an invalid probability or level."""
    y = np.asarray(outcome, dtype="float64")
    p = np.asarray(probability, dtype="float64")
    if y.ndim != 1 or p.shape != y.shape:
        raise ValueError(f"outcome and probability must be 1-D arrays of equal length, got {y.shape} and {p.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    bad = np.isnan(p) | (p <= 0) | (p > 1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"inclusion probabilities must lie in (0, 1] and not be NaN: {int(bad.sum())} rows are not "
                         f"(first: row {first}, probability {p[first]})")
    return y, p


def _strata(y: np.ndarray, p: np.ndarray) -> list[_Stratum]:
    """Rows grouped by equal probability (rounded to 12 digits), with the moments of their observed outcomes."""
    levels, inverse = np.unique(np.round(p, STRATUM_DIGITS), return_inverse=True)
    strata = []
    for index, level in enumerate(levels):
        values = y[inverse == index]
        seen = values[~np.isnan(values)]
        strata.append(_Stratum(
            probability=float(level), size=len(values), observed=len(seen),
            mean=float(seen.mean()) if len(seen) else float("nan"),
            variance=float(seen.var(ddof=1)) if len(seen) > 1 else None,
            observed_total=float(seen.sum())))
    return strata


def _totals(strata: list[_Stratum], fallback_variance: float) -> _Totals | None:
    """Stratified HT total and its SRS-without-replacement variance; None when a stratum has no observed row."""
    if any(stratum.observed == 0 for stratum in strata):
        return None
    variance = exact_total = estimated_total = 0.0
    estimated_rows = estimated_observed = 0
    used_fallback = False
    for stratum in strata:
        if stratum.complete:
            exact_total += stratum.observed_total
            continue
        estimated_total += stratum.size * stratum.mean
        estimated_rows += stratum.size
        estimated_observed += stratum.observed
        s2 = stratum.variance
        if s2 is None:
            s2, used_fallback = fallback_variance, True
        fpc = 1 - stratum.observed / stratum.size
        variance += stratum.size ** 2 * fpc * s2 / stratum.observed
    return _Totals(variance, exact_total, estimated_total, estimated_rows, estimated_observed, used_fallback)


def _counts(y: np.ndarray, p: np.ndarray) -> dict[str, int]:
    """The row counts every Estimate carries."""
    seen = ~np.isnan(y)
    certain = np.round(p, STRATUM_DIGITS) == 1
    return {"population": len(y), "observed": int(seen.sum()), "certain": int(certain.sum()),
            "sampled": int((seen & ~certain).sum())}


def _method(base: str, totals: _Totals | None) -> str:
    """The method text, naming an exact result and the single-row fallback where they apply."""
    if totals is None:
        return f"{base}; no estimate: a stratum of equal probability has no observed outcome"
    if totals.estimated_rows == 0:
        return "Horvitz-Thompson; exact (every row observed)"
    return f"{base}; single-row stratum variance fallback" if totals.used_fallback else base


def korn_graubard(rate: float, variance: float, observed: int, level: float) -> tuple[float, float]:
    """Clopper-Pearson interval at n* = p(1 − p)/v (capped at `observed`) and x* = n*·p; n* = observed when p is 0 or 1."""
    rate = min(max(rate, 0.0), 1.0)
    if rate in (0.0, 1.0) or variance <= 0:
        n = float(observed)
    else:
        n = min(rate * (1 - rate) / variance, float(observed))
    # imported here: scipy.stats takes ~0.5 s to import, which the API's start would pay for nothing
    from scipy.stats import beta

    x = n * rate
    alpha = 1 - level
    low = float(beta.ppf(alpha / 2, x, n - x + 1)) if x > 0 else 0.0
    high = float(beta.ppf(1 - alpha / 2, x + 1, n - x)) if n - x > 0 else 1.0
    return low, high


def fraud_rate(outcome: np.ndarray, probability: np.ndarray, level: float = 0.90) -> Estimate:
    """Fraud rate among all N rows: HT total / N with a Korn-Graubard interval. `outcome` is 0/1, NaN where unknown."""
    y, p = _validated(outcome, probability, level)
    seen = y[~np.isnan(y)]
    if not np.isin(seen, (0.0, 1.0)).all():
        raise ValueError("fraud outcomes must be 0, 1 or NaN")
    counts = _counts(y, p)
    base = "Horvitz-Thompson; Korn-Graubard interval"
    totals = _totals(_strata(y, p), FRAUD_FALLBACK_VARIANCE) if len(y) else None
    if totals is None:
        return Estimate(None, None, None, level, method=_method(base, totals), **counts)
    n = len(y)
    rate = totals.total / n
    if totals.estimated_rows == 0:
        return Estimate(rate, rate, rate, level, method=_method(base, totals), **counts)
    estimated_rate = totals.estimated_total / totals.estimated_rows
    low, high = korn_graubard(estimated_rate, totals.variance / totals.estimated_rows ** 2,
                              totals.estimated_observed, level)
    return Estimate(rate, (totals.exact_total + totals.estimated_rows * low) / n,
                    (totals.exact_total + totals.estimated_rows * high) / n, level,
                    method=_method(base, totals), **counts)


def revenue_at_stake(outcome: np.ndarray, probability: np.ndarray, level: float = 0.90) -> Estimate:
    """Total revenue at stake over all N rows: HT total with a normal interval, approximate for skewed revenue.

    The lower bound is clipped at the revenue already observed, which the total cannot be below. Where the rows
    that are not fully observed all show the same outcome (typically: no sampled row had revenue) the variance is 0
    and no upper bound can be given: ci_high is None.
    """
    y, p = _validated(outcome, probability, level)
    seen = y[~np.isnan(y)]
    if not (np.isfinite(seen) & (seen >= 0)).all():
        raise ValueError("revenue outcomes must be finite and ≥ 0, or NaN")
    counts = _counts(y, p)
    base = "Horvitz-Thompson; normal interval (approximate for skewed revenue)"
    fallback = float(seen.max()) ** 2 / 4 if len(seen) else 0.0  # the largest variance within [0, max observed]
    totals = _totals(_strata(y, p), fallback) if len(y) else None
    if totals is None:
        return Estimate(None, None, None, level, method=_method(base, totals), **counts)
    from scipy.stats import norm  # imported here, as `beta` in korn_graubard

    half_width = float(norm.ppf((1 + level) / 2)) * totals.variance ** 0.5
    low = max(totals.total - half_width, float(seen.sum()))
    if totals.estimated_rows and totals.variance == 0:
        # e.g. no sampled row had revenue: a zero-width normal interval would claim certainty it does not have
        return Estimate(totals.total, low, None, level, **counts,
                        method=f"{_method(base, totals)}; no upper bound: the sampled outcomes do not vary")
    return Estimate(totals.total, low, totals.total + half_width, level, method=_method(base, totals), **counts)


_ESTIMATORS = {"fraud_rate": fraud_rate, "revenue_at_stake": revenue_at_stake}


def by_group(frame: pd.DataFrame, group: str, outcome: str, probability: str, level: float = 0.90,
             min_rows: int = 1, *, measure: Measure = "fraud_rate") -> dict[str, Estimate]:
    """Domain estimates of `measure`: one Estimate per value of `group`, keyed str(value) (None/NaN: "nan").

    The group is known for every row, so each domain is estimated on its own rows, stratified by probability
    within the domain; a domain where a stratum has no observed row gets no estimate. A group with fewer than
    `min_rows` observed rows keeps its counts but no estimate, so the populations still add up to N.
    """
    estimator = _ESTIMATORS[measure]
    _validated(frame[outcome].to_numpy(dtype="float64"), frame[probability].to_numpy(dtype="float64"), level)
    out: dict[str, Estimate] = {}
    for key, rows in frame.groupby(group, dropna=False, sort=True):
        estimate = estimator(rows[outcome].to_numpy(dtype="float64"), rows[probability].to_numpy(dtype="float64"),
                             level)
        if estimate.observed < min_rows:
            estimate = replace(estimate, estimate=None, ci_low=None, ci_high=None,
                               method=f"{estimate.method}; no estimate: fewer than {min_rows} observed rows")
        out[str(key)] = estimate
    return out
