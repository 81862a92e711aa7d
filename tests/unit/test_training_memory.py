"""Training from the warehouse's snapshot through DuckDB (training/snapshot_training.py), for a history too large for
pandas, builds the features the in-memory path builds: the same rows, split and drift reference, the same price bands,
every feature equal (counts, days and bill totals exactly; revenue rates, added up by DuckDB in another order, within
1e-12 relative), and so the same model."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from features.build import integrate
from features.intake.prepared import prepare_batch
from features.prices import PriceBands
from features.profiles import PROFILE_COLUMNS
from features.simulator import World
from features.warehouse import Warehouse, read_tables
from features.warehouse.training_reads import PartitionedProfiles, TrainingReader
from tests.conftest import FAST, write_csv
from training.drift import reference_positions, reference_sample
from training.feature_partitions import FeaturePartitions, in_process
from training.monitoring import window_features
from training.pipeline import Featured, featured_in_memory, fit_and_evaluate
from training.snapshot_training import featured_from_snapshot, window_from_snapshot

REVENUE_RATES = [c for c in PROFILE_COLUMNS if c.endswith("revenue_rate")]


@pytest.fixture(scope="module")
def snapshot(world: World, tmp_path_factory: pytest.TempPathFactory) -> tuple[Warehouse, dict[str, str]]:
    """A warehouse holding the small world, and its snapshot as Parquet files."""
    folder = tmp_path_factory.mktemp("training-memory")
    warehouse = Warehouse(folder / "warehouse.duckdb")
    for kind in ("traders", "manifests", "declarations"):
        warehouse.store(prepare_batch(write_csv(folder / f"{kind}.csv", getattr(world, kind))))
    return warehouse, warehouse.export_tables(folder / "snapshot")


@pytest.fixture(scope="module")
def both(snapshot) -> tuple[Featured, Featured]:
    """The features of the stored world built in pandas (as the retrain reads it below train_memory_rows), and from
    its snapshot through DuckDB."""
    warehouse, paths = snapshot
    tables = read_tables(warehouse)
    in_memory = featured_in_memory(integrate(tables.declarations, tables.manifests, tables.traders))
    return in_memory, featured_from_snapshot(paths, temp_directory=Path(paths["declarations"]).parent / "spill")


def test_the_same_rows_split_drift_reference_and_price_bands(both):
    in_memory, from_snapshot = both
    assert from_snapshot.history_rows == in_memory.history_rows == 20_000
    for part in ("train", "valid", "holdout"):
        assert np.array_equal(getattr(from_snapshot.split, part), getattr(in_memory.split, part)), part
    assert (from_snapshot.split.valid_start, from_snapshot.split.holdout_start) == \
        (in_memory.split.valid_start, in_memory.split.holdout_start)
    assert np.array_equal(from_snapshot.drift_rows, in_memory.drift_rows) and from_snapshot.drift_rows.any()
    a, b = in_memory.features, from_snapshot.features
    pd.testing.assert_frame_equal(b.meta, a.meta, check_exact=True)
    pd.testing.assert_frame_equal(b.price_bands.table, a.price_bands.table, check_exact=True)
    assert (b.categorical, b.numeric, b.reference_columns) == (a.categorical, a.numeric, a.reference_columns)
    assert np.array_equal(b.price_reference_log.to_numpy(), a.price_reference_log.to_numpy(), equal_nan=True)


def test_every_feature_is_equal_and_revenue_rates_within_the_last_bits(both):
    in_memory, from_snapshot = both
    a, b = in_memory.features.X, from_snapshot.features.X
    exact = [c for c in a.columns if c not in REVENUE_RATES]
    pd.testing.assert_frame_equal(b[exact], a[exact], check_exact=True)
    x, y = a[REVENUE_RATES].to_numpy(), b[REVENUE_RATES].to_numpy()
    assert np.array_equal(np.isnan(x), np.isnan(y))
    known = ~np.isnan(x)
    assert np.allclose(y[known], x[known], rtol=1e-12, atol=0)


def test_features_built_a_partition_at_a_time_are_those_built_at_once(snapshot, both, tmp_path):
    _, paths = snapshot
    folder = tmp_path / "features"
    partitions = FeaturePartitions(folder, paths, "1GB", rows=3_000, each=in_process(folder))  # 3 to 4 partitions
    a, b = both[1], featured_from_snapshot(paths, partitions=partitions)
    assert len(list(folder.glob("features-*.parquet"))) > 2
    pd.testing.assert_frame_equal(b.features.X, a.features.X, check_exact=True)
    pd.testing.assert_frame_equal(b.features.meta, a.features.meta, check_exact=True)
    pd.testing.assert_series_equal(b.features.price_reference_log, a.features.price_reference_log, check_exact=True)
    assert (b.features.categorical, b.features.numeric, b.features.reference_columns) == \
        (a.features.categorical, a.features.numeric, a.features.reference_columns)
    for part in ("train", "valid", "holdout"):
        assert np.array_equal(getattr(b.split, part), getattr(a.split, part))
    assert np.array_equal(b.drift_rows, a.drift_rows)


def test_the_same_model(both):
    """CatBoost cuts features into float32 bins between values, so revenue rates that differ in the last bits of a
    float64 fall in the same bins: the fits are the same, and the holdout's scores equal."""
    in_memory, from_snapshot = both
    a, b = fit_and_evaluate(in_memory, FAST), fit_and_evaluate(from_snapshot, FAST)
    pd.testing.assert_frame_equal(b.evaluation.predictions, a.evaluation.predictions, check_exact=True)
    assert b.counts == a.counts
    assert b.evaluation.metrics == a.evaluation.metrics


