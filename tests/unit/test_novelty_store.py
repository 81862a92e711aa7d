"""The novelty signals read from DuckDB (features/warehouse/novelty_store.py) are NoveltyIndex's, value for value."""
from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from features.novelty import NOVELTY_COLUMNS, NoveltyIndex
from features.warehouse.novelty_store import NoveltyStore


def test_a_partitions_novelty_from_duckdb_is_the_indexs_exactly(world):
    """Stored declarations and new ones, with new importers and sellers, pairs never filed, missing declarants,
    exporters and offices, and dates before, inside and after the history: every signal equal to NoveltyIndex's,
    bit for bit."""
    declarations = world.declarations
    history = declarations.iloc[:15_000]
    rng = np.random.default_rng(11)
    queries = pd.concat([declarations.iloc[15_000:16_500], history.sample(500, random_state=2)], ignore_index=True)
    queries.loc[rng.random(len(queries)) < 0.1, "importer_id"] = "NEW-IMPORTER"
    queries.loc[rng.random(len(queries)) < 0.1, "declarant_id"] = None
    queries.loc[rng.random(len(queries)) < 0.1, "office_id"] = None
    queries.loc[rng.random(len(queries)) < 0.1, "exporter_id"] = None
    queries.loc[rng.random(len(queries)) < 0.05, "exporter_id"] = "NEW-SELLER"
    queries.loc[rng.random(len(queries)) < 0.05, "hs_code"] = "979797"
    queries.index = pd.Index([f"q{i}" for i in range(len(queries))])
    con = duckdb.connect()
    con.register("history", history)
    store = NoveltyStore.build(con, "SELECT * FROM history")
    got, want = store.lookup(queries), NoveltyIndex(history).lookup(queries)
    assert list(got.columns) == NOVELTY_COLUMNS and got.index.equals(queries.index)
    assert (want["new_pairs"] > 0).any() and (want["new_pairs"] < 1).any()
    assert (want["importer_mix_shift"] > 0).any() and (want["heading_origin_shift"] > 0).any()
    shifted = want["declarant_client_shift"]
    assert (shifted > 0).any() and (shifted[queries["declarant_id"].isna()] == 0).all()
    assert (want["new_parties"] > 0).any() and (want["new_parties"] < want["new_parties"].max()).any()
    assert (want["new_relationships"] > 0).any() and (want["new_relationships"] < want["new_relationships"].max()).any()
    pd.testing.assert_frame_equal(got, want[NOVELTY_COLUMNS], check_exact=True)
    assert store.lookup(queries.iloc[:0]).empty
