"""features/intake/text.py: one normal form for text, for the values and the watch lists they are matched against."""
from __future__ import annotations

import pandas as pd
import pytest

from features.intake.text import normalise_text
from serving.selection import Rules, rule_hits


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("IMP1", "IMP1"), (" IMP1 ", "IMP1"), ("IMP\u200b1", "IMP1"), ("\ufeffIMP1", "IMP1"), ("ＩＭＰ１", "IMP1"),
     ("IMP\u00ad1\u2060", "IMP1"), ("\u00a0IMP1\u3000", "IMP1"), ("Café", "Café"), ("Cafe\u0301", "Café")],
)
def test_text_is_normalised_one_way(raw, expected):
    out = normalise_text(pd.Series([raw, None], dtype="str"))
    assert out.iloc[0] == expected and pd.isna(out.iloc[1])


def test_the_watch_list_matches_a_normalised_importer():
    # Given a watch list entry with a stray zero-width joiner, and declarations whose ids carry format characters
    rules = Rules(watchlist_importers=["IMP1\u200d"])
    frame = pd.DataFrame({"importer_id": ["IMP\u200b1", "ＩＭＰ１", "IMP2"], "hs_code": ["870323"] * 3,
                          "origin_country": ["JP"] * 3})
    # When the hard rules are applied, Then both spellings of IMP1 are on the watch list, IMP2 is not
    hits = rule_hits(frame, rules)
    assert hits.tolist()[:2] == ["importer IMP1 is on the watch list"] * 2 and hits.iloc[2] == ""
