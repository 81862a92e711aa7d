"""The API in an export's own layout (serving/api/source.py, `aduana serve --mapping M.yaml`): the same mapping and
checks as ingest and batch scoring, so a declaration gets the same score and lane from `aduana score --mapping` and
from the API, and the mapping's extras reach the model.

A fuzzer in that layout (`aduana serve --mapping islas_mapping.yaml`): 1,000 requests of the islas export's
arriving declarations, mutated by a seeded generator, over ONE kept-alive connection to a real uvicorn server. None
may answer 5xx, none may cost the connection, and every 4xx names the field it refuses."""
from __future__ import annotations

import csv
import datetime as dt
import functools
import http.client
import json
import math
import random
import time

import numpy as np
import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient

from features.build import integrate
from features.errors import UserError
from features.intake.checked import read_checked
from features.intake.mapping import ColumnMapping, load_mapping
from features.intake.prepared import prepare_batch
from features.intake.reader import read_raw
from features.intake.records import non_scalar_values, records_frame
from features.simulator.islas import MAPPING_PATH, simulate_islas
from features.warehouse import Warehouse
from serving.api import create_app
from serving.api.body import invalid_text_errors
from serving.api.source import SourceLayout
from serving.batch import score_file
from serving.lanes import LanePolicy
from serving.model_source import FixedSource
from serving.scorer import Scorer, Thresholds
from tests.conftest import FAST, write_csv
from tests.integration.test_api import api_scorer, on_the_default_slot  # noqa: F401 - a module-scoped fixture
from tests.integration.test_api_guards import running
from training.pipeline import train_and_evaluate

pytestmark = pytest.mark.integration

ROWS = 8_000  # declarations in the export
SCORED = 300  # the export's last rows, scored both ways
MODES = {"sea": "10", "road": "30", "air": "40"}
RENAMED = {"declaration_id": "Decl No", "declaration_date": "Date", "importer_id": "Importer", "hs_code": "HS Code",
           "origin_country": "Origin", "declared_value": "Value", "tax_rate": "Tax %", "transport_mode": "Mode"}
MAPPING = {
    "columns": RENAMED,  # the other fields keep their canonical names in this export
    "labels": {"fraud": "Fraud", "inspected": "Inspected", "revenue": "Revenue"},
    "extra_categorical": ["Regime"],
    "date_format": "%d/%m/%Y",
    "units": {"tax_rate": "percent"},
    "values": {"transport_mode": {code: mode for mode, code in MODES.items()}},
}


def _export(declarations: pd.DataFrame) -> pd.DataFrame:
    """Canonical declarations in the foreign layout: renamed columns, tax in percent, coded modes, and a customs
    regime that tells frauds apart (so a model trained with it uses it)."""
    rng = np.random.default_rng(0)
    fraud = declarations["fraud"].fillna(0).astype(int).to_numpy() == 1
    regime = np.where(fraud, rng.choice(["R9", "R1"], len(fraud), p=[0.8, 0.2]),
                      rng.choice(["R1", "R2", "R9"], len(fraud), p=[0.5, 0.45, 0.05]))
    out = declarations.drop(columns=["critical", "control_date"]).assign(
        tax_rate=declarations["tax_rate"] * 100, transport_mode=declarations["transport_mode"].map(MODES),
        Regime=regime)
    return out.rename(columns={**RENAMED, "fraud": "Fraud", "inspected": "Inspected", "revenue": "Revenue"})


