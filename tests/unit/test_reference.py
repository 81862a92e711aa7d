"""expectations/reference.py: each dataset's reference profile, merged batch by batch (no GX, no warehouse)."""
from __future__ import annotations

import numpy as np
import pytest

from expectations.checkpoint import LABELLED_MARK, load_suite, plan_expectations
from expectations.reference import (
    accept_pending,
    load_reference,
    merge,
    profile_frame,
    quantile,
    record_batch,
    reference_path,
)
from tests.conftest import foreign


def test_the_profile_merges_once_per_batch_and_reads_quantiles_within_its_resolution():
    suite = load_suite("declarations")
    frame = foreign(2000, seed=5)
    profile = profile_frame(frame, suite, "declarations")
    ref = merge(merge(None, profile, "b1"), profile, "b1")
    assert ref["batches"] == ["b1"] and ref["rows"] == 2000
    ref = merge(ref, profile, "b2")
    entry = ref["sections"]["all"]["columns"]["net_mass_kg"]
    assert entry["rows"] == 4000 and entry["nulls"] == 0
    assert quantile(entry, 0.5) == pytest.approx(frame["net_mass_kg"].median(), rel=0.07)
    assert quantile(entry, 0.99) == pytest.approx(frame["net_mass_kg"].quantile(0.99), rel=0.07)
    assert ref["sections"]["labelled"]["columns"]["fraud"]["count"] == 4000


def test_label_expectations_apply_to_labelled_rows_only():
    suite = load_suite("declarations")
    frame = foreign(300, seed=1).assign(inspected=lambda d: (np.arange(len(d)) % 2).astype(float),
                                        fraud=lambda d: d["fraud"].where(d["inspected"] == 1))
    ref = merge(None, profile_frame(frame, suite, "declarations"), "b1")
    planned, _ = plan_expectations(frame, suite, ref)
    fraud = next(p for p in planned if p["kwargs"].get("column") == "fraud")
    assert fraud["kwargs"]["row_condition"]["column"] == {"name": LABELLED_MARK}
    assert ref["sections"]["labelled"]["columns"]["fraud"]["count"] == 150
    pending = frame.assign(fraud=frame["fraud"].where(np.arange(len(frame)) % 4 != 1))  # controlled, outcome unknown
    assert merge(None, profile_frame(pending, suite, "declarations"), "b1")["sections"]["labelled"]["rows"] == 75


def test_a_pending_profile_merges_once_and_the_reference_is_replaced_atomically(tmp_path):
    suite = load_suite("declarations")
    profile = profile_frame(foreign(100, seed=1), suite, "declarations")
    record_batch(tmp_path, "b1", profile, accepted=True)
    record_batch(tmp_path, "b2", profile, accepted=False)
    assert load_reference(tmp_path, "declarations")["batches"] == ["b1"]
    assert accept_pending(tmp_path, "b2") and not accept_pending(tmp_path, "b2")
    assert load_reference(tmp_path, "declarations")["batches"] == ["b1", "b2"]
    assert sorted(p.name for p in reference_path(tmp_path, "declarations").parent.glob("*.tmp")) == []
