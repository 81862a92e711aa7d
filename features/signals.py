"""The engineered features' computations: each signal's batch form and one-row form, side by side.

A signal computes a few features that share their work (one price-band lookup, one manifest, one profile lookup).
`batch` takes the integrated declarations frame (features/build.py `build_features`); `one` takes one integrated
declaration as a dict, missing values as None (features/row.py `row_features`, the real-time path, which pays no
pandas per call). The two forms give the same value for every row, edge values included (a unit price that
underflows to 0 or overflows to inf is missing in both); tests/unit/test_catalogue.py and
tests/integration/test_scorer.py hold them equal. What each feature is for (group, reason family, drift role)
is declared in features/catalogue.py; a feature computed alone is declared there with its own two forms.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.entities import ENTITIES, NAMES, entity_key, hs_level, hs_prefix
from features.prices import PriceBands, log_ratio, log_unit_price
from features.profiles import ProfileIndex, profile_columns, to_seconds

NAN = float("nan")
LOG_AMOUNTS = ("declared_value", "net_mass_kg", "quantity")  # amounts the engineered model sees as log1p
MAD_SCALE, ZSCORE_FLOOR = 1.4826, 0.05  # a MAD as a normal's standard deviation; a floor for tight bands


@dataclass(frozen=True)
class Inputs:
    """What signals read besides the declaration: the price bands and the profile index of the history."""

    bands: PriceBands
    profiles: ProfileIndex
    batch_first: dict[str, pd.Series] | None = None  # entity → key → earliest filing (s) in the whole batch
    # the entities whose profiles are looked up (features/profiles.py `profile_entities`): scoring asks for its
    # model's only, a lookup costing about as much per entity as the rest of the features together
    names: tuple[str, ...] = NAMES


@dataclass(frozen=True)
class Signal:
    name: str
    batch: Callable[[pd.DataFrame, Inputs], pd.DataFrame]
    one: Callable[[dict, Inputs], dict]


def number(value: object) -> float:
    """One declaration's value as a float (None → NaN)."""
    return NAN if value is None else float(value)


def _column(frame: pd.DataFrame, name: str, dtype: str = "str") -> pd.Series:
    """A column of `frame`, or an all-missing one when the source lacks it."""
    if name in frame:
        return frame[name]
    return pd.Series(pd.NA if dtype == "str" else np.nan, index=frame.index, dtype=dtype)


def _hs_batch(frame: pd.DataFrame, inputs: Inputs) -> pd.DataFrame:
    return pd.DataFrame({"hs_chapter": hs_level(frame["hs_code"], "hs_chapter")})


def _hs_one(row: dict, inputs: Inputs) -> dict:
    return {"hs_chapter": hs_prefix(str(row["hs_code"]), "hs_chapter")}


def _price_batch(frame: pd.DataFrame, inputs: Inputs) -> pd.DataFrame:
    lup = log_unit_price(frame)
    med, mad, rows = inputs.bands.lookup(hs_level(frame["hs_code"], "hs_subheading").to_numpy(),
                                         frame["origin_country"].to_numpy())
    deviation = lup - med  # log ratio to the reference: -0.5 is 39 % below
    return pd.DataFrame({
        "log_unit_price": lup,
        "price_reference_log": med,
        "undervaluation_depth": np.clip(-deviation, 0, None),
        "overvaluation_depth": np.clip(deviation, 0, None),
        "unit_price_zscore": deviation / (MAD_SCALE * mad + ZSCORE_FLOOR),
        "price_band_rows": np.nan_to_num(rows, nan=0.0),
    }, index=frame.index)


def _price_one(row: dict, inputs: Inputs) -> dict:
    lup = log_ratio(number(row.get("declared_value")), number(row.get("net_mass_kg")))
    median, mad, band_rows = inputs.bands.lookup_one(hs_prefix(str(row["hs_code"]), "hs_subheading"),
                                                     row["origin_country"])
    deviation = lup - median
    return {
        "log_unit_price": lup, "price_reference_log": median,
        "undervaluation_depth": NAN if math.isnan(deviation) else max(-deviation, 0.0),
        "overvaluation_depth": NAN if math.isnan(deviation) else max(deviation, 0.0),
        "unit_price_zscore": deviation / (MAD_SCALE * mad + ZSCORE_FLOOR),
        "price_band_rows": 0.0 if math.isnan(band_rows) else band_rows,
    }


