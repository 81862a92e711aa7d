"""Entity ratings (serving/entity_ratings.py) on hand-made frames."""
from __future__ import annotations

import pandas as pd

from serving.entity_ratings import entity_ratings, rate_entities
from tests.unit.test_post_clearance import HISTORY


def test_ratings_band_entities_with_an_interval():
    table = entity_ratings(HISTORY, "importer_id")
    assert table.index.tolist() == ["C", "A", "B"]
    assert table.loc["C", "band"] == "high" and table.loc["B", "band"] == "low"
    assert (table["interval_low"] < table["hit_rate"]).all() and (table["hit_rate"] < table["interval_high"]).all()
    assert "10 frauds in 10 controls" in table.loc["C", "why"]
    record = table.reset_index().to_dict("records")[0]  # as `ratings --json` prints it: counts are integers
    assert type(record["controls"]) is int and type(record["hits"]) is int and type(record["volume"]) is int


def test_every_entity_is_rated_by_its_columns_with_hs_levels_cut_from_the_code():
    declarations = pd.DataFrame({"importer_id": ["A", "A", "B"], "hs_code": ["870323", "870324", "010121"],
                                 "origin_country": ["CN", "CN", "FR"], "office_id": ["O1", "O1", "O2"],
                                 "inspected": [1, 1, None], "fraud": [1, 0, None]})
    headings = rate_entities(declarations, "hs_heading")
    assert headings["hs_heading"].tolist() == ["8703", "0101"] and headings["controls"].tolist() == [2, 0]
    pairs = rate_entities(declarations, "importer_heading")
    assert set(zip(pairs["importer_id"], pairs["hs_heading"], strict=True)) == {("A", "8703"), ("B", "0101")}
    lanes = rate_entities(declarations, "lane", min_controls=1)
    assert lanes[["origin_country", "office_id"]].values.tolist() == [["CN", "O1"]]
