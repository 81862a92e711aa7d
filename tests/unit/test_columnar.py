"""The batch path's columnar shortcuts give what the plain pandas and Python they replace give: the byte pass before
the control-character regex, Arrow's hash join for record lookups, and an explanation's contributions as the
decision log's Arrow column."""
from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from features.build import positions
from features.intake.text import CONTROLS, invalid_text_mask
from serving.reasons import CONTRIBUTIONS_TYPE, TopContributions

# Text mixing what may be held (tab, LF, CR, accents, U+00A0-U+00BF, which share the C1 controls' lead byte) with
# what may not (C0 controls, DEL, C1 controls).
CHARACTERS = st.sampled_from(list("ab1 \t\n\ré°£\u00a0\u00bf") + ["\x00", "\x01", "\x1f", "\x7f", "\x85", "\x9f"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(CHARACTERS, max_size=6)), max_size=8), st.integers(0, 3))
def test_the_byte_pass_finds_every_control_the_regex_finds(values, skip):
    column = pd.Series(values, dtype="str").iloc[skip:]  # a slice's buffer holds the values before it too
    want = column.str.contains(f"[{CONTROLS}]", regex=True).fillna(False).astype(bool)
    assert invalid_text_mask(column).tolist() == want.tolist()


def test_a_column_of_plain_text_takes_the_byte_pass_alone(monkeypatch):
    column = pd.Series(["IMP-1", "déclarant\t2", None, "line\r\nbreak"], dtype="str")
    monkeypatch.setattr(pd.Series, "str", property(lambda _: (_ for _ in ()).throw(AssertionError("regex ran"))))
    assert not invalid_text_mask(column).any()


def test_arrow_positions_equal_pandas_get_indexer():
    index = pd.Index(["B1", "B2", None, "B4"], dtype="str")
    keys = pd.Series(["B4", "B9", None, "B1", "B1", "b1"], dtype="str")
    assert positions(index, keys).tolist() == index.get_indexer(keys.to_numpy()).tolist() == [3, -1, 2, 0, 0, -1]
    assert positions(index, keys.iloc[[0, 2, 5]]).tolist() == [3, 2, -1]  # fewer keys than values: pandas' own
    numbers = pd.Index([10, 20, 30])
    assert positions(numbers, pd.Series([30, 5])).tolist() == [2, -1]  # not text: pandas' own


def test_contributions_as_the_logs_arrow_column_equal_their_dicts():
    top = TopContributions(["price", "office_id", "hs_code"], ["price", "office", "entity:hs"],
                           np.array([[0, 2], [1, 0]]), np.array([["1.5", None], ["OF-1", "2"]], dtype=object),
                           np.array([[0.25, -0.5], [0.125, np.nan]]))
    column = top.arrow(np.array([1, 3]), 5)
    assert column.type == CONTRIBUTIONS_TYPE
    rows = top.rows()
    assert rows[0] == [{"feature": "price", "family": "price", "value": "1.5", "contribution": 0.25},
                       {"feature": "hs_code", "family": "entity:hs", "value": None, "contribution": -0.5}]
    got = column.to_pylist()
    assert got[0] is None and got[2] is None and got[4] is None
    assert got[1] == rows[0] and got[3][0] == rows[1][0] and np.isnan(got[3][1]["contribution"])
    assert TopContributions.none().arrow(np.array([], dtype=int), 2).to_pylist() == [None, None]
