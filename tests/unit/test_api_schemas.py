"""The request model is derived from the declarations contract (serving/api/schemas.py `declaration_model`): a field
the contract gains is a field the API reads, with the reader and schema of its type."""
from __future__ import annotations

import pytest

import serving.api.schemas as schemas
from features.contract import LABEL_FIELDS, field_types, required_fields
from serving.api.schemas import Declaration, declaration_fields, declaration_model


def test_the_request_carries_the_contracts_declaration_fields_in_order_and_no_label():
    contract = [f for f in field_types("declarations") if f not in LABEL_FIELDS]
    assert list(Declaration.model_fields) == contract
    assert [f for f, info in Declaration.model_fields.items() if info.is_required()] == required_fields("declarations")


def test_a_field_added_to_the_contract_appears_in_the_derived_model(monkeypatch):
    contract = field_types("declarations")
    monkeypatch.setattr(schemas, "field_types", lambda kind: {**contract, "seal_number": "text", "gross_mass_kg": "number"})
    model = declaration_model(declaration_fields(), [*required_fields("declarations"), "seal_number"])
    assert list(model.model_fields)[-2:] == ["seal_number", "gross_mass_kg"]
    assert model.model_fields["seal_number"].is_required() and not model.model_fields["gross_mass_kg"].is_required()
    base = {"declaration_id": "D1", "declaration_date": "2024-06-01", "importer_id": "IMP1", "hs_code": "870323",
            "origin_country": "JP", "declared_value": 1000.0}
    item = model.model_validate({**base, "seal_number": "  SEAL-1 ", "gross_mass_kg": "1e3"})
    assert (item.seal_number, item.gross_mass_kg) == ("SEAL-1", 1000.0)  # read as ingest reads the cells
    properties = model.model_json_schema()["properties"]
    assert properties["seal_number"]["maxLength"] == 1_000 and properties["gross_mass_kg"]["anyOf"][0]["minimum"] == 0
    with pytest.raises(ValueError, match="missing_required|a required field is empty"):
        model.model_validate({**base, "seal_number": " "})


def test_a_contract_type_the_api_cannot_read_is_refused_when_the_model_is_built():
    with pytest.raises(ValueError, match="no API reader"):
        declaration_model({"declaration_id": "text", "inspected": "flag"}, ["declaration_id"])
