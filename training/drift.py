"""Drift statistics with numpy and scipy: PSI on reference bins, KS for numbers, chi-square for categories.

Pure functions: a reference sample and a current sample in, one row of figures per feature out.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from features.entities import MISSING

EPS = 1e-4  # floor for empty bins, so PSI stays finite
TOP_CATEGORIES = 20  # categories beyond the reference's most frequent go to one "other" bin


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two binned distributions (counts or shares)."""
    e = np.maximum(expected / max(expected.sum(), 1), EPS)
    a = np.maximum(actual / max(actual.sum(), 1), EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_drift(reference: pd.Series, current: pd.Series, bins: int = 10) -> dict:
    """PSI over the reference's deciles (missing values are a bin of their own) and the two-sample KS test."""
    ref, cur = reference.to_numpy(dtype="float64"), current.to_numpy(dtype="float64")
    ref_ok, cur_ok = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    edges = np.unique(np.quantile(ref_ok, np.linspace(0, 1, bins + 1)[1:-1])) if len(ref_ok) else np.array([])
    count = lambda v, ok: np.append(np.bincount(np.searchsorted(edges, ok, side="right"), minlength=len(edges) + 1),  # noqa: E731
                                    len(v) - len(ok))
    result = {"kind": "numeric", "psi": psi(count(ref, ref_ok), count(cur, cur_ok)),
              "missing_reference": 1 - len(ref_ok) / max(len(ref), 1),
              "missing_current": 1 - len(cur_ok) / max(len(cur), 1), "test": "ks", "statistic": np.nan,
              "p_value": np.nan}
    if len(ref_ok) and len(cur_ok):
        from scipy import stats  # imported here: ~0.5 s, which the API's start would pay for nothing

        ks = stats.ks_2samp(ref_ok, cur_ok, method="asymp")
        result.update(statistic=float(ks.statistic), p_value=float(ks.pvalue))
    return result


def categorical_drift(reference: pd.Series, current: pd.Series, top: int = TOP_CATEGORIES) -> dict:
    """PSI over the reference's most frequent categories plus "other", and the chi-square goodness-of-fit test."""
    ref, cur = reference.astype("str"), current.astype("str")
    kept = [c for c in ref.value_counts().index[:top] if c != MISSING]
    bucket = lambda s: s.where(s.isin(kept) | (s == MISSING), "__other__")  # noqa: E731
    order = [*kept, "__other__", MISSING]
    ref_counts = bucket(ref).value_counts().reindex(order, fill_value=0).to_numpy(dtype="float64")
    cur_counts = bucket(cur).value_counts().reindex(order, fill_value=0).to_numpy(dtype="float64")
    result = {"kind": "categorical", "psi": psi(ref_counts, cur_counts),
              "missing_reference": float((ref == MISSING).mean()) if len(ref) else 0.0,
              "missing_current": float((cur == MISSING).mean()) if len(cur) else 0.0, "test": "chi2",
              "statistic": np.nan, "p_value": np.nan}
    if cur_counts.sum() and ref_counts.sum():
        expected = np.maximum(ref_counts / ref_counts.sum(), EPS)
        expected = expected / expected.sum() * cur_counts.sum()
        from scipy import stats  # imported here, as in numeric_drift

        chi = stats.chisquare(cur_counts, expected)
        result.update(statistic=float(chi.statistic), p_value=float(chi.pvalue))
    return result


def feature_drift(reference: pd.DataFrame, current: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    """One row per feature present in both samples, worst PSI first."""
    rows = []
    for column in reference.columns.intersection(current.columns):
        measure = categorical_drift if column in categorical else numeric_drift
        rows.append({"feature": column, **measure(reference[column], current[column])})
    table = pd.DataFrame(rows, columns=["feature", "kind", "psi", "missing_reference", "missing_current", "test",
                                        "statistic", "p_value"])
    return table.sort_values("psi", ascending=False, kind="stable").reset_index(drop=True)


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion (95 % by default); (nan, nan) without observations."""
    if n == 0:
        return (np.nan, np.nan)
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (float(centre - half), float(centre + half))


def reference_sample(X: pd.DataFrame, dates: pd.Series, since: pd.Timestamp, rows: int = 20_000,
                     seed: int = 0) -> pd.DataFrame:
    """A model's drift reference: the declarations filed from `since` on (its validation and holdout window,
    the newest it was checked against), labelled or not, at most `rows` of them, seeded."""
    recent = X.loc[(dates >= since).to_numpy()]
    return recent.sample(min(rows, len(recent)), random_state=seed).sort_index() if len(recent) else recent


def reference_positions(recent: int, rows: int = 20_000, seed: int = 0) -> np.ndarray:
    """Which of `recent` declarations (filed from the reference's start on, in date order) `reference_sample` draws,
    as sorted positions among them: the same draw, for a history that is not held in a frame."""
    drawn = pd.Series(np.arange(recent, dtype="int64")).sample(min(rows, recent), random_state=seed)
    return np.sort(drawn.to_numpy())
