"""The OpenAPI request examples of POST /v1/score: declarations of the built-in simulator, which the request model
and the documented schema accept and the API scores."""
from __future__ import annotations

import jsonschema
import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter

from features.simulator import simulate
from serving.api import create_app
from serving.api.docs import EXAMPLE_ROWS, EXAMPLE_SEED
from serving.api.schemas import Declaration
from tests.integration.test_api import api_scorer  # noqa: F401 - a module-scoped fixture

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(api_scorer):  # noqa: F811
    return TestClient(create_app(api_scorer, api_key="", decision_log=False))


def test_the_score_request_documents_one_declaration_and_a_list_from_the_simulator(client):
    body = client.get("/openapi.json").json()["paths"]["/v1/score"]["post"]["requestBody"]["content"]["application/json"]
    examples = body["examples"]
    assert set(examples) == {"one", "list"} and all(e["summary"] for e in examples.values())
    one, many = examples["one"]["value"], examples["list"]["value"]
    assert isinstance(one, dict) and isinstance(many, list) and len(many) >= 2
    assert Declaration.model_validate(one).declaration_id == one["declaration_id"]  # the request model accepts them
    TypeAdapter(list[Declaration]).validate_python(many)
    for example in (one, many):  # and so does the schema the document gives
        jsonschema.validate(example, body["schema"])

    simulated = simulate(EXAMPLE_ROWS, seed=EXAMPLE_SEED).declarations.set_index("declaration_id")
    for declaration in many:  # the simulator's rows, not values typed in
        row = simulated.loc[declaration["declaration_id"]]
        assert declaration["declaration_date"] == row["declaration_date"].date().isoformat()
        assert (declaration["importer_id"], declaration["hs_code"]) == (row["importer_id"], row["hs_code"])
        assert declaration["declared_value"] == pytest.approx(row["declared_value"])


def test_the_examples_score(client):
    examples = client.get("/openapi.json").json()["paths"]["/v1/score"]["post"]["requestBody"]["content"][
        "application/json"]["examples"]
    one = client.post("/v1/score", json=examples["one"]["value"])
    assert one.status_code == 200, one.text
    assert one.json()["declaration_id"] == examples["one"]["value"]["declaration_id"]
    assert one.json()["lane"] in ("red", "yellow", "green") and one.json()["model_version"] == "3"
    many = client.post("/v1/score", json=examples["list"]["value"])
    assert many.status_code == 200, many.text
    assert [a["declaration_id"] for a in many.json()] == [d["declaration_id"] for d in examples["list"]["value"]]