def _documents_batch(frame: pd.DataFrame, inputs: Inputs) -> pd.DataFrame:
    origin, pol = frame["origin_country"], _column(frame, "port_of_loading")
    departure, route = _column(frame, "departure_country"), _column(frame, "transshipment_ports")
    gross, declared = _column(frame, "gross_weight_kg", "float64"), _column(frame, "bl_net_mass_kg", "float64")
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = gross / declared
    return pd.DataFrame({
        "loading_country": pol.str[:2],
        "loading_mismatch": np.where(pol.isna(), np.nan, (pol.str[:2] != origin).astype(float)),
        "departure_mismatch": np.where(departure.isna(), np.nan, (departure != origin).astype(float)),
        "transshipped": np.where(pol.isna(), np.nan, route.notna().astype(float)),
        "transshipment_count": route.str.count(";").add(1).fillna(0).astype(float),
        "manifest_mass_ratio": np.where((declared > 0) & np.isfinite(ratio), ratio, np.nan),
    }, index=frame.index)


def _documents_one(row: dict, inputs: Inputs) -> dict:
    origin, pol = row["origin_country"], row.get("port_of_loading")
    departure, route = row.get("departure_country"), row.get("transshipment_ports")
    gross, declared = number(row.get("gross_weight_kg")), number(row.get("bl_net_mass_kg"))
    ratio = gross / declared if declared > 0 else NAN
    return {
        "loading_country": None if pol is None else pol[:2],
        "loading_mismatch": NAN if pol is None else float(pol[:2] != origin),
        "departure_mismatch": NAN if departure is None else float(departure != origin),
        "transshipped": NAN if pol is None else float(route is not None),
        "transshipment_count": 0.0 if route is None else float(route.count(";") + 1),
        "manifest_mass_ratio": ratio if math.isfinite(ratio) else NAN,
    }


def _registry_batch(frame: pd.DataFrame, inputs: Inputs) -> pd.DataFrame:
    registered = frame["registration_date"] if "registration_date" in frame else pd.Series(pd.NaT, index=frame.index)
    return pd.DataFrame({"company_age_days": (frame["declaration_date"] - registered).dt.days.astype(float)})


def _registry_one(row: dict, inputs: Inputs) -> dict:
    registered = row.get("registration_date")
    age = NAN if registered is None else float((pd.Timestamp(row["declaration_date"]) - registered).days)
    return {"company_age_days": age}


def _amounts_batch(frame: pd.DataFrame, inputs: Inputs) -> pd.DataFrame:
    def log1p(column: str) -> pd.Series:
        if column not in frame:
            return pd.Series(np.nan, index=frame.index)
        return np.log1p(frame[column].astype("float64").clip(lower=0))

    return pd.DataFrame({f"log_{c}": log1p(c) for c in LOG_AMOUNTS})


def _amounts_one(row: dict, inputs: Inputs) -> dict:
    values = {c: number(row.get(c)) for c in LOG_AMOUNTS}
    return {f"log_{c}": NAN if math.isnan(v) else math.log1p(max(v, 0.0)) for c, v in values.items()}


def _profiles_batch(frame: pd.DataFrame, inputs: Inputs) -> pd.DataFrame:
    return inputs.profiles.lookup(frame, inputs.batch_first, inputs.names)


def _profiles_one(row: dict, inputs: Inputs) -> dict:
    when = to_seconds(np.array([np.datetime64(pd.Timestamp(row["declaration_date"]), "us")]))
    keys = {e.name: entity_key(row, e) for e in ENTITIES if e.name in inputs.names}
    return dict(zip(profile_columns(inputs.names), inputs.profiles.lookup_one(keys, int(when[0]), inputs.names),
                    strict=True))


SIGNALS: tuple[Signal, ...] = (
    Signal("hs", _hs_batch, _hs_one),
    Signal("price", _price_batch, _price_one),
    Signal("documents", _documents_batch, _documents_one),
    Signal("registry", _registry_batch, _registry_one),
    Signal("profiles", _profiles_batch, _profiles_one),
    Signal("amounts", _amounts_batch, _amounts_one),
)
