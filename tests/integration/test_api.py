"""The scoring API: contract-level errors are 4xx with field-level messages, never 500; lanes agree with batch."""
from __future__ import annotations

import json
import threading
import time

import pytest
from fastapi.testclient import TestClient

from features.intake.prepared import prepare_batch
from features.warehouse import Warehouse
from flows.settings import Settings
from serving.api import create_app
from serving.lanes import LanePolicy
from serving.model_source import FixedSource
from serving.scorer import Scorer
from tests.conftest import write_csv

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api_scorer(trained, world, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api")
    warehouse = Warehouse(tmp / "warehouse.duckdb")
    for kind in ("traders", "manifests", "declarations"):
        warehouse.store(prepare_batch(write_csv(tmp / f"{kind}.csv", getattr(world, kind))))
    s = Scorer(warehouse, LanePolicy(), source=FixedSource({"3": trained.model}, "3"), reload_seconds=0)
    s.refresh_model(force=True)
    return s


def on_the_default_slot(scorer: Scorer) -> Scorer:
    """A scorer on `scorer`'s warehouse, policy and models that reloads on the default slot, as a service does:
    api_scorer reloads before every call, ~20-50 ms of warehouse checks a request, for the tests that change what
    it serves between calls."""
    slotted = Scorer(scorer.warehouse, scorer.policy, source=scorer.source)
    slotted.refresh_model(force=True)
    return slotted


@pytest.fixture(scope="module")
def client(api_scorer):
    with TestClient(create_app(api_scorer, max_items=5, max_body_bytes=20_000, api_key="")) as c:
        yield c  # the lifespan: the app's copier stops with the module


def _declaration(world, i: int = -1) -> dict:
    row = world.declarations.iloc[i]
    return {
        "declaration_id": row["declaration_id"], "declaration_date": str(row["declaration_date"].date()),
        "importer_id": row["importer_id"], "hs_code": row["hs_code"], "origin_country": row["origin_country"],
        "declared_value": float(row["declared_value"]), "declarant_id": row["declarant_id"],
        "exporter_id": row["exporter_id"], "office_id": row["office_id"], "transport_mode": row["transport_mode"],
        "departure_country": row["departure_country"], "net_mass_kg": float(row["net_mass_kg"]),
        "quantity": float(row["quantity"]), "tax_rate": float(row["tax_rate"]), "duty_paid": float(row["duty_paid"]),
        "bill_of_lading": row["bill_of_lading"],
    }


def test_health_readiness_and_docs(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["model_version"] == "3"
    assert "/v1/score" in client.get("/openapi.json").json()["paths"]


def test_the_docs_pages_load_nothing_from_the_network(client):
    """Customs networks are often offline: /docs and /redoc name only this server's own assets, and it serves them."""
    import re

    for page in ("/docs", "/redoc"):
        html = client.get(page)
        assert html.status_code == 200
        urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", html.text)
        assert urls and all(u.startswith(("/docs-assets/", "/openapi.json")) for u in urls), urls
        assert "cdn" not in html.text.lower() and "fonts.googleapis" not in html.text
        for url in (u for u in urls if u.startswith("/docs-assets/")):
            asset = client.get(url)
            assert asset.status_code == 200 and len(asset.content) > 1000, url


def test_the_answer_schema_lists_lanes_and_selectors_and_describes_its_fields(client):
    answer = client.get("/openapi.json").json()["components"]["schemas"]["ScoreOut"]["properties"]
    assert answer["lane"]["enum"] == ["red", "yellow", "green"]
    assert set(answer["selected_by"]["enum"]) == {"model", "exploration", "rule", "validation", ""}
    assert all(answer[f].get("description") for f in ("risk_score", "lane", "selected_by", "reasons"))
    assert answer["reason_list"]["type"] == "array"
    spec = client.get("/openapi.json").json()
    assert all(spec["paths"][p][m].get("summary") for p, m in (("/v1/score", "post"), ("/healthz", "get"),
                                                                ("/readyz", "get")))


def test_readyz_says_when_the_registry_is_unreachable(client, api_scorer, world):
    api_scorer.source.broken = True
    try:
        body = client.get("/readyz")
        assert body.status_code == 200 and body.json()["ready"]
        assert body.json()["registry"] == "unreachable"  # the details go to the server's log, not to the client
        assert "ConnectionError" not in body.text
        assert body.json()["model_version"] == "3"  # still serving the last good champion
        score = client.post("/v1/score", json=_declaration(world))
        assert score.status_code == 200 and score.json()["model_version"] == "3"
    finally:
        api_scorer.source.broken = False
        api_scorer.refresh_model(force=True)
    assert client.get("/readyz").json()["registry"] == "ok"


def test_not_ready_without_a_champion(home):
    empty = Scorer(Warehouse(Settings().warehouse_path), LanePolicy(), source=FixedSource({}, None))
    c = TestClient(create_app(empty, api_key=""))
    assert c.get("/readyz").status_code == 503
    assert c.get("/healthz").status_code == 200


def test_one_declaration_or_a_list(client, world):
    one = client.post("/v1/score", json=_declaration(world))
    assert one.status_code == 200
    body = one.json()
    assert set(body) == {"declaration_id", "risk_score", "expected_revenue", "lane", "selected_by", "reasons",
                         "reason_list", "model_version"}
    assert body["reason_list"] == [r for r in body["reasons"].split("; ") if r]
    assert 0 <= body["risk_score"] <= 1 and body["lane"] in ("red", "yellow", "green")
    many = client.post("/v1/score", json=[_declaration(world, -1), _declaration(world, -2)])
    assert many.status_code == 200 and len(many.json()) == 2


def test_the_api_agrees_with_the_batch_on_the_same_declarations(client, api_scorer, world):
    rows = world.declarations.iloc[-300:].reset_index(drop=True)
    batch = api_scorer.score(rows)
    from serving.scorer import Thresholds

    client.app.state.service.pin(Thresholds.from_decisions(batch.assign(batch_id="b"), "risk_score",
                                                           api_scorer.policy.seed))
    for i in list(batch.index[batch["lane"] != "green"][:6]) + list(batch.index[batch["lane"] == "green"][:3]):
        answer = client.post("/v1/score", json=_declaration(world, len(world.declarations) - 300 + i)).json()
        assert (answer["lane"], answer["selected_by"]) == (batch.loc[i, "lane"], batch.loc[i, "selected_by"])
        assert answer["risk_score"] == pytest.approx(batch.loc[i, "risk_score"])
        assert "; ".join(answer["reason_list"]) == answer["reasons"]
        assert answer["lane"] == "green" or answer["reason_list"]  # every selection comes with its reasons


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"hs_code": "12"}, "hs_code"),
        ({"origin_country": "japan"}, "origin_country"),
        ({"declared_value": -1}, "declared_value"),
        ({"declared_value": "lots"}, "declared_value"),
        ({"declaration_date": "2024-13-01"}, "declaration_date"),
        ({"declaration_date": "2999-01-01"}, "declaration_date"),
        ({"origin_country": "QQ"}, "origin_country"),
        ({"surprise": 1}, "surprise"),
        ({"importer_id": None}, "importer_id"),
        ({"declared_value": True}, "declared_value"),  # ingest reads the cell "true" as no number
        ({"net_mass_kg": False}, "net_mass_kg"),
        ({"declaration_date": True}, "declaration_date"),
        ({"importer_id": "IMP\x00"}, "importer_id"),
        ({"transport_mode": "sea\x07"}, "transport_mode"),
    ],
)
def test_invalid_input_is_422_with_the_field_named(client, world, change, field):
    payload = {**_declaration(world), **change}
    response = client.post("/v1/score", json=payload)
    assert response.status_code == 422
    assert any(field in map(str, e["loc"]) for e in response.json()["detail"]), response.json()


