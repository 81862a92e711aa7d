"""Unit-price reference bands: robust log unit-price bands (median, MAD) by HS subheading × origin, with the
subheading's own band as the fallback.

`PriceBands.fit` learns them from reference declarations (training fits them on rows filed before its validation
window, and the model carries them to scoring); `lookup` serves a batch, `lookup_one` one declaration, and the
two agree value for value (tests/integration/test_scorer.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from features.entities import hs_level

MIN_BAND_ROWS = 20  # a price band needs at least this many reference rows
BAND_COLUMNS = ["hs6", "origin", "median", "mad", "rows", "level"]
NAN = float("nan")


def log_unit_price(frame: pd.DataFrame) -> np.ndarray:
    """log(declared value / net mass) per row; missing unless the ratio is finite and positive."""
    if "net_mass_kg" not in frame:
        return np.full(len(frame), np.nan)
    value = frame["declared_value"].astype("float64").to_numpy()
    mass = frame["net_mass_kg"].astype("float64").to_numpy()
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        ratio = value / mass
    # A ratio that underflows to 0 (5e-324 / 2) or overflows to inf is no unit price: missing, as in log_ratio.
    ok = (value > 0) & (mass > 0) & (ratio > 0) & np.isfinite(ratio)
    return np.log(np.where(ok, ratio, np.nan))


def log_ratio(value: float, mass: float) -> float:
    """`log_unit_price` for one declaration's value and mass (5e-324 / 2 underflows to 0, 1e308 / 1e-10
    overflows to inf: both missing)."""
    if not (value > 0 and mass > 0):
        return NAN
    ratio = value / mass
    return math.log(ratio) if 0 < ratio < math.inf else NAN


@dataclass(frozen=True, eq=False)
class PriceBands:
    table: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=BAND_COLUMNS))
    """One row per band: hs6, origin (missing on subheading bands), median, mad, rows, level (hs_origin | hs)."""

    @classmethod
    def fit(cls, reference: pd.DataFrame) -> PriceBands:
        """Bands from `reference` declarations: a band needs MIN_BAND_ROWS rows with a unit price."""
        log_up = log_unit_price(reference)
        ok = np.isfinite(log_up)
        ref = pd.DataFrame({"hs6": hs_level(reference["hs_code"], "hs_subheading"), "origin": reference["origin_country"],
                            "lup": log_up})[ok]
        bands = []
        for keys, level in ((["hs6", "origin"], "hs_origin"), (["hs6"], "hs")):
            g = ref.groupby(keys)["lup"]
            med = g.median()
            mad = (ref["lup"] - ref.set_index(keys).index.map(med)).abs().groupby([ref[k] for k in keys]).median()
            band = pd.DataFrame({"median": med, "mad": mad, "rows": g.size()}).reset_index()
            band["level"] = level
            bands.append(band[band["rows"] >= MIN_BAND_ROWS])
        return cls(pd.concat(bands, ignore_index=True))

    @cached_property
    def _by_origin(self) -> pd.DataFrame:
        return self.table[self.table["level"] == "hs_origin"].set_index(["hs6", "origin"])

    @cached_property
    def _by_hs(self) -> pd.DataFrame:
        return self.table[self.table["level"] == "hs"].set_index("hs6")

    def lookup(self, hs6: np.ndarray, origin: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(median, MAD, rows) per declaration: its HS subheading × origin band, else its subheading's band,
        else missing."""
        by_origin, by_hs = self._by_origin, self._by_hs
        med, mad, rows = _taken(by_origin, by_origin.index.get_indexer(pd.MultiIndex.from_arrays([hs6, origin])))
        fallback = np.isnan(med)
        med[fallback], mad[fallback], rows[fallback] = _taken(by_hs, by_hs.index.get_indexer(hs6[fallback]))
        return med, mad, rows

    @cached_property
    def _one(self) -> tuple[dict, dict]:
        """Plain dicts for `lookup_one` (a dict lookup, not a pandas index, per real-time call)."""
        values = lambda t: zip(t["median"].astype(float), t["mad"].astype(float), t["rows"].astype(float), strict=True)  # noqa: E731
        return (dict(zip(self._by_origin.index, values(self._by_origin), strict=True)),
                dict(zip(self._by_hs.index, values(self._by_hs), strict=True)))

    def lookup_one(self, hs6: str, origin: str) -> tuple[float, float, float]:
        """`lookup` for one declaration."""
        by_origin, by_hs = self._one
        return by_origin.get((hs6, origin)) or by_hs.get(hs6) or (NAN, NAN, NAN)


def _taken(bands: pd.DataFrame, at: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(median, MAD, rows) of the bands at positions `at` (one index lookup for the three), NaN where -1."""
    found = at >= 0
    out = []
    for column in ("median", "mad", "rows"):
        values = np.full(len(at), np.nan)
        values[found] = bands[column].to_numpy(dtype="float64")[at[found]]
        out.append(values)
    return out[0], out[1], out[2]
