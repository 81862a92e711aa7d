from __future__ import annotations

import pandas as pd

from features.labels import labelled


def test_a_row_is_labelled_when_controlled_with_a_known_outcome():
    frame = pd.DataFrame({"inspected": [1, 1, 0, None], "fraud": [1, None, None, 0]})
    assert labelled(frame).tolist() == [True, False, False, False]
    assert labelled(frame.drop(columns="inspected")).tolist() == [True, False, False, True]
    assert labelled(frame.drop(columns="fraud")).tolist() == [False] * 4