@pytest.mark.parametrize(("field", "value", "plain"), [
    ("declaration_date", "2024-06-01T10:00:00+02:00", "2024-06-01"),
    ("declaration_date", "2024-06-01T01:00:00+02:00", "2024-05-31"),  # converted to UTC, then the day
    ("declaration_date", "20240601", "2024-06-01"),
    ("hs_code", "8703.23", "870323"), ("hs_code", "87-03-23", "870323"),
    ("origin_country", "cn", "CN"), ("departure_country", " jp ", "JP"),
    ("declared_value", "1e5", 100000.0),
])
def test_values_ingest_reads_are_scored_as_ingest_reads_them(client, world, field, value, plain):
    """An offset datetime, a basic ISO date, an HS code with separators and a lower-case country are stored by ingest:
    the API scores them as the values ingest stores (they were 422)."""
    answers = [client.post("/v1/score", json={**_declaration(world), field: v}) for v in (value, plain)]
    assert [a.status_code for a in answers] == [200, 200], answers[0].text
    assert answers[0].json()["risk_score"] == answers[1].json()["risk_score"]


def test_text_no_field_may_hold_is_422_invalid_text_in_values_and_names(client, world):
    """NUL, control characters and unpaired surrogates (JSON's "\\udfff") are refused by name, as ingest quarantines
    them (invalid_text), before anything else reads the record; a name holding one is echoed escaped."""
    for record in ({**_declaration(world), "office_id": "CO\x00BOG"}, {**_declaration(world), "office_id": "\udfff"},
                   {**_declaration(world), "\udfff": 1}):
        content = json.dumps(record)  # ASCII, surrogates escaped: what a client sends
        answer = client.post("/v1/score", content=content, headers={"content-type": "application/json"})
        assert answer.status_code == 422, answer.text
        (error,) = answer.json()["detail"]
        assert error["type"] == "invalid_text" and error["loc"] in (["body", "office_id"], ["body", "\\udfff"])
    listed = client.post("/v1/score", content=json.dumps([_declaration(world), {**_declaration(world), "hs_code": "\ud800"}]),
                         headers={"content-type": "application/json"})
    assert listed.status_code == 422 and listed.json()["detail"][0]["loc"] == ["body", 1, "hs_code"]


