"""A large batch's profile lookup (sorted once per entity, features/profiles.py `_lookup_sorted`) gives exactly the
values of the per-lookup path that small batches take."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import features.profiles as profiles
from features.build import integrate
from features.entities import entity_keys
from features.profiles import ProfileIndex, first_filings, to_seconds
from features.simulator import simulate


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    world = simulate(12_000, seed=7)
    return integrate(world.declarations, world.manifests, world.traders).reset_index(drop=True)


def _queries(history: pd.DataFrame) -> pd.DataFrame:
    """Every declaration in shuffled order, some with keys or dates the index has never seen."""
    rng = np.random.default_rng(1)
    queries = history.sample(frac=1.0, random_state=2).reset_index(drop=True)
    queries.loc[:399, "importer_id"] = [f"NEW{i}" for i in rng.integers(0, 60, 400)]  # unknown, some repeated
    queries.loc[400:449, "declaration_date"] = pd.NaT
    queries.loc[450:499, "declaration_date"] = pd.Timestamp("2045-06-01")  # after every event
    queries.loc[500:549, "declaration_date"] = pd.Timestamp("1995-01-01")  # before every event
    return queries


def _both(index: ProfileIndex, queries: pd.DataFrame, monkeypatch, batch_first=None) -> tuple[np.ndarray, np.ndarray]:
    keys, seconds = entity_keys(queries), to_seconds(queries["declaration_date"].to_numpy())
    assert len(seconds) >= profiles.SORT_NEEDLES
    large = index.lookup_keys(keys, seconds, batch_first)
    with monkeypatch.context() as patch:
        patch.setattr(profiles, "SORT_NEEDLES", 10**12)  # every lookup takes the small-batch path
        small = index.lookup_keys(keys, seconds, batch_first)
    return large, small


def test_a_large_batch_equals_the_small_batch_path(history, monkeypatch):
    index = ProfileIndex(history.iloc[:8_000])
    queries = _queries(history)
    large, small = _both(index, queries, monkeypatch)
    np.testing.assert_array_equal(large, small)
    assert np.isnan(large).any() and (large[:, 3::7] > 0).any()  # the check saw missing and known profiles


def test_a_partition_of_a_batch_equals_the_small_batch_path(history, monkeypatch):
    index = ProfileIndex(history.iloc[:8_000])
    queries = _queries(history)
    batch_first = first_filings(pd.concat([queries, history]))
    large, small = _both(index, queries.iloc[:6_000], monkeypatch, batch_first)
    np.testing.assert_array_equal(large, small)


def test_an_index_sharing_filings_equals_the_small_batch_path(history, monkeypatch):
    filings = ProfileIndex(history)
    index = ProfileIndex(history.iloc[:5_000], filings=filings)
    large, small = _both(index, _queries(history), monkeypatch)
    np.testing.assert_array_equal(large, small)


def test_missing_entities_stay_missing(history, monkeypatch):
    index = ProfileIndex(history.iloc[:8_000])
    queries = _queries(history).drop(columns=["office_id"])  # no lane, no declarant × office
    large, small = _both(index, queries, monkeypatch)
    np.testing.assert_array_equal(large, small)


@pytest.mark.parametrize("top", [50, 70_000, 5_000_000])
def test_the_code_sort_is_a_stable_sort_by_code(top):
    rng = np.random.default_rng(top)
    seconds = rng.integers(0, 1_000, 20_000)
    codes = rng.integers(-1, top, 20_000)
    by_time = np.argsort(seconds, kind="stable")
    expected = by_time[np.argsort(codes[by_time], kind="stable")]
    np.testing.assert_array_equal(profiles._by_code(codes, by_time), expected)
