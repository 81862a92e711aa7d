"""serving/ui/lookup.py: a declaration's own fields as stored, and its control outcome apart."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from serving.ui.lookup import declaration_section, stored_text

STORED = {  # a row as `Warehouse.declaration` returns it: canonical fields, labels and bookkeeping
    "declaration_id": "D1", "declaration_date": pd.Timestamp("2025-01-02"), "importer_id": "IMP<7>",
    "hs_code": "080300", "origin_country": "EC", "declared_value": 12345.675, "office_id": None,
    "quantity": np.int64(40), "inspected": np.nan, "fraud": np.nan, "revenue": np.nan, "critical": np.nan,
    "control_date": pd.NaT, "batch_id": "ingest-1", "row_number": 3, "row_hash": "abc", "ingested_at":
    pd.Timestamp("2025-01-03 10:00:01"), "label_batch_id": None,
}


def fields(html: str, table_id: str) -> dict[str, str]:
    found = re.search(rf'<table id="{table_id}">(.*?)</table>', html, re.S).group(1)
    return dict(re.findall(r"<tr><th>([^<]+)</th><td>(.*?)</td></tr>", found))


def test_the_declarations_own_fields_are_shown_as_stored_without_bookkeeping_or_labels():
    html = declaration_section(STORED)
    shown = fields(html, "declaration-fields")
    assert list(shown) == ["declaration_id", "declaration_date", "importer_id", "hs_code", "origin_country",
                           "declared_value", "office_id", "quantity"]
    assert shown["declaration_date"] == "2025-01-02" and shown["hs_code"] == "080300"  # leading zeros kept
    assert shown["declared_value"] == "12345.675" and shown["quantity"] == "40"  # numbers as stored
    assert shown["importer_id"] == "IMP&lt;7&gt;" and "(none)" in shown["office_id"]
    assert "Not controlled (no outcome recorded)." in html and 'id="outcome"' in html


def test_a_controlled_declaration_shows_its_outcome_in_a_table_of_its_own():
    html = declaration_section({**STORED, "inspected": 1, "fraud": 1, "revenue": 830.5, "critical": 0,
                                "control_date": pd.Timestamp("2025-01-09")})
    outcome = fields(html, "outcome")
    assert outcome == {"inspected": "1", "fraud": "1", "revenue": "830.5", "critical": "0",
                       "control_date": "2025-01-09"}
    assert "Not controlled" not in html and "revenue" not in fields(html, "declaration-fields")


def test_an_inspection_without_an_outcome_is_not_a_label():
    html = declaration_section({**STORED, "inspected": 1})
    assert "Inspected, but no outcome is recorded yet." in html and 'id="outcome"' in html and "<table id=\"outcome\"" not in html


def test_a_declaration_the_warehouse_does_not_hold_says_so():
    html = declaration_section(None)
    assert "The warehouse does not hold this declaration" in html and "aduana ingest" in html


def test_stored_values_are_shown_exactly():
    assert stored_text(np.float64(0.1)) == "0.1" and stored_text(100.0) == "100" and stored_text(pd.NA).endswith(
        "(none)</span>")
    assert stored_text(pd.Timestamp("2025-01-02 10:30")) == "2025-01-02 10:30:00"
