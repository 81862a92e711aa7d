"""The label rules of the contract: a critical finding is a fraud finding, in declarations and outcomes alike."""
from __future__ import annotations

import pandas as pd
import pytest

from features.contract import label_contradictions
from features.intake.mapping import ColumnMapping
from features.intake.validation import check_rows

DECLARATION = {
    "declaration_id": "D1", "declaration_date": "2024-03-01", "importer_id": "IMP1", "hs_code": "870323",
    "origin_country": "JP", "declared_value": "25000.50", "inspected": "1", "fraud": "1", "revenue": "0",
    "critical": "1", "control_date": "2024-03-05",
}


def _rejected(kind: str, **row: str) -> pd.DataFrame:
    return check_rows(pd.DataFrame([row], dtype="str"), kind, ColumnMapping()).rejected


def test_a_critical_fraud_is_a_fraud():
    # Given a declaration found critical (the other labels consistent)
    assert _rejected("declarations", **DECLARATION).empty
    # When it says critical=1 but fraud=0, then it is quarantined, saying which labels contradict
    rejected = _rejected("declarations", **DECLARATION | {"fraud": "0"})
    assert rejected["reason"].tolist() == ["inconsistent_labels"]
    assert rejected["message"].tolist() == ["inconsistent labels: critical=1 but fraud=0"]


@pytest.mark.parametrize(("row", "message"), [
    ({"fraud": "0", "critical": "1"}, "critical=1 but fraud=0"),
    ({"fraud": "0", "critical": "1", "revenue": "80"}, "revenue 80.0 > 0 but fraud=0; critical=1 but fraud=0"),
])
def test_an_outcome_file_is_held_to_the_same_rule(row, message):
    rejected = _rejected("outcomes", declaration_id="D1", **row)
    assert rejected["reason"].tolist() == ["inconsistent_labels"]
    assert rejected["message"].tolist() == [f"inconsistent labels: {message}"]


def test_critical_without_a_fraud_value_is_said_as_such():
    frame = pd.DataFrame({"fraud": pd.array([None, 1, 0], dtype="Int8"), "critical": pd.array([1, 1, 0], dtype="Int8")})
    assert label_contradictions(frame, "outcomes").tolist() == ["critical=1 but fraud is empty", "", ""]
