"""The app's routes (serving/api/app.py): declarations scored alike alone and in a list, edge values, a warehouse
another process is writing, the key, and what /readyz and the OpenAPI document tell."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from features.contract import ISO_COUNTRIES
from features.intake.reader import NULL_MARKERS
from serving.api import create_app
from serving.lanes import LanePolicy
from serving.scorer import Scorer
from tests.integration.test_api import _declaration, api_scorer, on_the_default_slot  # noqa: F401 - a module-scoped fixture
from tests.integration.test_scorer import FixedSource

pytestmark = pytest.mark.integration

EDGE_AMOUNTS = [0.0, 5e-324, 2.2250738585072014e-308, 1e-300, 1.0, 2.0, 1e300, 1e308, 1.7976931348623157e308]


@pytest.fixture(scope="module")
def client(api_scorer):  # noqa: F811
    with TestClient(create_app(on_the_default_slot(api_scorer), max_items=5, api_key=""),
                    raise_server_exceptions=False) as c:
        yield c  # the lifespan: the app's copier stops with the module


@contextmanager
def write_locked(path: Path) -> Iterator[None]:
    """Another process holding the warehouse's write lock (as ingest does), released however the test ends."""
    # The API's own background work (a decision-log flush, a snapshot check) may hold the file for a moment: retry.
    script = ("import duckdb, sys, time\n"
              "for _ in range(200):\n"
              "    try:\n"
              "        c = duckdb.connect(sys.argv[1]); break\n"
              "    except duckdb.IOException:\n"
              "        time.sleep(0.05)\n"
              "else:\n"
              "    sys.exit('could not take the lock')\n"
              "print('locked', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield
    finally:
        proc.kill()
        proc.wait(10)


def _contract_valid_declarations(world, count: int):
    """Lists of 2 to `count` random declarations that the contract accepts: edge values, long ids, unknown
    countries, optionals missing, stored and new bills of lading (shared or not), known and new entities."""
    from hypothesis import strategies as st

    stored = world.declarations.tail(400)
    # An id the contract accepts: a file's null markers (NULL, N/A, ...) are a missing value, in a file and the API.
    ids = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_/", min_size=1, max_size=100).filter(
        lambda v: v not in NULL_MARKERS)
    amount = st.one_of(st.sampled_from(EDGE_AMOUNTS), st.floats(0, 1e308, allow_nan=False, allow_infinity=False))
    hs = st.one_of(st.sampled_from(sorted(stored["hs_code"].unique())),
                   st.from_regex(r"(0[1-9]|[1-8][0-9]|9[0-7])[0-9]{4}([0-9]{2}){0,2}", fullmatch=True))
    country = st.sampled_from(sorted(ISO_COUNTRIES))
    optional = {
        "declarant_id": st.one_of(st.none(), st.sampled_from(sorted(stored["declarant_id"].dropna().unique())), ids),
        "exporter_id": st.one_of(st.none(), ids),
        "office_id": st.one_of(st.none(), st.sampled_from(sorted(stored["office_id"].dropna().unique()))),
        "transport_mode": st.one_of(st.none(), st.sampled_from(["sea", "air", "road", "rail", "post"])),
        "departure_country": st.one_of(st.none(), country),
        "net_mass_kg": st.one_of(st.none(), amount), "quantity": st.one_of(st.none(), amount),
        "tax_rate": st.one_of(st.none(), st.sampled_from([0.0, 5e-324, 0.15, 5.0, 7.54]), st.floats(0, 1e4)),
        "duty_paid": st.one_of(st.none(), amount),
        "bill_of_lading": st.one_of(st.none(), st.sampled_from(sorted(stored["bill_of_lading"].dropna().unique())),
                                    st.sampled_from(["BL-NEW-1", "BL-NEW-2"])),
    }
    item = st.fixed_dictionaries({
        "declaration_id": st.one_of(ids, st.sampled_from(sorted(stored["declaration_id"]))),
        "declaration_date": st.dates(dt.date(1677, 9, 22), dt.date.today()).map(str),
        "importer_id": st.one_of(st.sampled_from(sorted(stored["importer_id"].unique())), ids),
        "hs_code": hs, "origin_country": country, "declared_value": amount,
    }, optional=optional)
    return st.lists(item, min_size=2, max_size=count)


def test_contract_valid_declarations_are_scored_alike_one_by_one_and_as_a_list(client, world):
    """Never a 5xx on valid input, and a list's answers are its declarations' answers alone (each is scored as if
    it came alone, whatever else the request holds)."""
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_contract_valid_declarations(world, 4))
    def check(items):
        alone = [client.post("/v1/score", json=i) for i in items]
        assert all(r.status_code == 200 for r in alone), [(i, r.status_code, r.text) for i, r in zip(items, alone, strict=True)]
        together = client.post("/v1/score", json=items)
        assert together.status_code == 200, (items, together.text)
        for one, listed in zip(alone, together.json(), strict=True):
            one = one.json()
            assert one["declaration_id"] == listed["declaration_id"]
            assert one["risk_score"] == pytest.approx(listed["risk_score"], rel=1e-9, abs=1e-12), (items, one, listed)
            assert (one["lane"], one["selected_by"]) == (listed["lane"], listed["selected_by"])

    check()


