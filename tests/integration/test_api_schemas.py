"""Declarations read by the request model (serving/api/schemas.py `Declaration`) through the app: one set of rules
with ingest for HS codes, ranges and text, so only what ingest quarantines is refused."""
from __future__ import annotations

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from serving.api import create_app
from tests.integration.test_api import _declaration, api_scorer  # noqa: F401 - a module-scoped fixture

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(api_scorer):  # noqa: F811
    with TestClient(create_app(api_scorer, max_items=5, api_key=""), raise_server_exceptions=False) as c:
        yield c  # the lifespan: the app's copier stops with the module


@pytest.mark.parametrize("code", ["980000", "990110", "000000", "0012345678",
                                  "\u0668\u0667\u0660\u0663\u0662\u0663",  # Arabic-Indic digits
                                  "87\u0660323", "87\u0966323"])  # one Arabic-Indic, one Devanagari zero
def test_hs_codes_that_ingest_rejects_are_422(client, world, code):
    response = client.post("/v1/score", json={**_declaration(world), "hs_code": code})
    assert response.status_code == 422 and any("hs_code" in map(str, e["loc"]) for e in response.json()["detail"])


def _ingest_reasons(payload: dict) -> list[str]:
    """The reasons ingest quarantines this record for (none: it stores it)."""
    from features.intake.mapping import ColumnMapping
    from features.intake.validation import check_rows

    frame = pd.DataFrame([{k: None if v is None else str(v) for k, v in payload.items()}], dtype="str")
    return check_rows(frame, "declarations", ColumnMapping()).rejected["reason"].tolist()


@pytest.mark.parametrize(("field", "value"), [
    ("tax_rate", 7.54), ("tax_rate", 40.0),  # a 754 % duty (422 under the old 500 % cap), and a higher one
    ("declaration_date", "1900-01-01"), ("declaration_date", "1677-09-22"),  # old, but storable
])
def test_implausible_values_are_scored_as_ingest_stores_them(client, world, field, value):
    payload = {**_declaration(world), field: value}
    response = client.post("/v1/score", json=payload)
    assert response.status_code == 200, response.text
    assert response.json()["lane"] in ("red", "yellow", "green")
    assert _ingest_reasons(payload) == []


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("tax_rate", -0.01, "negative_value"), ("tax_rate", "abc", "invalid_type"),
    ("declaration_date", "1677-09-21", "date_out_of_range"), ("declaration_date", "2999-01-01", "date_out_of_range"),
    ("declaration_date", "2024-02-30", "invalid_date"),
])
def test_impossible_values_are_422_as_ingest_quarantines_them(client, world, field, value, reason):
    payload = {**_declaration(world), field: value}
    response = client.post("/v1/score", json=payload)
    assert response.status_code == 422 and any(field in map(str, e["loc"]) for e in response.json()["detail"])
    assert _ingest_reasons(payload) == [reason]


def test_text_is_read_in_ingest_normal_form(client, world):
    """Fullwidth digits and letters are their plain forms (NFKC), and invisible format characters are dropped, as
    ingest reads them (features/intake/text.py)."""
    plain = _declaration(world)
    disguised = {**plain, "hs_code": "".join(chr(ord(c) + 0xFEE0) for c in plain["hs_code"]),
                 "importer_id": plain["importer_id"][:3] + "\u200b" + plain["importer_id"][3:]}
    a, b = client.post("/v1/score", json=plain), client.post("/v1/score", json=disguised)
    assert a.status_code == b.status_code == 200, b.text
    assert a.json()["risk_score"] == b.json()["risk_score"]
