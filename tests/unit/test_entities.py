"""features/entities.py: the one table of entities and the HS levels."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd

from features.entities import BY_NAME, MISSING, entity_key, entity_keys, hs_level, hs_prefix


def test_hs_levels_cut_a_column_and_one_code_alike():
    codes = pd.Series(["870323", "0101210000", None], dtype="str")
    assert hs_level(codes, "hs_heading").tolist()[:2] == ["8703", "0101"] and pd.isna(hs_level(codes, "hs_chapter")[2])
    assert [hs_prefix("870323", level) for level in ("hs_chapter", "hs_heading", "hs_subheading")] == ["87", "8703",
                                                                                                    "870323"]


def test_an_entitys_key_is_the_same_for_a_batch_and_for_one_row():
    frame = pd.DataFrame({"importer_id": ["I1", None], "hs_code": ["870323", "010121"], "origin_country": ["JP", "CL"],
                          "office_id": ["O1", None], "declarant_id": ["D1", "D2"], "exporter_id": [None, "E2"]})
    keys = entity_keys(frame)
    for i, row in enumerate(frame.astype(object).where(frame.notna(), None).to_dict("records")):
        for name, key in keys.items():
            assert key[i] == entity_key(row, BY_NAME[name])
    assert keys["importer_heading"].tolist() == ["I1|8703", f"{MISSING}|0101"]
    assert np.array_equal(keys["lane"], np.array(["JP|O1", f"CL|{MISSING}"], dtype=object))


MADE_UP = """
import features.entities as E
E.ENTITIES = E.ENTITIES + (E.Entity("mode", ("transport_mode",), "transport mode", "transport by {transport_mode}"),)
E.BY_NAME = {e.name: e for e in E.ENTITIES}
E.NAMES = tuple(E.BY_NAME)

import pandas as pd
from features.build import build_features, integrate
from features.catalogue import BY_NAME, family_of
from features.simulator import simulate
from serving.backtest.data import from_world, label_free
from serving.reasons import sentence
from serving.ui.overview import entity_order

world = simulate(3000, seed=3)
frame = integrate(world.declarations, world.manifests, world.traders)
fs = build_features(frame)
assert "mode_hit_rate" in fs.X.columns and fs.X["mode_volume"].max() > 0            # profiled, a feature
assert family_of("mode_hit_rate") == "entity:mode" and BY_NAME["mode_days_known"].group == "profiles"
row = {**frame.iloc[-1].to_dict(), **fs.X.iloc[-1].to_dict()}
said = sentence("entity:mode", "mode_hit_rate", row)
assert said.startswith(f"transport by {row['transport_mode']}"), said                # reasons name it
assert "transport_mode" in label_free(from_world(world).frame).columns               # the backtest replays it
assert entity_order("mode") < entity_order("zzz")                                  # the page lists it
print("ok")
"""


def test_a_made_up_entity_is_one_entry_and_every_reader_picks_it_up():
    """One `Entity` more in features/entities.py, and nothing else: the profiles compute it, the catalogue lists its
    features in its own reason family, reasons name it, the backtest keys its label-free filings on its column
    and the analysts' page orders its ratings. Run in a fresh interpreter: the table is read at import."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(MADE_UP)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]
