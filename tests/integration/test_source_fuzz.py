"""A fuzzer in an export's own layout (`aduana serve --mapping islas_mapping.yaml`): 1,000 requests of the islas
export's arriving declarations, mutated by a seeded generator, over ONE kept-alive connection to a real uvicorn
server. None may answer 5xx, none may cost the connection, and every 4xx names the field it refuses."""
from __future__ import annotations

import functools
import http.client
import json
import random
import time

import pytest
from fastapi.testclient import TestClient

from features.intake.mapping import load_mapping
from features.simulator.islas import MAPPING_PATH, simulate_islas
from serving.api import create_app
from tests.integration.test_api import api_scorer  # noqa: F401 - a module-scoped fixture
from tests.integration.test_api_guards import running

pytestmark = pytest.mark.integration

SEED = 19
REQUESTS = 1_000
ODD_TEXT = ["\udfff", "\ud800x", "x\udc00", "a\x00b", "\x00", "\x1b[31m", "\x7f", "\x85", "\u200b", "\ufeff",
            "\uff29\uff2d\uff30", "e\u0301", "\U0001f600", "\u202eevil", "", " ", "\u3000", "NULL", "N/A", "nan",
            "x" * 5000, "'; DROP TABLE declarations; --", "=cmd|' /C calc'!A0", "\n", "\t", "\u0660\u0661"]
ODD_NUMBERS = [0, -0.0, -1, 1e308, 5e-324, 2**53 + 1, 2**63, 2**64, 10**30, -(10**30), float("inf"), float("nan"),
               "1e309", "inf", "-inf", "NaN", "1,5", "1_000", "0x1F", "\uff11\uff12\uff13", 1.5, 1e-300, "12",
               "9" * 400]
ODD_DATES = ["2024-02-30", "31/02/2024", "1677-09-21", "2262-04-12", "9999-12-31", "0000-00-00", "20240601",
             "2024-06-01T10:00:00+02:00", "yesterday", 20240601, "2024-13-01", "\u0661\u0662/06/2024", "2024-06"]
ODD_VALUES = [True, False, None, {"a": 1}, [1, 2], [], {}, {"nested": {"deep": [1]}}]
EXTRA_NAMES = ["extra", "\udfffkey", "k\x00", "\u00dcn\u00efc\u00f6d\u00e9", "x" * 300, "", "Fraud", "declaration_id"]
POOLS = [ODD_TEXT, ODD_NUMBERS, ODD_DATES, ODD_VALUES]


@functools.cache
def _arrivals() -> list[dict]:
    """The islas export's arriving declarations (no labels yet), as JSON records with the file's column names."""
    return json.loads(simulate_islas(2_000, seed=SEED).arrivals.to_json(orient="records"))


def _mutated(rng: random.Random, record: dict) -> dict:
    """The record with one to three changes: an odd value in a column, a column left out, or a column added."""
    record = dict(record)
    for _ in range(rng.randint(1, 3)):
        change = rng.random()
        if change < 0.6:
            record[rng.choice(list(record) or ["extra"])] = rng.choice(rng.choice(POOLS))
        elif change < 0.8 and record:
            del record[rng.choice(list(record))]
        else:
            record[rng.choice(EXTRA_NAMES)] = rng.choice(rng.choice(POOLS))
    return record


def _payloads(records: list[dict]) -> list[object]:
    """REQUESTS bodies: mostly one mutated record, some untouched, some lists of two or three."""
    rng = random.Random(SEED)
    out = []
    for _ in range(REQUESTS):
        kind = rng.random()
        if kind < 0.1:
            out.append(rng.choice(records))
        elif kind < 0.85:
            out.append(_mutated(rng, rng.choice(records)))
        else:
            out.append([_mutated(rng, rng.choice(records)) for _ in range(rng.randint(2, 3))])
    return out


def _field_level(detail: list[dict]) -> bool:
    """Every error names its record's field: loc is body, the record's position in a list, then the field."""
    return bool(detail) and all(len(e["loc"]) >= 2 and e["loc"][0] == "body" and isinstance(e["loc"][-1], str)
                                and e["msg"] for e in detail)


@pytest.fixture(scope="module")
def islas_app(api_scorer):  # noqa: F811
    """The service as `aduana serve --mapping islas_mapping.yaml` starts it (the decision log left out: the fuzzer
    checks answers, and 1,000 of them would only cost warehouse writes)."""
    return create_app(api_scorer, api_key="", mapping=load_mapping(MAPPING_PATH), decision_log=False)


def test_text_no_field_may_hold_is_422_by_its_column_as_sent(islas_app):
    """The issue's reproduction: a lone surrogate in "Office ID" was a 500 (a pandas text column cannot hold one)."""
    client, record = TestClient(islas_app), _arrivals()[0]
    assert client.post("/v1/score", json=record).status_code == 200
    cases = [({**record, "Office ID": "\udfff"}, ["body", "Office ID"]),
             ({**record, "HS6 Code": "8703\x0023"}, ["body", "HS6 Code"]),
             ({**record, "Importer ID": "IMP\x1b"}, ["body", "Importer ID"]),
             ({**record, "Office\udfff": 1}, ["body", "Office\\udfff"]),  # a name: echoed escaped
             ([record, {**record, "Seller ID": "\ud800"}], ["body", 1, "Seller ID"])]
    for payload, loc in cases:
        answer = client.post("/v1/score", content=json.dumps(payload), headers={"content-type": "application/json"})
        assert answer.status_code == 422, answer.text
        assert [(e["loc"], e["type"]) for e in answer.json()["detail"]] == [(loc, "invalid_text")]


def test_a_thousand_fuzzed_source_records_on_one_connection_never_fail_the_server(islas_app):
    payloads = _payloads(_arrivals())
    statuses: dict[int, int] = {}
    with running(islas_app) as url:
        host, port = url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.connect()
        sock = connection.sock
        started = time.perf_counter()
        try:
            for payload in payloads:
                body = json.dumps(payload, allow_nan=True).encode()  # surrogates escaped, NaN/Infinity literals
                connection.request("POST", "/v1/score", body=body, headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                answer = json.loads(response.read())
                statuses[response.status] = statuses.get(response.status, 0) + 1
                assert response.status < 500, (payload, answer)
                assert connection.sock is sock, ("the connection was closed", payload, response.status, answer)
                if response.status == 422:
                    assert _field_level(answer["detail"]), (payload, answer)
                else:
                    assert response.status == 200, (payload, response.status, answer)
        finally:
            connection.close()
        elapsed = time.perf_counter() - started
    assert sum(statuses.values()) == REQUESTS
    assert statuses.get(200, 0) >= REQUESTS // 20 and statuses.get(422, 0) >= REQUESTS // 2, statuses  # both ways
    print(f"{REQUESTS} fuzzed source-layout requests on one connection in {elapsed:.1f} s: {statuses}")
