"""The simulator drawn and written a slice of days at a time: one coherent world, whatever the slice size."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.simulator import generate_world, simulate, world_slices, write_world
from features.simulator.population import Shipments, day_slices

ROWS, SEED, CHUNK = 6_000, 4, 2_500  # three slices


@pytest.fixture(scope="module")
def chunked():
    return simulate(ROWS, seed=SEED, chunk_rows=CHUNK)


def test_a_big_world_comes_in_several_slices_that_add_up():
    parts = list(world_slices(ROWS, seed=SEED, chunk_rows=CHUNK))
    assert len(parts) == 3
    assert sum(len(p.declarations) for p in parts) == ROWS
    assert all(p.traders is parts[0].traders for p in parts)  # one registry, written once


def test_a_world_of_one_slice_does_not_depend_on_the_slice_size():
    """Up to one slice, the world is the one the one-pass simulator drew: the chunk size changes nothing."""
    (only,) = world_slices(3_000, seed=11, chunk_rows=3_000)
    default = simulate(3_000, seed=11)
    for name in ("declarations", "manifests", "traders", "truth"):
        pd.testing.assert_frame_equal(getattr(only, name), getattr(default, name))


def test_ids_are_unique_and_numbered_in_filing_order_across_slices(chunked):
    d, t = chunked.declarations, chunked.truth
    assert list(d["declaration_id"]) == [f"D{i:08d}" for i in range(ROWS)]
    assert d["declaration_date"].is_monotonic_increasing
    assert (t["declaration_id"] == d["declaration_id"]).all()
    assert chunked.manifests["bill_of_lading"].is_unique
    assert chunked.manifests["arrival_date"].is_monotonic_increasing
    assert chunked.traders["importer_id"].is_unique


def test_every_declaration_has_its_bill_of_lading_and_importer(chunked):
    d, m = chunked.declarations, chunked.manifests
    assert set(d["bill_of_lading"]) == set(m["bill_of_lading"])
    assert set(d["importer_id"]) <= set(chunked.traders["importer_id"])
    joined = d.merge(m, on="bill_of_lading", validate="many_to_one")
    assert (joined["importer_id"] == joined["consignee_id"]).all()
    assert (joined["transport_mode_x"] == joined["transport_mode_y"]).all()
    assert (joined["declaration_date"] - joined["arrival_date"]).dt.days.between(0, 3).all()


def test_the_slices_cover_the_period_and_keep_the_hidden_truth(chunked):
    d, t = chunked.declarations, chunked.truth
    assert d["declaration_date"].min() < pd.Timestamp("2023-01-15")
    assert d["declaration_date"].max() > pd.Timestamp("2024-12-15")
    assert (d.loc[t["typology"] == "new_scheme", "declaration_date"] >= chunked.drift_date).all()
    assert (t["is_fraud"] == (t["typology"] != "")).all()
    assert 0.03 <= t["is_fraud"].mean() <= 0.15
    assert 0.05 <= d["inspected"].mean() <= 0.15
    assert d.loc[d["inspected"] == 0, ["fraud", "revenue", "critical"]].isna().all().all()
    assert (d.loc[d["fraud"] == 1, "inspected"] == 1).all()


def test_slices_draw_from_independent_streams(chunked):
    """Each slice is drawn afresh, not a copy of the first: unit values differ from slice to slice."""
    parts = list(world_slices(ROWS, seed=SEED, chunk_rows=CHUNK))
    firsts = [tuple(p.declarations["declared_value"].head(20)) for p in parts]
    assert len(set(firsts)) == len(firsts)


def test_same_seed_same_files_another_seed_another_world(tmp_path):
    a = generate_world(tmp_path / "a", ROWS, seed=SEED, chunk_rows=CHUNK)
    b = generate_world(tmp_path / "b", ROWS, seed=SEED, chunk_rows=CHUNK)
    c = generate_world(tmp_path / "c", ROWS, seed=SEED + 1, chunk_rows=CHUNK)
    for name in ("traders", "manifests", "declarations"):
        assert a[name][0].read_bytes() == b[name][0].read_bytes(), name
    assert not pd.read_parquet(a["declarations"][0])["declared_value"].equals(
        pd.read_parquet(c["declarations"][0])["declared_value"])


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_the_written_files_are_the_world_in_memory(chunked, tmp_path, fmt):
    written = generate_world(tmp_path, ROWS, seed=SEED, fmt=fmt, chunk_rows=CHUNK)
    assert {name: rows for name, (_, rows) in written.items()} == {
        "traders": len(chunked.traders), "manifests": len(chunked.manifests), "declarations": ROWS}
    for name, (path, _) in written.items():
        frame = pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path, dtype=str, keep_default_na=False)
        expected = getattr(chunked, name)
        if fmt == "parquet":
            pd.testing.assert_frame_equal(frame, expected)
        else:
            assert list(frame.columns) == list(expected.columns)
            assert list(frame.iloc[:, 0]) == list(expected.iloc[:, 0].astype(str))


def test_a_one_slice_world_is_written_as_write_world_writes_it(tmp_path):
    generated = generate_world(tmp_path / "generated", 2_000, seed=SEED)
    whole = write_world(simulate(2_000, seed=SEED), tmp_path / "whole")
    for name, path in whole.items():
        assert generated[name][0].read_bytes() == path.read_bytes(), name


def test_day_slices_cut_whole_days_of_at_most_the_chunk_size():
    day = np.array([0, 0, 1, 2, 2, 2, 5, 9])
    ship = Shipments(items=np.array([2, 1, 4, 1, 1, 1, 3, 6]), importer=np.zeros(8, int), day=day)
    assert day_slices(ship, 10, 100) == [(0, 10)]
    assert day_slices(ship, 10, 5) == [(0, 1), (1, 2), (2, 5), (5, 9), (9, 10)]  # day 9 alone exceeds 5: on its own