@pytest.mark.parametrize("code", ["ZZ", "XX", "XZ"])
def test_the_unknown_country_codes_are_valid_origins(client, world, code):
    response = client.post("/v1/score", json={**_declaration(world), "origin_country": code, "departure_country": code})
    assert response.status_code == 200, response.text


def test_missing_fields_and_bad_json_are_422(client, world):
    payload = _declaration(world)
    del payload["hs_code"]
    assert client.post("/v1/score", json=payload).status_code == 422
    assert client.post("/v1/score", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
    assert client.post("/v1/score", json=[]).status_code == 422


def test_a_key_given_twice_in_one_declaration_is_422(client, world):
    """Parsers disagree on which of two values wins (a proxy may read the first, Python reads the last)."""
    body = json.dumps(_declaration(world))[:-1] + ', "declared_value": -1}'
    answer = client.post("/v1/score", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 422
    assert answer.json()["detail"] == [{"loc": ["body"], "msg": "the key 'declared_value' appears twice in one object",
                                        "type": "duplicate_key"}]


def test_oversized_bodies_and_lists_are_413(client, world):
    assert client.post("/v1/score", json=[_declaration(world, -i) for i in range(1, 7)]).status_code == 413
    huge = json.dumps({**_declaration(world), "declarant_id": "x" * 30_000})
    assert client.post("/v1/score", content=huge, headers={"content-type": "application/json"}).status_code == 413


def test_an_api_key_is_required_when_set(api_scorer, world):
    with TestClient(create_app(api_scorer, api_key="s3cret")) as c:
        assert c.post("/v1/score", json=_declaration(world)).status_code == 401
        assert c.post("/v1/score", json=_declaration(world), headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.post("/v1/score", json=_declaration(world), headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.get("/healthz").status_code == 200


def test_what_the_api_model_accepts_the_contract_accepts_unchanged(world):
    """The API skips the per-request pandera checks, so its model must never let through a row the contract would
    quarantine, nor type it differently from ingest."""
    import pandas as pd
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from pydantic import ValidationError

    from features.intake.mapping import ColumnMapping
    from features.intake.validation import check_rows
    from serving.api.schemas import Declaration
    from tests.unit.test_cell import canonical_frame

    base = _declaration(world)
    values = {
        "declaration_date": st.sampled_from(["1677-09-21", "1677-09-22", "1900-01-01", "1989-12-31", "2024-02-29",
                                             "2999-01-01", " 2024-05-01"]),
        "hs_code": st.sampled_from(["870323", " 870323 ", "8703231000", "8703.23", "87032", "1234567", "980000",
                                    "990110", "000000", "\u0668\u0667\u0660\u0663\u0662\u0663", "87\u0660323",
                                    "\uff18\uff17\uff10\uff13\uff12\uff13"]),
        "origin_country": st.sampled_from(["JP", "jp", "XX", " CN", "USA", ""]),
        "departure_country": st.sampled_from(["JP", "XX", "", "  ", None]),
        "declared_value": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-5, 10**9)),
        "tax_rate": st.one_of(st.none(), st.sampled_from([7.54, 1e6]), st.floats(-1, 6, allow_nan=False)),
        "net_mass_kg": st.one_of(st.none(), st.floats(-1, 1e9, allow_nan=False)),
        "importer_id": st.text(min_size=0, max_size=8),
        "declarant_id": st.one_of(st.none(), st.text(max_size=8)),
        "office_id": st.one_of(st.none(), st.sampled_from(["", " ", "CO-CTG", " CO-BUN "])),
    }
    declaration = st.fixed_dictionaries({}, optional=values).map(lambda m: {**base, **m})

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(declaration)
    def check(payload):
        try:
            item = Declaration.model_validate(payload)
        except ValidationError:
            return
        frame = canonical_frame([item])
        checked = check_rows(frame, "declarations", ColumnMapping())
        assert checked.rejected.empty, (payload, checked.failures)
        pd.testing.assert_frame_equal(checked.valid[frame.columns], frame, check_dtype=True)

    check()


def test_fuzzing_the_schema_finds_no_server_errors(client, world):
    """Hypothesis drives arbitrary JSON shaped like (and unlike) a declaration at the endpoint: never a 500."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    base = _declaration(world)
    scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=False),
                       st.text(max_size=30), st.sampled_from(["870323", "JP", "2024-02-30", "NA", "1e309", ""]))
    mutated = st.dictionaries(st.sampled_from(list(base) + ["extra"]), scalar, max_size=6).map(lambda m: {**base, **m})
    body = st.one_of(mutated, st.lists(mutated, max_size=3), scalar, st.dictionaries(st.text(max_size=5), scalar))

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body)
    def check(payload):
        content = json.dumps(payload, allow_nan=True)  # NaN and Infinity literals reach the server too
        response = client.post("/v1/score", content=content, headers={"content-type": "application/json"})
        assert response.status_code < 500, (payload, response.text)

    check()


def test_a_reason_holding_a_semicolon_comes_back_as_one_item_and_is_logged_as_one(api_scorer, world):
    """The reasons travel as a list from where they are made: an id with "; " in it stays one reason."""
    from serving.selection import Rules

    importer = "IMP; 42 & Co"
    listed = Scorer(api_scorer.warehouse, LanePolicy(rules=Rules(watchlist_importers=[importer])),
                    source=FixedSource({"3": api_scorer.model}, "3"), reload_seconds=0)
    listed.refresh_model(force=True)
    with TestClient(create_app(listed, api_key="")) as c:  # the lifespan: the log is written on shutdown
        answer = c.post("/v1/score", json={**_declaration(world), "declaration_id": "SEMI-1",
                                           "importer_id": importer}).json()
    assert (answer["lane"], answer["selected_by"]) == ("red", "rule")
    assert answer["reason_list"][0] == f"importer {importer} is on the watch list"
    assert answer["reasons"] == "; ".join(answer["reason_list"])
    logged, _ = api_scorer.warehouse.decisions.latest_for("SEMI-1")
    assert logged["reason_list"] == answer["reason_list"]
    assert logged["contributions"] and logged["contributions"][0].keys() == {"feature", "family", "value",
                                                                            "contribution"}


def test_a_refresher_reloads_each_slot_and_no_request_waits_on_it(api_scorer, world):
    scorer = Scorer(api_scorer.warehouse, api_scorer.policy, source=FixedSource(dict(api_scorer.source.models), "3"),
                    reload_seconds=0.4)
    scorer.refresh_model(force=True)
    checks = []  # the threads that checked the champion or the warehouse's snapshot version, in turn

    def on_thread(check):  # noqa: ANN001, ANN202
        def checked(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            checks.append(threading.current_thread().name)
            return check(*args, **kwargs)
        return checked

    scorer.source.champion_version = on_thread(scorer.source.champion_version)
    scorer._snapshot.version = on_thread(scorer._snapshot.version)
    with TestClient(create_app(scorer, api_key="", decision_log=False)) as c:
        started = len(checks)  # the service's first refresh, as it starts
        until = time.monotonic() + 1.5
        while time.monotonic() < until:
            assert c.post("/v1/score", json=_declaration(world)).status_code == 200
        assert set(checks[started:]) == {"aduana-refresher"} and len(checks) - started >= 4  # two slots at least
        scorer.source.models["4"] = scorer.model
        scorer.source.champion = "4"
        until = time.monotonic() + 5
        while scorer.version != "4" and time.monotonic() < until:  # no request: the refresher picks it up
            time.sleep(0.05)
        assert scorer.version == "4"
        assert c.post("/v1/score", json=_declaration(world)).json()["model_version"] == "4"
        refresher = c.app.state.service._refresher[0]
    assert not refresher.is_alive() and not scorer.refreshed_apart  # stopped with the app


def test_a_service_reloading_before_every_call_refreshes_in_the_call(client):
    assert client.app.state.service._refresher is None  # api_scorer's zero period: each call a slot of its own