@pytest.mark.parametrize(("value", "mass"), [(5e-324, 2.0), (1e308, 5e-324), (0.0, 2.0), (2.0, 0.0), (5e-324, 1e308)])
def test_a_unit_price_that_underflows_or_overflows_is_scored(client, world, value, mass):
    one = client.post("/v1/score", json={**_declaration(world), "declared_value": value, "net_mass_kg": mass})
    assert one.status_code == 200, one.text
    listed = client.post("/v1/score", json=[{**_declaration(world), "declared_value": value, "net_mass_kg": mass},
                                            _declaration(world, -2)])
    assert listed.status_code == 200 and listed.json()[0]["risk_score"] == pytest.approx(one.json()["risk_score"])


def test_a_write_locked_warehouse_keeps_the_last_snapshot_serving(api_scorer, world):  # noqa: F811
    c = TestClient(create_app(api_scorer, api_key="", decision_log=False), raise_server_exceptions=False)
    assert c.get("/readyz").status_code == 200  # a snapshot exists
    reload_seconds, api_scorer.reload_seconds = api_scorer.reload_seconds, 0
    try:
        api_scorer._context_checked_at = -float("inf")
        with write_locked(api_scorer.warehouse.path):
            assert c.get("/readyz").status_code == 200
            response = c.post("/v1/score", json=_declaration(world))
            assert response.status_code == 200, response.text
    finally:
        api_scorer.reload_seconds = reload_seconds


def test_before_any_snapshot_a_locked_warehouse_is_503_with_retry_after(api_scorer, world):  # noqa: F811
    fresh = Scorer(api_scorer.warehouse, LanePolicy(), source=FixedSource({"3": api_scorer.model}, "3"),
                   reload_seconds=0)
    c = TestClient(create_app(fresh, api_key="", decision_log=False), raise_server_exceptions=False)
    with write_locked(api_scorer.warehouse.path):
        ready = c.get("/readyz")
        assert ready.status_code == 503 and "retry-after" in ready.headers, ready.text
        score = c.post("/v1/score", json=_declaration(world))
        assert score.status_code == 503 and "retry-after" in score.headers, score.text
    assert c.get("/readyz").status_code == 200
    assert c.post("/v1/score", json=_declaration(world)).status_code == 200


def test_a_service_started_while_another_process_writes_reads_its_snapshot_once_that_is_done(api_scorer,  # noqa: F811
                                                                                            world):
    """The start waits for the warehouse as long as the warehouse itself waits (a request would wait 0.2 s), so the
    first answers have a snapshot and thresholds to give a lane with."""
    fresh = Scorer(api_scorer.warehouse, LanePolicy(), source=FixedSource({"3": api_scorer.model}, "3"),
                   reload_seconds=0)
    locked = threading.Event()

    def hold() -> None:
        with write_locked(api_scorer.warehouse.path):
            locked.set()
            time.sleep(1.5)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(60)
        since = time.monotonic()
        with TestClient(create_app(fresh, api_key="", decision_log=False), raise_server_exceptions=False) as c:
            assert time.monotonic() - since > 1.0  # the start waited for the writer
            assert c.get("/readyz").status_code == 200
            answer = c.post("/v1/score", json=_declaration(world))
            assert answer.status_code == 200 and answer.json()["lane"] in {"red", "yellow", "green"}, answer.text
    finally:
        holder.join()


def test_the_key_is_a_declared_security_scheme_compared_in_constant_time(api_scorer, world, monkeypatch):  # noqa: F811
    import hmac

    import serving.keys

    calls, compare = [], hmac.compare_digest
    monkeypatch.setattr(serving.keys.hmac, "compare_digest", lambda a, b: calls.append(1) or compare(a, b))
    c = TestClient(create_app(api_scorer, api_key="s3cret", decision_log=False), raise_server_exceptions=False)
    spec = c.get("/openapi.json").json()
    assert {"type": "apiKey", "in": "header", "name": "X-API-Key"}.items() <= \
        next(iter(spec["components"]["securitySchemes"].values())).items()
    post = spec["paths"]["/v1/score"]["post"]
    assert post["security"] and "401" in post["responses"]
    assert c.post("/v1/score", json=_declaration(world)).status_code == 401
    assert c.post("/v1/score", json=_declaration(world), headers={"X-API-Key": "wrong"}).status_code == 401
    assert c.post("/v1/score", json=_declaration(world), headers={"X-API-Key": "s3cr\u00e9t".encode()}).status_code == 401
    assert c.post("/v1/score", json=_declaration(world), headers={"X-API-Key": "s3cret"}).status_code == 200
    assert calls