@pytest.fixture(scope="module")
def setup(world, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api-mapping")
    mapping_path = tmp / "mapping.yaml"
    mapping_path.write_text(yaml.safe_dump(MAPPING, sort_keys=False))
    mapping = load_mapping(mapping_path)
    export = _export(world.declarations.head(ROWS))
    path = tmp / "export.csv"
    export.to_csv(path, index=False, date_format="%d/%m/%Y")
    warehouse = Warehouse(tmp / "warehouse.duckdb")
    for kind in ("traders", "manifests"):
        warehouse.store(prepare_batch(write_csv(tmp / f"{kind}.csv", getattr(world, kind))))
    batch = prepare_batch(path, "declarations", mapping)
    assert batch.rejected.empty, batch.rejected.head()
    warehouse.store(batch)
    stored = warehouse.table("declarations")
    assert "xcat_regime" in stored
    trained = train_and_evaluate(integrate(stored, warehouse.table("manifests"), warehouse.table("traders")), FAST)
    assert "xcat_regime" in trained.model.columns
    scorer = Scorer(warehouse, LanePolicy(red_share=0.05, exploration_share=0.2, yellow_share=0.1),
                    source=FixedSource({"1": trained.model}, "1"), reload_seconds=0)
    scorer.refresh_model(force=True)
    scoring = tmp / "to-score.csv"
    export.tail(SCORED).to_csv(scoring, index=False, date_format="%d/%m/%Y")  # already ingested: complete B/Ls
    batch_out = score_file(scoring, scorer, mapping).output
    assert batch_out["risk_score"].notna().all()
    with scoring.open(newline="") as fh:
        rows = list(csv.DictReader(fh))  # the file's own rows: every value as the text the file holds
    with TestClient(create_app(scorer, max_items=50, api_key="", mapping=mapping)) as client:  # its copier stops
        client.app.state.service.pin(Thresholds.from_decisions(batch_out.assign(batch_id="b"), "risk_score",
                                                               scorer.policy.seed))
        yield {"client": client, "batch": batch_out, "rows": rows, "mapping": mapping, "scorer": scorer,
               "scoring": scoring, "export": export}


def _picks(batch: pd.DataFrame) -> list[int]:
    return (list(batch.index[batch["selected_by"] == "exploration"][:2])
            + list(batch.index[(batch["lane"] == "red") & (batch["selected_by"] == "model")][:4])
            + list(batch.index[batch["lane"] == "yellow"][:4]) + list(batch.index[batch["lane"] == "green"][:4]))


def test_records_become_the_frame_a_csv_of_them_gives(setup):
    raw = read_raw(setup["scoring"]).frame
    frame = records_frame(setup["rows"], setup["mapping"])
    pd.testing.assert_frame_equal(frame[raw.columns], raw)


def test_the_api_in_the_source_layout_agrees_with_batch_scoring(setup):
    client, batch, rows = setup["client"], setup["batch"], setup["rows"]
    picks = _picks(batch)
    assert set(batch.loc[picks, "lane"]) == {"red", "yellow", "green"}
    for i in picks:
        response = client.post("/v1/score", json=rows[i])
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["declaration_id"] == batch.loc[i, "declaration_id"]
        assert (answer["lane"], answer["selected_by"]) == (batch.loc[i, "lane"], batch.loc[i, "selected_by"])
        assert answer["risk_score"] == pytest.approx(batch.loc[i, "risk_score"], rel=1e-9, abs=1e-12)
        assert answer["reasons"] == batch.loc[i, "reasons"] or batch.loc[i, "selected_by"] == "exploration"
    many = client.post("/v1/score", json=[rows[i] for i in picks])
    assert many.status_code == 200
    got = pd.DataFrame(many.json())
    expected = batch.loc[picks].reset_index(drop=True)
    assert got["lane"].tolist() == expected["lane"].tolist()
    np.testing.assert_allclose(got["risk_score"], expected["risk_score"], rtol=1e-9)


def test_a_record_without_the_label_columns_scores_as_the_labelled_one(setup):
    # Given the export's mapping names label columns, and an arriving declaration has none of them yet
    client, batch, rows = setup["client"], setup["batch"], setup["rows"]
    for i in _picks(batch)[:4]:
        arriving = {k: v for k, v in rows[i].items() if k not in MAPPING["labels"].values()}
        assert len(arriving) == len(rows[i]) - len(MAPPING["labels"])
        # Then it is read in the source layout and gets the batch's score and lane: labels never change a score
        answer = client.post("/v1/score", json=arriving)
        assert answer.status_code == 200, answer.text
        assert answer.json()["risk_score"] == pytest.approx(batch.loc[i, "risk_score"], rel=1e-9, abs=1e-12)
        assert answer.json()["lane"] == batch.loc[i, "lane"]


def test_values_may_be_numbers_as_well_as_text(setup):
    client, batch, rows = setup["client"], setup["batch"], setup["rows"]
    for i in _picks(batch)[:5]:
        record = dict(rows[i])
        for column in ("Value", "Tax %", "net_mass_kg", "quantity", "duty_paid", "Mode"):
            if record[column] != "":
                record[column] = float(record[column]) if column != "Mode" else int(record[column])
        answer = client.post("/v1/score", json=record).json()
        assert answer["risk_score"] == pytest.approx(batch.loc[i, "risk_score"], rel=1e-9, abs=1e-12)
        assert answer["lane"] == batch.loc[i, "lane"]


def test_the_extras_reach_the_model(setup):
    client, rows = setup["client"], setup["rows"]
    record = rows[0]
    scores = {}
    for regime in ("R1", "R2", "R9"):
        response = client.post("/v1/score", json={**record, "Regime": regime})
        assert response.status_code == 200
        scores[regime] = response.json()["risk_score"]
    assert scores["R9"] > scores["R2"] and len(set(scores.values())) == 3
    model = setup["scorer"].model
    importance = dict(zip(model.columns, model.classifier.get_feature_importance(), strict=True))
    assert importance["xcat_regime"] > 0


def test_canonical_requests_keep_working_beside_the_source_layout(setup, world):
    client, rows = setup["client"], setup["rows"]
    row = world.declarations.iloc[ROWS - 1]
    canonical = {"declaration_id": row["declaration_id"], "declaration_date": str(row["declaration_date"].date()),
                 "importer_id": row["importer_id"], "hs_code": row["hs_code"], "origin_country": row["origin_country"],
                 "declared_value": float(row["declared_value"]), "tax_rate": float(row["tax_rate"])}
    response = client.post("/v1/score", json=canonical)
    assert response.status_code == 200, response.text  # a model trained with extras: they are missing here
    assert client.post("/v1/score", json={**canonical, "surprise": 1}).status_code == 422
    # `layout` overrides the detection: a source record read as canonical fields is refused by name.
    forced = client.post("/v1/score", params={"layout": "canonical"}, json=rows[0])
    assert forced.status_code == 422 and any("Decl No" in map(str, e["loc"]) for e in forced.json()["detail"])
    assert client.post("/v1/score", params={"layout": "source"}, json=rows[0]).status_code == 200


@pytest.mark.parametrize(
    ("change", "column", "field"),
    [
        ({"Tax %": "lots"}, "Tax %", "tax_rate"),
        ({"Tax %": "-5"}, "Tax %", "tax_rate"),  # a negative rate: impossible (a 754 % one is scored, below)
        ({"Origin": "Japan"}, "Origin", "origin_country"),
        ({"Date": "2024-05-01"}, "Date", "declaration_date"),  # not the mapping's date format
        ({"Value": "-3"}, "Value", "declared_value"),
        ({"Importer": ""}, "Importer", "importer_id"),
    ],
)
def test_a_bad_record_is_422_with_its_column_named(setup, change, column, field):
    response = setup["client"].post("/v1/score", json={**setup["rows"][0], **change})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(column in map(str, e["loc"]) and field in e["msg"] for e in detail), detail


def test_a_754_percent_duty_in_the_source_layout_is_scored_as_ingest_stores_it(setup):
    response = setup["client"].post("/v1/score", json={**setup["rows"][0], "Tax %": "754"})
    assert response.status_code == 200, response.text


def test_bad_records_in_a_list_say_which_one(setup):
    rows = setup["rows"]
    response = setup["client"].post("/v1/score", json=[rows[0], {**rows[1], "Value": "x"}])
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["body", 1, "Value"]]
    missing = {k: v for k, v in rows[0].items() if k != "Importer"}
    response = setup["client"].post("/v1/score", json=missing)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "Importer"]
    nested = setup["client"].post("/v1/score", json={**rows[0], "Value": {"amount": 3}})
    assert nested.status_code == 422 and nested.json()["detail"][0]["loc"] == ["body", "Value"]


