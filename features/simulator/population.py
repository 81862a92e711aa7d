"""The simulated world's cast and the skeleton of its shipments, drawn once for the whole period.

Importers (with their hidden propensity, activity and behaviour change), customs brokers (a few complicit), the
ring of the new scheme, and each bill of lading's importer, arrival day and number of goods items. These are
small next to the goods items (one importer per 60 items, one bill of lading per ~1.9), so a world of any size
keeps them in memory; everything else is drawn a slice of days at a time (`features.simulator.shipments`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.simulator import trade_data as cat

DRIFT_SHARE = 0.65  # the new scheme starts at this share of the period
RATINGS_LOW_TO_HIGH = ("D", "C", "CC", "CCC", "B", "BB", "BBB", "A", "AA", "AAA")


@dataclass
class Population:
    """Who trades: drawn once per world, shared by every slice of its shipments."""

    rows: int  # goods items in the whole world: some pools (exporters) are sized by it
    t0: np.datetime64
    days: int
    drift_day: int
    importers: pd.DataFrame  # hidden attributes, one row per importer, by importer number
    broker_factor: np.ndarray  # each broker's effect on intent; complicit brokers raise it
    ring_broker: int
    importer_ids: np.ndarray | None = None  # drawn by the first slice, where the one-pass simulator drew them


@dataclass
class Shipments:
    """The skeleton of every bill of lading, by bill number: its goods items, importer and arrival day."""

    items: np.ndarray
    importer: np.ndarray
    day: np.ndarray


def pick(rng: np.random.Generator, options: dict[str, float], size: int) -> np.ndarray:
    """`size` keys of `options`, drawn by their weights."""
    keys = np.array(list(options))
    weights = np.array(list(options.values()), dtype=float)
    return keys[rng.choice(len(keys), size=size, p=weights / weights.sum())]


def pick_within(rng: np.random.Generator, groups: np.ndarray, table: dict[str, dict[str, float]]) -> np.ndarray:
    """For each element of `groups`, draw a key from that group's weighted options."""
    out = np.empty(len(groups), dtype=object)
    for group, options in table.items():
        mask = groups == group
        if mask.any():
            out[mask] = pick(rng, options, int(mask.sum()))
    return out


def numbered_ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    """Ids such as D00000042: `prefix` and the number, zero-padded to `width` digits."""
    return (prefix + pd.Series(numbers).astype(str).str.zfill(width)).to_numpy()


def _importers(rng: np.random.Generator, n: int, start: np.datetime64, days: int) -> pd.DataFrame:
    n_shell = max(2, int(n * 0.04))
    kind = np.array(["regular"] * n, dtype=object)
    kind[rng.choice(n, n_shell, replace=False)] = "shell"
    shell = kind == "shell"
    sector = pick(rng, cat.SECTOR_WEIGHTS, n)
    propensity = np.where(shell, rng.beta(6, 4, n), rng.beta(0.5, 14, n))
    activity = np.where(shell, 1.5, rng.pareto(1.3, n) + 1.0)
    age_days = np.where(shell, 0, (rng.gamma(2.0, 1500.0, n) + 60).astype(int))
    registration = start - age_days.astype("timedelta64[D]")
    # Shell companies register during the period, trade for a few weeks and vanish.
    shell_reg = rng.integers(-30, days - 90, n)
    registration = np.where(shell, start + shell_reg.astype("timedelta64[D]"), registration)
    active_from = np.where(shell, shell_reg + rng.integers(5, 40, n), 0)
    active_to = np.where(shell, active_from + rng.integers(30, 120, n), days)
    # Some importers change behaviour: a few deteriorate, others reform.
    changes = (~shell) & (rng.random(n) < 0.08)
    change_day = np.where(changes, rng.integers(int(days * 0.1), int(days * 0.9), n), days + 1)
    change_factor = np.where(rng.random(n) < 0.6, rng.uniform(3, 6, n), 0.2)
    change_factor = np.where(changes, change_factor, 1.0)
    age_years = age_days / 365.25
    aeo_p = np.where((propensity < 0.02) & (age_years > 5), 0.35, np.where(age_years > 3, 0.06, 0.0))
    aeo = (rng.random(n) < aeo_p) & ~shell
    standing = -np.log(propensity + 1e-4) + rng.normal(0, 1.5, n) + 0.04 * np.minimum(age_years, 20)
    shares = np.cumsum([0.02, 0.03, 0.05, 0.08, 0.12, 0.20, 0.20, 0.15, 0.10, 0.05])[:-1]
    rating_idx = np.searchsorted(np.quantile(standing, shares), standing)
    rating = np.array(RATINGS_LOW_TO_HIGH)[rating_idx].astype(object)
    rating[shell & (rng.random(n) < 0.5)] = None  # unrated
    violations = rng.poisson(propensity * 8 * np.minimum(age_years, 10) / 5)
    violations[shell] = 0
    return pd.DataFrame(
        {
            "kind": kind,
            "sector": sector,
            "propensity": propensity,
            "activity": activity,
            "registration_date": registration,
            "active_from": active_from,
            "active_to": active_to,
            "change_day": change_day,
            "change_factor": change_factor,
            "aeo_certified": aeo.astype("int8"),
            "credit_rating": rating,
            "prior_violations": violations,
            "price_level": rng.lognormal(0, 0.2, n),
        }
    )