def test_a_monitoring_windows_features_from_the_snapshot_are_those_built_among_all_rows(snapshot, both):
    warehouse, paths = snapshot
    tables = read_tables(warehouse)
    features = both[0].features
    model = SimpleNamespace(columns=list(features.X.columns), price_bands=features.price_bands)  # what a window reads
    dates = pd.to_datetime(tables.declarations["declaration_date"])
    start, end = dates.quantile(0.8).normalize(), dates.quantile(0.9).normalize()
    a = window_features(tables, model, start, end)  # type: ignore[arg-type]
    b = window_from_snapshot(paths, model, start, end)  # type: ignore[arg-type]
    assert len(a) == ((dates >= start) & (dates <= end)).sum() > 500
    a, b = a.sort_index(), b.set_axis(a.index.sort_values())  # both in the history's order of date and id
    exact = [c for c in a.columns if c not in REVENUE_RATES]
    pd.testing.assert_frame_equal(b[exact], a[exact], check_exact=True)
    assert np.allclose(b[REVENUE_RATES].to_numpy(), a[REVENUE_RATES].to_numpy(), rtol=1e-12, atol=0, equal_nan=True)
    empty = window_from_snapshot(paths, model, pd.Timestamp("2100-01-01"), pd.Timestamp("2100-01-31"))  # type: ignore[arg-type]
    assert empty.empty and list(empty.columns) == model.columns


def test_price_bands_fitted_a_share_of_subheadings_at_a_time_are_those_of_all_rows(snapshot):
    warehouse, paths = snapshot
    declarations = read_tables(warehouse).declarations
    before = declarations["declaration_date"].quantile(0.7)
    whole = PriceBands.fit(declarations[declarations["declaration_date"] < before])
    with TrainingReader(paths) as reader:
        in_shares = reader.price_bands(before, rows=1_000)  # about a dozen shares
    pd.testing.assert_frame_equal(in_shares.table, whole.table, check_exact=True)


def test_profiles_looked_up_in_parts_are_those_looked_up_at_once(snapshot):
    _, paths = snapshot
    with TrainingReader(paths) as reader:
        queries = reader.featured(pd.Timestamp("2100-01-01"), np.array([], dtype="int64"))[0]
        store = reader.profiles.store
        at_once = store.lookup(queries)
        pd.testing.assert_frame_equal(PartitionedProfiles(store, rows=700).lookup(queries), at_once, check_exact=True)


@pytest.mark.parametrize("recent", [0, 5, 20_000, 20_001, 54_321])
def test_the_drift_reference_positions_are_reference_samples_draw(recent):
    dates = pd.Series(np.r_[np.zeros(30), np.ones(recent)])
    drawn = reference_sample(pd.DataFrame({"row": np.arange(len(dates))}), dates, 1)
    assert np.array_equal(drawn.index.to_numpy() - 30, reference_positions(recent))