def test_a_scoring_call_answered_past_the_router_is_the_routes_answer(api_scorer, world, monkeypatch):  # noqa: F811
    """DirectScore answers POST /v1/score before FastAPI's router; a call it leaves to the route (here one with a
    query string, which the route ignores) gets the same status, body and headers, refusals included."""
    import starlette.routing

    routed, call = [], starlette.routing.Router.__call__

    async def spy(self, scope, receive, send):  # noqa: ANN001, ANN202
        routed.append(scope["path"])
        return await call(self, scope, receive, send)

    monkeypatch.setattr(starlette.routing.Router, "__call__", spy)
    c = TestClient(create_app(api_scorer, api_key="s3cret", decision_log=False), raise_server_exceptions=False)
    headers = {"X-API-Key": "s3cret", "X-Request-ID": "same-call", "Content-Type": "application/json"}
    bodies = [_declaration(world), [_declaration(world), {**_declaration(world), "declaration_id": "D-2"}],
              {**_declaration(world), "net_mass_kg": -1}, "not json", []]
    statuses = set()
    for body in bodies:
        content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        direct = c.post("/v1/score", content=content, headers=headers)
        assert routed == [], body
        routed_answer = c.post("/v1/score?via=route", content=content, headers=headers)
        assert routed == ["/v1/score"], body
        routed.clear()
        assert direct.status_code == routed_answer.status_code and direct.content == routed_answer.content, body
        statuses.add(direct.status_code)
        assert {k: v for k, v in direct.headers.items() if k != "date"} == \
            {k: v for k, v in routed_answer.headers.items() if k != "date"}
    assert statuses == {200, 422}
    assert c.post("/v1/score", json=_declaration(world)).status_code == 401 and routed == ["/v1/score"]


def test_readyz_shows_its_details_only_with_the_key(api_scorer):  # noqa: F811
    """Without the key /readyz says only whether the service is ready: the model version, the thresholds' batch and
    the decision log are the service's internals. A keyless service (loopback unless --allow-open) shows them."""
    keyed = TestClient(create_app(api_scorer, api_key="s3cret", decision_log=False))
    for headers in ({}, {"X-API-Key": "wrong"}):
        answer = keyed.get("/readyz", headers=headers)
        assert answer.status_code == 200 and answer.json() == {"ready": True}
    detailed = keyed.get("/readyz", headers={"X-API-Key": "s3cret"}).json()
    assert detailed["ready"] and detailed["model_version"] == "3" and detailed["decision_log"] == "off"
    assert "thresholds_from" in detailed and detailed["layouts"] == ["canonical"]
    assert TestClient(create_app(api_scorer, api_key="", decision_log=False)).get("/readyz").json()["model_version"] == "3"


def test_readyz_when_not_ready_is_503_with_retry_after_and_no_details(home):
    from features.warehouse import Warehouse
    from flows.settings import Settings

    scorer = Scorer(Warehouse(Settings().warehouse_path), LanePolicy(), source=FixedSource({}, None))
    answer = TestClient(create_app(scorer, api_key="s3cret", decision_log=False)).get("/readyz")
    assert answer.status_code == 503 and answer.headers["retry-after"] and answer.json() == {"ready": False}


def test_readyz_tells_ready_and_version_but_no_error_text(api_scorer):  # noqa: F811
    c = TestClient(create_app(api_scorer, api_key="", decision_log=False))
    secret = "postgresql://admin:hunter2@10.0.0.5/mlflow refused"

    def broken():
        raise ConnectionError(secret)

    original = api_scorer.source.champion_version
    api_scorer.source.champion_version = broken
    try:
        api_scorer.refresh_model(force=True)
        body = c.get("/readyz")
        assert body.status_code == 200 and body.json()["ready"] and body.json()["model_version"] == "3"
        assert "hunter2" not in body.text and "ConnectionError" not in body.text
    finally:
        api_scorer.source.champion_version = original
        api_scorer.refresh_model(force=True)


def test_the_openapi_document_carries_the_package_version(client):
    """The version as pyproject.toml states it (the installed metadata would agree with a stale install too)."""
    declared = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]["version"]
    assert client.get("/openapi.json").json()["info"]["version"] == declared


def test_the_probes_answers_are_documented(client):
    """/docs shows what /healthz and /readyz answer, and /readyz's 503."""
    spec = client.get("/openapi.json").json()
    models = spec["components"]["schemas"]
    assert set(models["HealthOut"]["properties"]) == {"status"}
    assert {"ready", "model_version", "warehouse", "thresholds_from", "layouts", "decision_log"} <= \
        set(models["ReadyOut"]["properties"]) and models["ReadyOut"]["required"] == ["ready"]
    health, ready = spec["paths"]["/healthz"]["get"]["responses"], spec["paths"]["/readyz"]["get"]["responses"]
    schema = "content", "application/json", "schema", "$ref"

    def ref(answer: dict) -> str:
        for key in schema:
            answer = answer[key]
        return answer

    assert ref(health["200"]) == "#/components/schemas/HealthOut"
    assert ref(ready["200"]) == ref(ready["503"]) == "#/components/schemas/ReadyOut"
    assert client.get("/healthz").json() == {"status": "ok"} and client.get("/readyz").json()["ready"] is True