def test_the_openapi_document_says_which_layout_the_service_expects(setup):
    spec = setup["client"].get("/openapi.json").json()
    assert "source layout" in spec["info"]["description"] and "'Decl No' → declaration_id" in spec["info"]["description"]
    body = spec["paths"]["/v1/score"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    titles = [s.get("title") for s in body["anyOf"]]
    assert "Declaration" in titles and "SourceDeclaration" in titles
    source = next(s for s in body["anyOf"] if s.get("title") == "SourceDeclaration")
    assert {"Decl No", "Tax %", "Regime"} <= set(source["properties"]) and "Decl No" in source["required"]
    assert {p["name"] for p in spec["paths"]["/v1/score"]["post"].get("parameters", [])} == {"layout"}


def test_without_a_mapping_the_source_layout_is_refused(setup):
    with TestClient(create_app(setup["scorer"], api_key="")) as plain:
        response = plain.post("/v1/score", json=setup["rows"][0])
    assert response.status_code == 422 and any("Decl No" in map(str, e["loc"]) for e in response.json()["detail"])


def test_fuzzing_the_source_layout_finds_no_server_errors(setup):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    client, base = setup["client"], setup["rows"][0]
    scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=False),
                       st.text(max_size=12), st.sampled_from(["870323", "ZZ", "31/02/2024", "NA", "1e309", "", "10"]))
    mutated = st.dictionaries(st.sampled_from(list(base) + ["extra"]), scalar, max_size=5).map(lambda m: {**base, **m})

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(mutated, st.lists(mutated, max_size=3)))
    def check(payload):
        content = json.dumps(payload, allow_nan=True)
        response = client.post("/v1/score", content=content, headers={"content-type": "application/json"})
        assert response.status_code < 500, (payload, response.text)

    check()


