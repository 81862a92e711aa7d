"""A request's body read into declarations (serving/api/body.py): what is not declarations is 422, a list past
the cap is refused before any per-item work (and /healthz stays fast meanwhile), and error lists are capped."""
from __future__ import annotations

import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from serving.api import create_app
from tests.integration.test_api import api_scorer  # noqa: F401 - a module-scoped fixture
from tests.integration.test_api_guards import running

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(api_scorer):  # noqa: F811
    with TestClient(create_app(api_scorer, max_items=5, api_key=""), raise_server_exceptions=False) as c:
        yield c  # the lifespan: the app's copier stops with the module


def _poll(url: str, stop: threading.Event, latencies: list[float]) -> None:
    with httpx.Client(base_url=url, timeout=30) as c:
        while not stop.is_set():
            t = time.perf_counter()
            assert c.get("/healthz").status_code == 200
            latencies.append(time.perf_counter() - t)
            time.sleep(0.01)


def test_a_list_of_100000_empty_objects_is_refused_at_once_and_healthz_stays_fast(api_scorer):  # noqa: F811
    body = b"[" + b", ".join([b"{}"] * 100_000) + b"]"  # 400 KB: under the body cap
    with running(create_app(api_scorer, api_key="", decision_log=False)) as url:
        stop, latencies = threading.Event(), []
        poller = threading.Thread(target=_poll, args=(url, stop, latencies))
        poller.start()
        try:
            time.sleep(0.2)
            t = time.perf_counter()
            response = httpx.post(f"{url}/v1/score", content=body, headers={"content-type": "application/json"},
                                  timeout=120)
            elapsed = time.perf_counter() - t
            time.sleep(0.2)
        finally:
            stop.set()
            poller.join(30)
    assert response.status_code == 413, response.text[:300]
    assert len(response.content) < 2_000
    assert elapsed < 2.0, elapsed  # the bench measures the figure (under 1 s); the bound here allows a busy CI box
    assert max(latencies) < 0.25, max(latencies)


def test_validation_errors_are_capped_with_a_count(api_scorer):  # noqa: F811
    c = TestClient(create_app(api_scorer, max_items=100, api_key="", decision_log=False))
    response = c.post("/v1/score", json=[{}] * 100)  # six missing fields each: 600 errors
    assert response.status_code == 422
    body = response.json()
    assert len(body["detail"]) == 20 and body["error_count"] == 600
    wide = c.post("/v1/score", json={f"k{i}": 0 for i in range(50_000)})  # one object, 50,000 unknown fields
    assert wide.status_code == 422 and len(wide.json()["detail"]) <= 20


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"declared_value": ' + b"1" * 100_000 + b"}", b"7", b'"x"',
                                  b"null", b"[1, 2]", b"{not json"])
def test_bodies_that_are_not_declarations_are_422(client, body):
    response = client.post("/v1/score", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
