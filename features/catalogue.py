"""The feature catalogue: every model input declared once, with its group, reason family and drift role.

A feature declared with its two computations (`batch`: from the integrated declarations frame, `one`: from one
integrated declaration as a dict) needs nothing else: build.py and row.py compute it from here, and the parity
test holds the two equal. Features that share their work (price bands, manifests, profiles) are computed by the
signals of features/signals.py, whose batch and one-row forms sit side by side there.

Everything else reads this table: the column lists of the feature matrix, the reference model's inputs, the reason
families officers read (serving/reasons.py), which features may raise a drift alert (training/monitoring.py), and
the groups that training may leave out when they do not help (ablation).

Groups:
- `declaration`: the declaration's own fields as the models see them; never left out.
- `hs`, `price`, `documents`, `registry`, `profiles`, `pair_profiles`: engineered from the HS hierarchy, price
  reference bands, manifests, the trader registry, and time-aware histories of single entities and of pairs
  (importer × HS heading, declarant × office, exporter × origin). Each is kept only if it helps on validation.
- `reference`: raw amounts that only the reference model (a library-default CatBoost on the mapped columns) reads.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.contract import CREDIT_RATINGS
from features.entities import ENTITIES
from features.intake.mapping import EXTRA_CATEGORICAL_PREFIX, EXTRA_NUMERIC_PREFIX
from features.profiles import PROFILE_SUFFIXES


@dataclass(frozen=True)
class Feature:
    name: str
    group: str
    categorical: bool = False
    family: str | None = None  # reason family; None: the feature is its own family
    alerts: bool = True  # may raise a drift alert
    batch: Callable[[pd.DataFrame], pd.Series] | None = None  # its computation on integrated declarations
    one: Callable[[dict], float | str | None] | None = None  # ... and on one integrated declaration


RATING_RANK = {r: float(len(CREDIT_RATINGS) - i) for i, r in enumerate(CREDIT_RATINGS)}  # AAA highest


def _rating_rank(frame: pd.DataFrame) -> pd.Series:
    rating = frame["credit_rating"] if "credit_rating" in frame else pd.Series(pd.NA, index=frame.index, dtype="str")
    codes, distinct = pd.factorize(rating)  # each rating looked up once
    ranks = np.array([RATING_RANK.get(r, np.nan) for r in distinct.tolist()] + [np.nan])  # the last: missing (-1)
    return pd.Series(ranks[codes], index=frame.index)


def _f(group: str, family: str, *names: str, categorical: bool = False, alerts: bool = True) -> list[Feature]:
    return [Feature(n, group, categorical, family, alerts) for n in names]


CATALOGUE: tuple[Feature, ...] = tuple(
    # An id's own CatBoost statistics and its time-aware profile tell the same story: one family per entity.
    # Trader ids do not alert: new traders arrive all the time.
    _f("declaration", "entity:importer", "importer_id", categorical=True, alerts=False)
    + _f("declaration", "entity:declarant", "declarant_id", categorical=True, alerts=False)
    + _f("declaration", "entity:exporter", "exporter_id", categorical=True, alerts=False)
    + _f("declaration", "entity:hs_subheading", "hs_code", categorical=True)
    + _f("declaration", "entity:origin", "origin_country", categorical=True)
    + _f("declaration", "office", "office_id", categorical=True)
    + _f("declaration", "route", "transport_mode", "departure_country", categorical=True)
    + _f("declaration", "value", "log_declared_value", "log_net_mass_kg", "log_quantity", "tax_rate", "duty_paid")
    + _f("hs", "entity:hs_chapter", "hs_chapter", categorical=True)
    + _f("price", "price", "log_unit_price", "undervaluation_depth", "overvaluation_depth", "unit_price_zscore",
         "price_band_rows")
    + _f("documents", "route", "loading_country", "carrier", categorical=True)
    + _f("documents", "route", "loading_mismatch", "departure_mismatch", "transshipped", "transshipment_count")
    + _f("documents", "manifest", "manifest_mass_ratio", "bl_items")
    + _f("registry", "registry", "credit_rating", "sector", categorical=True)
    + _f("registry", "registry", "aeo_certified", "prior_violations")
    + [Feature("credit_rating_rank", "registry", family="registry", batch=_rating_rank,
               one=lambda row: RATING_RANK.get(row.get("credit_rating"), float("nan")))]
    + _f("registry", "registry", "company_age_days", alerts=False)  # grows with time by construction
    # Profiles trend with time by construction (days known, cumulative counts) and their effective sample is the
    # number of entities, not of rows: reported, but their effect shows in the score drift and outcome checks.
    + [Feature(f"{e.name}_{suffix}", "pair_profiles" if e.pair else "profiles", False, f"entity:{e.name}", False)
       for e in ENTITIES for suffix in PROFILE_SUFFIXES]
    + _f("reference", "value", "declared_value", "net_mass_kg", "quantity")
)
BY_NAME = {f.name: f for f in CATALOGUE}
ENGINEERED_GROUPS = ("hs", "price", "documents", "registry", "profiles", "pair_profiles")

# Declaration fields the reference model reads as they come (with the mapping's extras).
REFERENCE_COLUMNS = ("importer_id", "declarant_id", "exporter_id", "office_id", "hs_code", "origin_country",
                     "transport_mode", "departure_country", "declared_value", "net_mass_kg", "quantity", "tax_rate",
                     "duty_paid")


def columns(groups: tuple[str, ...] | None = None, categorical: bool | None = None) -> list[str]:
    """Catalogue features in catalogue order, of the given groups (default all) and kind."""
    return [f.name for f in CATALOGUE if (groups is None or f.group in groups)
            and (categorical is None or f.categorical == categorical)]


def computed() -> list[Feature]:
    """The features the catalogue computes itself (declared with `batch` and `one`)."""
    return [f for f in CATALOGUE if f.batch is not None]


def is_extra(name: str) -> bool:
    return name.startswith((EXTRA_CATEGORICAL_PREFIX, EXTRA_NUMERIC_PREFIX))


def group_of(name: str) -> str:
    """A column's group; the mapping's extra columns belong to the declaration."""
    return BY_NAME[name].group if name in BY_NAME else "declaration"


def family_of(name: str) -> str:
    """The reason family of a model column (the column itself when it has none)."""
    feature = BY_NAME.get(name)
    return feature.family if feature is not None and feature.family else name


def alerts(name: str) -> bool:
    """Whether a drift on this column may raise an alert."""
    feature = BY_NAME.get(name)
    return feature.alerts if feature is not None else True
