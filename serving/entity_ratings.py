"""Entity risk ratings: goods (HS levels), enterprises (importers, declarants, exporters), trade lanes and the pairs
of features/entities.py each get a band from their smoothed hit rate, with a Beta credible interval and the
volume behind it."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import beta

from features.entities import BY_NAME, with_levels
from features.labels import labelled
from features.profiles import PRIOR_WEIGHT, smoothed_rate

BANDS = ("low", "medium", "high", "very high")


def entity_ratings(history: pd.DataFrame, key: str | list[str] | tuple[str, ...], min_controls: int = 0) -> pd.DataFrame:
    """Band, smoothed hit rate with a 90 % credible interval, controls and volume for each entity, best first."""
    controlled = labelled(history)
    base = history.loc[controlled, "fraud"].astype(float).mean() if controlled.any() else np.nan
    keys = [key] if isinstance(key, str) else list(key)
    grouped = history.assign(_labelled=controlled.astype(float),
                             _hit=history["fraud"].fillna(0).astype(float) * controlled).groupby(keys)
    table = pd.DataFrame({"volume": grouped.size(), "controls": grouped["_labelled"].sum(), "hits": grouped["_hit"].sum()})
    a = table["hits"] + PRIOR_WEIGHT * base
    b = table["controls"] - table["hits"] + PRIOR_WEIGHT * (1 - base)
    table["hit_rate"] = smoothed_rate(table["hits"], table["controls"], base)  # = a / (a + b)
    table["interval_low"], table["interval_high"] = beta.ppf(0.05, a, b), beta.ppf(0.95, a, b)
    ratio = table["hit_rate"] / base
    table["band"] = pd.cut(ratio, [-np.inf, 0.75, 1.5, 3.0, np.inf], labels=BANDS).astype(str)
    table["why"] = [f"{r.hits:.0f} frauds in {r.controls:.0f} controls ({r.volume:,} declarations): smoothed hit rate "
                    f"{r.hit_rate:.0%} (90% interval {r.interval_low:.0%}–{r.interval_high:.0%}) vs {base:.0%} overall"
                    for r in table.itertuples()]
    table = table[table["controls"] >= min_controls].astype({"controls": "int64", "hits": "int64"})  # counts
    return table.sort_values(["hit_rate", "controls"], ascending=False)


def rate_entities(declarations: pd.DataFrame, entity: str, min_controls: int = 0) -> pd.DataFrame:
    """The ratings of one entity of features/entities.py (by name) over the stored declarations, best first, its
    key columns as columns."""
    return entity_ratings(with_levels(declarations), BY_NAME[entity].columns, min_controls).reset_index()
