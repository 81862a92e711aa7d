"""Entity risk ratings: goods (HS levels), enterprises (importers, declarants, exporters), trade lanes and the pairs
of features/entities.py each get a band from their smoothed hit rate, with a Beta credible interval and the
volume behind it."""
from __future__ import annotations

import numpy as np
import pandas as pd

from features.entities import BY_NAME, HS_LEVELS, with_levels
from features.labels import labelled
from features.profiles import PRIOR_WEIGHT, smoothed_rate

BANDS = ("low", "medium", "high", "very high")


COUNTS = ["volume", "controls", "hits"]


def entity_counts(history: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Declarations, controls with a known outcome and frauds among them per value of the `keys` columns (missing
    values a group of their own): what a rating is made of, and what the warehouse adds up in SQL
    (features/warehouse/reads.py `entity_counts`) instead of reading every row."""
    controlled = labelled(history)
    counted = history.assign(volume=1, controls=controlled.astype("int64"),
                             hits=(history["fraud"].fillna(0).astype(float) * controlled).astype("int64"))
    return counted.groupby(keys, dropna=False)[COUNTS].sum()


def ratings_of(counts: pd.DataFrame, min_controls: int = 0) -> pd.DataFrame:
    """Band, smoothed hit rate with a 90 % credible interval, controls and volume for each entity of `counts`
    (`entity_counts`), best first; the overall rate is that of every group, those with a missing key included,
    which are not rated."""
    from scipy.stats import beta  # imported here: ~0.5 s, which the API's start would pay for nothing

    controls, hits = counts["controls"].sum(), counts["hits"].sum()
    base = hits / controls if controls else np.nan
    table = counts[counts.index.to_frame().notna().all(axis=1).to_numpy()].astype("int64")
    a = table["hits"] + PRIOR_WEIGHT * base
    b = table["controls"] - table["hits"] + PRIOR_WEIGHT * (1 - base)
    table["hit_rate"] = smoothed_rate(table["hits"], table["controls"], base)  # = a / (a + b)
    table["interval_low"], table["interval_high"] = beta.ppf(0.05, a, b), beta.ppf(0.95, a, b)
    ratio = table["hit_rate"] / base
    table["band"] = pd.cut(ratio, [-np.inf, 0.75, 1.5, 3.0, np.inf], labels=BANDS).astype(str)
    table["why"] = [f"{r.hits:.0f} frauds in {r.controls:.0f} controls ({r.volume:,} declarations): smoothed hit rate "
                    f"{r.hit_rate:.0%} (90% interval {r.interval_low:.0%}–{r.interval_high:.0%}) vs {base:.0%} overall"
                    for r in table.itertuples()]
    table = table[table["controls"] >= min_controls]
    return table.sort_values(["hit_rate", "controls"], ascending=False)


def entity_ratings(history: pd.DataFrame, key: str | list[str] | tuple[str, ...], min_controls: int = 0) -> pd.DataFrame:
    """`ratings_of` the declarations of `history` grouped by `key`."""
    return ratings_of(entity_counts(history, [key] if isinstance(key, str) else list(key)), min_controls)


def counted_columns(entity: str) -> list[str]:
    """The declaration columns an entity's counts are grouped by (its HS levels come from hs_code)."""
    return list(dict.fromkeys(c if c not in HS_LEVELS else "hs_code" for c in BY_NAME[entity].columns))


def rate_counts(counts: pd.DataFrame, entity: str, min_controls: int = 0) -> pd.DataFrame:
    """The ratings of one entity of features/entities.py (by name) from `entity_counts` by its `counted_columns`,
    best first, its key columns as columns."""
    levelled = with_levels(counts.reset_index()) if "hs_code" in counts.index.names else counts.reset_index()
    regrouped = levelled.groupby(list(BY_NAME[entity].columns), dropna=False)[COUNTS].sum()
    return ratings_of(regrouped, min_controls).reset_index()


def rate_entities(declarations: pd.DataFrame, entity: str, min_controls: int = 0) -> pd.DataFrame:
    """`rate_counts` of the declarations of a frame."""
    return rate_counts(entity_counts(declarations, counted_columns(entity)), entity, min_controls)