def draw_population(rng: np.random.Generator, rows: int, t0: np.datetime64, days: int) -> Population:
    """Importers, the ring of the new scheme and the customs brokers of a world of `rows` goods items."""
    n_imp = max(40, rows // 60)
    imp = _importers(rng, n_imp, t0, days)
    regular_electronics = np.flatnonzero((imp["kind"] == "regular") & (imp["sector"] == "electronics"))
    ring = rng.choice(regular_electronics, min(len(regular_electronics), max(3, n_imp // 60)), replace=False)
    imp["ring"] = False
    imp.loc[ring, "ring"] = True
    imp.loc[ring, "activity"] *= 4  # busy, established importers: the scheme hides in volume
    imp.loc[ring, "propensity"] = np.minimum(imp.loc[ring, "propensity"], 0.02)  # clean before the scheme

    # Customs brokers: a few are complicit.
    n_brokers = max(8, rows // 4000)
    broker_factor = np.where(rng.random(n_brokers) < 0.06, 2.5, rng.lognormal(0, 0.2, n_brokers))
    ring_broker = int(np.argmin(broker_factor))  # an unremarkable broker, until the scheme starts
    broker_size = rng.pareto(1.0, n_brokers) + 1
    imp["broker"] = rng.choice(n_brokers, n_imp, p=broker_size / broker_size.sum())
    return Population(rows, t0, days, int(days * DRIFT_SHARE), imp, broker_factor, ring_broker)


def draw_shipments(rng: np.random.Generator, pop: Population) -> Shipments:
    """Every bill of lading of the world, each with 1-6 goods items, `pop.rows` items in all."""
    rows, imp = pop.rows, pop.importers
    n_bl = int(rows / 1.9) + 50
    items_per_bl = 1 + np.minimum(rng.poisson(0.9, n_bl), 5)
    while items_per_bl.sum() < rows:
        items_per_bl = np.concatenate([items_per_bl, 1 + np.minimum(rng.poisson(0.9, n_bl // 10 + 1), 5)])
    n_bl = int(np.searchsorted(np.cumsum(items_per_bl), rows) + 1)
    items_per_bl = items_per_bl[:n_bl]
    items_per_bl[-1] -= items_per_bl.sum() - rows
    bl_imp = rng.choice(len(imp), n_bl, p=(imp["activity"] / imp["activity"].sum()).to_numpy())
    lo, hi = imp["active_from"].to_numpy()[bl_imp], imp["active_to"].to_numpy()[bl_imp]
    bl_day = np.clip(lo + (rng.random(n_bl) * (hi - lo)).astype(int), 0, pop.days - 1)
    return Shipments(items_per_bl, bl_imp, bl_day)


def day_slices(ship: Shipments, days: int, chunk_rows: int) -> list[tuple[int, int]]:
    """Cut the period into runs of whole days, [first, end), each holding at most `chunk_rows` goods items (a
    single busier day makes a slice of its own: a day's shipments are never split). A world of at most
    `chunk_rows` items is one slice, the whole period."""
    per_day = np.bincount(ship.day, weights=ship.items, minlength=days)
    slices, first, held = [], 0, 0
    for day, items in enumerate(per_day):
        if held and held + items > chunk_rows:
            slices.append((first, day))
            first, held = day, 0
        held += items
    slices.append((first, days))
    return slices


def traders_frame(pop: Population) -> pd.DataFrame:
    """The trader registry as customs keeps it: the importers' observable attributes, by importer id."""
    imp = pop.importers
    return pd.DataFrame(
        {
            "importer_id": pop.importer_ids,
            "registration_date": pd.to_datetime(imp["registration_date"]).astype("datetime64[us]"),
            "aeo_certified": imp["aeo_certified"].astype("int8"),
            "credit_rating": pd.array(imp["credit_rating"], dtype="str"),
            "prior_violations": imp["prior_violations"].astype("int64"),
            "sector": imp["sector"],
        }
    ).sort_values("importer_id", ignore_index=True)
