"""A seeded, vectorised simulation of an import customs administration.

It writes only what a customs office would see: declarations (with labels on the controlled rows only),
manifests and the trader registry. The hidden state (each importer's compliance propensity, the fraud
typology of each row, the revenue at stake in uncontrolled rows) stays in `World.truth`, which no model
code reads; tests use it to check the simulator itself.

The world:
- importers with a latent compliance propensity, some of which changes at a random date;
- complicit customs brokers and laxer offices;
- five fraud typologies: undervaluation (mostly of high-duty goods), HS misclassification into a
  lower-duty heading, origin misdeclaration through transshipment hubs to evade anti-dumping duty,
  quantity/weight mismatch against the manifest, and short-lived shell importers;
- a new scheme (a ring of electronics importers through one broker and one port) starting partway through;
- a historical inspection policy: legacy rules, intelligence tips and a random share, about 10 % of rows.

A world is drawn in slices of days, at most `CHUNK_ROWS` goods items each, so that a national volume never has
to fit in memory at once (`world_slices`; `aduana generate` writes each slice as it comes).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.simulator.population import (
    day_slices,
    draw_population,
    draw_shipments,
    numbered_ids,
    traders_frame,
)
from features.simulator.shipments import simulate_slice

CHUNK_ROWS = 500_000  # goods items per slice: `aduana generate` peaks at about 1.2 GB, whatever the world's size


@dataclass
class World:
    declarations: pd.DataFrame
    manifests: pd.DataFrame
    traders: pd.DataFrame
    truth: pd.DataFrame  # hidden ground truth, one row per declaration; never written, never a feature
    drift_date: pd.Timestamp


def world_slices(rows: int, seed: int = 7, start: str = "2023-01-01", days: int = 730,
                 chunk_rows: int = CHUNK_ROWS) -> Iterator[World]:
    """The world of `rows` goods items over `days` days from `start`, one slice of days at a time: each a World
    of that slice's declarations, manifests and truth, with the whole trader registry (the same frame in every
    slice: write it once). Concatenated, the slices are one world: declarations in filing order, numbered
    D00000000 onwards in that order; bills of lading numbered after the earlier slices'; manifests in arrival
    order; every declaration's importer in the registry and its bill of lading in the same slice's manifests.

    Random streams: the importers, brokers and every bill of lading's importer, day and item count are drawn
    first, for the whole world, from `default_rng(seed)` (`features.simulator.population`). The first slice
    goes on drawing from that same generator, so a world of at most `chunk_rows` items (one slice) is drawn
    exactly as the one-pass simulator drew it; slice k ≥ 1 draws from the k-th child of `SeedSequence(seed)`,
    independent of the others. The same seed and `chunk_rows` give the same world; another `chunk_rows` cuts
    bigger worlds elsewhere, and so draws another (equally valid) world.

    Declarations are filed up to three days after their shipment arrives, so a slice's last rows can fall in
    the next slice's days: they are held back and filed, in date order, with the next slice's."""
    if rows < 100:
        raise ValueError("the simulator needs at least 100 rows")
    rng = np.random.default_rng(seed)
    t0 = np.datetime64(start, "D")
    pop = draw_population(rng, rows, t0, days)
    ship = draw_shipments(rng, pop)
    slices = day_slices(ship, days, chunk_rows)
    streams = np.random.SeedSequence(seed).spawn(len(slices))
    drift_date = pd.Timestamp(t0 + np.timedelta64(pop.drift_day, "D"))
    held_decl, held_truth = None, None  # filed after the previous slice's days
    traders = None
    first_bl = first_id = 0
    for k, (first_day, end_day) in enumerate(slices):
        bls = np.flatnonzero((ship.day >= first_day) & (ship.day < end_day))
        part = simulate_slice(rng if k == 0 else np.random.default_rng(streams[k]), pop, ship, bls, first_bl)
        first_bl += len(bls)
        if traders is None:
            traders = traders_frame(pop)  # the first slice has drawn the importers' ids
        decl, truth = part.declarations, part.truth
        if held_decl is not None:
            decl, truth = _in_filing_order(pd.concat([held_decl, decl], ignore_index=True),
                                           pd.concat([held_truth, truth], ignore_index=True))
        filed = len(decl)
        if k < len(slices) - 1:
            next_day = (t0 + np.timedelta64(end_day, "D")).astype("datetime64[us]")
            filed = int(np.searchsorted(decl["declaration_date"].to_numpy(), next_day))
            held_decl, held_truth = decl.iloc[filed:].reset_index(drop=True), truth.iloc[filed:].reset_index(drop=True)
        ids = numbered_ids("D", np.arange(first_id, first_id + filed), 8)
        first_id += filed
        yield World(_numbered(decl.iloc[:filed], ids), part.manifests, traders, _numbered(truth.iloc[:filed], ids),
                    drift_date)
        del part, decl, truth  # let go of this slice before drawing the next: peak memory is one slice


def simulate(rows: int, seed: int = 7, start: str = "2023-01-01", days: int = 730,
             chunk_rows: int = CHUNK_ROWS) -> World:
    """Simulate `rows` goods items over `days` days from `start`, in memory: the world that `aduana generate`
    writes for the same arguments (`world_slices`, concatenated). The same seed gives the same world."""
    parts = list(world_slices(rows, seed, start, days, chunk_rows))
    if len(parts) == 1:
        return parts[0]
    declarations, manifests, truth = (pd.concat([getattr(p, name) for p in parts], ignore_index=True)
                                      for name in ("declarations", "manifests", "truth"))
    return World(declarations, manifests, parts[0].traders, truth, parts[0].drift_date)


def _in_filing_order(declarations: pd.DataFrame, truth: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both frames in declaration-date order (held-back rows first within a day), row for row."""
    order = np.argsort(declarations["declaration_date"].to_numpy(), kind="stable")
    return declarations.take(order).reset_index(drop=True), truth.take(order).reset_index(drop=True)


def _numbered(frame: pd.DataFrame, ids: np.ndarray) -> pd.DataFrame:
    """`frame` with `ids` inserted as its first column, declaration_id. `frame` is a slice: under pandas'
    copy-on-write, the frame it was cut from does not change."""
    frame.insert(0, "declaration_id", ids)
    return frame