def test_a_mapping_that_keeps_canonical_names_reads_every_request_in_its_units(setup, world):
    """With no renamed column, the layout cannot be told from the names: the mapping's layout is assumed."""
    mapping = ColumnMapping(units={"tax_rate": "percent"}, date_format="%d/%m/%Y")
    row = world.declarations.iloc[ROWS - 1]
    # The mapping's day-first dates read in its layout, and fail as contract (ISO) dates.
    record = {"declaration_id": row["declaration_id"], "declaration_date": row["declaration_date"].strftime("%d/%m/%Y"),
              "importer_id": row["importer_id"], "hs_code": row["hs_code"], "origin_country": row["origin_country"],
              "declared_value": float(row["declared_value"]), "tax_rate": 250.0}  # 250 %
    with TestClient(create_app(setup["scorer"], api_key="", mapping=mapping)) as client:
        assert client.post("/v1/score", json=record).status_code == 200
        assert client.post("/v1/score", params={"layout": "canonical"}, json=record).status_code == 422


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
    return create_app(on_the_default_slot(api_scorer), api_key="", mapping=load_mapping(MAPPING_PATH),
                      decision_log=False)


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


def _plain(value: object) -> object:
    """A typed value as both readings can be compared: missing as None, a day as a date."""
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.date() if isinstance(value, pd.Timestamp) else value


def _both_ways(layout: SourceLayout, payloads: list) -> tuple[list, list, int]:
    """Each payload the API would read (no text that no field may hold, no nested value) read in plain Python
    and as a frame: (the records `fast` read, the frame's typed rows for them, the payloads left to the frame)."""
    fast, framed, left = [], [], 0
    for payload in payloads:
        records = payload if isinstance(payload, list) else [payload]
        if invalid_text_errors(records, True) or non_scalar_values(records):
            continue
        rows = layout.fast(records)
        if rows is None:
            left += 1
            continue
        try:
            taken = read_checked(records_frame(records, layout.mapping), "declarations", layout.mapping)
        except UserError as exc:
            raise AssertionError(f"read in plain Python, refused as a frame: {records}") from exc
        assert taken.rejected.empty, (records, taken.rejected.to_dict("records"))
        fast += rows
        framed += taken.valid.to_dict("records")
    return fast, framed, left


@pytest.mark.parametrize("export", ["islas", "islas, scaled and with a numeric extra", "this module's export"])
def test_what_the_plain_python_reading_accepts_the_frame_accepts_and_types_alike(export, setup):
    """The source layout's fast reading (serving/api/source.py `fast`) on the fuzzer's records: where it reads a
    request, the frame's way (`read_checked`, ingest's checks) accepts every record and types every field alike;
    it leaves the rest to the frame. The islas mapping recodes, converts a percent and pads HS codes; its variant
    also scales a value and reads an extra as a number; this module's reads dates in its own format."""
    if export.startswith("islas"):
        mapping = load_mapping(MAPPING_PATH)
        if export != "islas":
            mapping = mapping.model_copy(update={
                "units": {**mapping.units, "declared_value": {"scale": 1000}},
                "extra_categorical": [c for c in mapping.extra_categorical if c != "Import Type"],
                "extra_numeric": ["Import Type"]})
            mapping = ColumnMapping.model_validate(mapping.model_dump())
        layout, records = SourceLayout(mapping), _arrivals()
    else:
        labels = set(setup["mapping"].labels.values())
        layout, records = SourceLayout(setup["mapping"]), [{k: v for k, v in r.items() if k not in labels}
                                                           for r in setup["rows"]]
    payloads = _payloads(records)[:400]
    fast, framed, left = _both_ways(layout, payloads)
    for one, other in zip(fast, framed, strict=True):
        assert {k: _plain(one.get(k)) for k in one | other} == {k: _plain(other.get(k)) for k in one | other}
    assert all(isinstance(r["declaration_date"], dt.date) for r in fast)
    untouched = sum(isinstance(p, dict) and p in records for p in payloads)
    assert len(fast) > untouched > 0 and left > 0  # mutated ones read both ways too, and refused ones left over
    print(f"{export}: {len(fast)} records read in plain Python, {left} payloads left to the frame")


def test_a_request_read_in_plain_python_is_answered_as_the_frames_reading_is(setup):
    """The same records scored from their plain-Python reading and from the frame's: the same answers."""
    labels = set(setup["mapping"].labels.values())
    records = [{k: v for k, v in r.items() if k not in labels} for r in setup["rows"]][:120]
    layout, scorer = SourceLayout(setup["mapping"]), setup["scorer"]
    rows = layout.fast(records)
    assert rows is not None
    frame = read_checked(records_frame(records, layout.mapping), "declarations", layout.mapping).valid
    thresholds = setup["client"].app.state.service.thresholds
    assert scorer.score_realtime(rows, thresholds) == scorer.score_realtime(frame, thresholds)
