"""Training on a history too large to hold in pandas: from the warehouse's snapshot (Parquet files), through DuckDB.

Only the rows training builds features for come into pandas: the labelled rows and the drift reference sample. What
they read across the history is computed by DuckDB over the snapshot (features/warehouse/training_reads.py): the time
split from the labelled rows' dates, the drift reference's draw among the recent declarations, the bills of lading's
totals, the price bands (a share of the HS subheadings at a time) and the entity profiles (a ProfileStore). So the
features are those `featured_in_memory` builds among all rows in pandas (every one exactly but the revenue rates, which
DuckDB adds up in another order: within the last bits), and the fits that follow are `fit_and_evaluate`'s. DuckDB's connection, and its
profile tables, are closed once the featured rows' profiles are looked up, before the rest of the features and the
fits: a retrain's memory is then that of its featured rows and DuckDB's limit, not the history's.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from features.build import build_features
from features.labels import labelled
from features.progress import Advance, quiet
from features.warehouse.training_reads import DEFAULT_MEMORY_LIMIT, LookedUp, TrainingReader
from training.drift import reference_positions
from training.feature_partitions import FeaturePartitions
from training.models import FitConfig, RiskModel, Split, time_split
from training.pipeline import Featured, TrainingResult, fit_and_evaluate


def _silent(message: str) -> None:
    pass


def _among(featured: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """A boolean array over the labelled rows (`rows`) spread over the featured rows (`featured` marks the labelled)."""
    out = np.zeros(len(featured), dtype=bool)
    out[np.flatnonzero(featured)] = rows
    return out


def featured_from_snapshot(snapshot: dict[str, str], report: Callable[[str], None] = _silent,
                           advance: Advance = quiet, memory_limit: str = DEFAULT_MEMORY_LIMIT,
                           temp_directory: str | Path | None = None,
                           partitions: FeaturePartitions | None = None) -> Featured:
    """`featured_in_memory` of the snapshot's declarations (table → Parquet path, as Warehouse.export_tables
    writes them), with DuckDB at most `memory_limit` (spilling to `temp_directory` beyond it). With `partitions`,
    the features are built a partition at a time by the processes they name (training/feature_partitions.py): this
    process then never indexes the profiles."""
    started = time.perf_counter()
    with TrainingReader(snapshot, memory_limit, temp_directory) as reader:
        labels = reader.labels()
        split = time_split(labels["declaration_date"], np.ones(len(labels), dtype=bool),
                           positive=labels["fraud"].fillna(0).to_numpy() == 1)
        frame, drift = reader.featured(split.valid_start, reference_positions(reader.filed_since(split.valid_start)))
        report(f"building features for {len(frame):,} of {reader.rows:,} declarations (the controlled ones and the "
               "drift reference; entity profiles, bill totals and price bands from all, in DuckDB)…")
        known = labelled(frame)
        if known.sum() != len(labels):
            raise RuntimeError("the snapshot's labelled rows changed while training read them")
        split = Split(train=_among(known, split.train), valid=_among(known, split.valid),
                      holdout=_among(known, split.holdout), valid_start=split.valid_start,
                      holdout_start=split.holdout_start)
        bands, rows = reader.price_bands(split.valid_start), reader.rows
        profiles = reader.profiles.lookup(frame) if partitions is None else None
    if partitions is not None:
        features = partitions.build(frame, bands)
    else:  # DuckDB's tables are gone: the pandas work below holds the featured rows and their profiles only
        features = build_features(frame, bands=bands, profiles=LookedUp(profiles),  # type: ignore[arg-type]
                                  advance=advance)
    return Featured(features, split, drift, rows, time.perf_counter() - started)


def train_from_snapshot(snapshot: dict[str, str], config: FitConfig = FitConfig(), tune_seconds: float | None = None,
                        report: Callable[[str], None] = _silent, starting: Callable[[str], None] = _silent,
                        advance: Advance = quiet, memory_limit: str = DEFAULT_MEMORY_LIMIT) -> TrainingResult:
    """`train_and_evaluate` of the snapshot's history, its features built through DuckDB (`featured_from_snapshot`)."""
    starting("model")
    return fit_and_evaluate(featured_from_snapshot(snapshot, report, advance, memory_limit), config, tune_seconds,
                            report, starting, advance)


def window_from_snapshot(snapshot: dict[str, str], model: RiskModel, start: pd.Timestamp, end: pd.Timestamp,
                         memory_limit: str = DEFAULT_MEMORY_LIMIT) -> pd.DataFrame:
    """training/monitoring.py `window_features` of the snapshot's declarations: only the window's rows come into
    pandas, their profiles and bills' totals read across the history by DuckDB."""
    with TrainingReader(snapshot, memory_limit) as reader:
        frame = reader.filed(start, end)
        if frame.empty:
            return pd.DataFrame(columns=model.columns)
        profiles = reader.profiles.lookup(frame)
    features = build_features(frame, bands=model.price_bands, profiles=LookedUp(profiles))  # type: ignore[arg-type]
    return features.X.reindex(columns=model.columns)
