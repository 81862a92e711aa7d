"""The analysts' page (/ui) on a real warehouse: a scored batch (its red declarations as links, a batch partly outside
the warehouse), an audit list and ratings as the flows store them; the lookup with the declaration as stored, its
control outcome and the champion's real contributions; a busy warehouse; empty states. The key: test_ui_routes.py.

In a real browser too: the analysts' page and the API docs, headless Chromium against a real uvicorn server on
loopback, with every other network cut off (tests/browser.py), so nothing may come from a CDN."""
from __future__ import annotations

import math
import re
import shutil
import time
from datetime import datetime
from html import escape

import duckdb
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from features.contract import LABEL_FIELDS
from features.intake.prepared import prepare_batch
from features.labels import labelled
from features.warehouse import Warehouse
from serving import ui
from serving.api import create_app
from serving.entity_ratings import entity_ratings
from serving.lanes import LanePolicy
from serving.model_source import FixedSource
from serving.post_clearance import audit_candidates
from serving.scorer import Scorer
from serving.ui.overview import MAX_LIST_ROWS
from serving.ui.page_data import NOT_STORED
from tests.browser import chromium, distinct_colours, dump_dom, image_size, screenshot
from tests.conftest import write_csv
from tests.integration.test_api_app import write_locked
from tests.integration.test_api_guards import running
from training.explainer import explainer

pytestmark = pytest.mark.integration

BATCH_ROWS = 1_500
AUDIT_CAPACITY = 6
RATED_TOP = 8


def store_scored_world(world, trained, tmp) -> tuple[Scorer, pd.DataFrame]:
    """A warehouse holding the world, its newest declarations scored as a batch, an audit list and importer and lane
    ratings, stored as the score and audit flows store them. Returns the scorer and the batch's decisions."""
    warehouse = Warehouse(tmp / "warehouse.duckdb")
    for kind in ("traders", "manifests", "declarations"):
        warehouse.store(prepare_batch(write_csv(tmp / f"{kind}.csv", getattr(world, kind))))
    scorer = Scorer(warehouse, LanePolicy(), source=FixedSource({"3": trained.model}, "3"), reload_seconds=0)
    scorer.refresh_model(force=True)
    arrivals = world.declarations.tail(BATCH_ROWS).drop(columns=[*LABEL_FIELDS, "control_date"]).reset_index(drop=True)
    decisions = scorer.score(arrivals)
    warehouse.decisions.append_batch(decisions.assign(position=range(len(decisions)), policy_hash=scorer.policy.digest()),
                                     pd.DataFrame(), "score-ui-test", "arrivals.csv", datetime(2025, 1, 2, 9, 30))
    dates = arrivals["declaration_date"]
    released = warehouse.decisions.released(dates.min(), dates.max())
    selected, _ = audit_candidates(released, warehouse.table("traders"), warehouse.entity_counts(["importer_id"]),
                                   AUDIT_CAPACITY)
    warehouse.audits.record(selected, f"{dates.min().date()}:{dates.max().date()}", AUDIT_CAPACITY)
    history = warehouse.table("declarations")
    for entity, columns in (("importer", ["importer_id"]), ("lane", ["origin_country", "office_id"])):
        rated = entity_ratings(history, columns, 5).head(RATED_TOP).reset_index()
        warehouse.ratings.record(rated, entity, columns, 5, None)
    return scorer, decisions.assign(office_id=arrivals["office_id"], declaration_date=arrivals["declaration_date"])


@pytest.fixture(scope="module")
def scored(world, trained, tmp_path_factory) -> tuple[Scorer, pd.DataFrame]:
    return store_scored_world(world, trained, tmp_path_factory.mktemp("ui"))


@pytest.fixture(scope="module")
def client(scored) -> TestClient:
    return TestClient(create_app(scored[0], api_key="", decision_log=False), raise_server_exceptions=False)


def test_the_page_shows_the_batchs_lanes_by_office_and_day_its_histogram_the_audit_list_and_ratings(client, scored):
    scorer, batch = scored
    started = time.perf_counter()
    page = client.get("/ui")
    elapsed = time.perf_counter() - started
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src" not in page.headers["content-security-policy"]  # no script may run at all
    assert "default-src 'none'" in page.headers["content-security-policy"]
    html = page.text
    assert "score-ui-test" in html and "<script" not in html
    for office, lanes in batch.groupby("office_id")["lane"].value_counts().unstack(fill_value=0).iterrows():
        counts = [f"{int(lanes.get(lane, 0)):,}" for lane in ("red", "yellow", "green")]
        assert re.search(r"<tr><td>" + re.escape(office) + r"</td>" + "".join(f"<td class=n>{c}</td>" for c in counts),
                         html), office
    days = batch["declaration_date"].dt.strftime("%Y-%m-%d").unique()
    assert all(f"<td>{d}</td>" in html for d in days)
    assert 'id="lanes-by-office"' in html and 'id="lanes-by-day"' in html
    histogram = re.search(r'<svg id="score-histogram".*?</svg>', html, re.S).group(0)
    bars = re.findall(r'<rect class="bar-(red|yellow|green)"', histogram)
    assert len(bars) >= 5 and {"red", "green"} <= set(bars)
    model_red = batch[(batch["lane"] == "red") & (batch["selected_by"] == "model")]["risk_score"].min()
    assert f"red from {model_red:.3f}" in histogram and histogram.count('class="cut-off"') == 2
    audit = scorer.warehouse.audits.latest()
    assert len(audit) == AUDIT_CAPACITY and all(f"<td>{escape(i)}</td>" in html for i in audit["importer_id"])
    ratings = scorer.warehouse.ratings.latest()
    assert set(ratings["entity"]) == {"importer", "lane"} and len(ratings) == 2 * RATED_TOP
    assert all(f"<td>{escape(k)}</td>" in html for k in ratings["entity_key"])
    assert all(list_id in html for list_id in ratings["list_id"].unique())
    print(f"\n/ui answered in {elapsed * 1000:.0f} ms ({len(batch):,} scored declarations, {len(html):,} bytes)")


def test_the_lookup_shows_the_latest_decision_its_reasons_and_the_champions_real_contributions(client, scored):
    scorer, batch = scored
    red = batch[(batch["lane"] == "red") & (batch["selected_by"] == "model")].iloc[0]
    page = client.get("/ui/declaration", params={"id": f"  {red['declaration_id']} "})  # pasted with spaces
    assert page.status_code == 200, page.text
    html = page.text
    assert '<span class="lane lane-red">red</span>' in html and f"{red['risk_score']:.4f}" in html
    assert "score-ui-test" in html and ">model<" in html
    reasons = [r for r in red["reasons"].split("; ") if r]
    assert reasons and all(f"<li>{escape(r)}</li>" in html for r in reasons)

    # The contributions are the champion's SHAP values on the declaration as the warehouse stores it: they add up
    # to the decision's score, and the batch feature path gives the same values.
    stored = scorer.warehouse.declaration(red["declaration_id"])
    found = ui.contributions(scorer, ui.scorer_input(stored))
    total = found.base + found.features["contribution"].sum()
    assert 1 / (1 + math.exp(-total)) == pytest.approx(red["risk_score"], abs=1e-6)
    assert found.risk_score == pytest.approx(red["risk_score"], abs=1e-9)
    _, X, _ = scorer._scores(pd.DataFrame([ui.scorer_input(stored)]))
    model = scorer.model
    batch_shap = explainer(model.classifier).get_feature_importance(model.pool(X), type="ShapValues")[0, :-1]
    by_feature = found.features.set_index("feature")["contribution"]
    np.testing.assert_allclose(by_feature.reindex(model.columns).to_numpy(), batch_shap, atol=1e-9)
    section = re.search(r'<section id="contributions">.*?</section>', html, re.S).group(0)
    assert 'id="contributions-chart"' in section
    # The page shows those the batch gave when it decided (stored with the decision; its reasons come from them).
    for c in red["contributions"][:5]:
        assert f"<td>{escape(c['feature'])}</td>" in section and f"{c['contribution']:+.4f}" in section


def test_a_green_release_is_found_too(client, scored):
    _, batch = scored
    green = batch[batch["lane"] == "green"].iloc[0]
    page = client.get("/ui/declaration", params={"id": green["declaration_id"]})
    assert page.status_code == 200 and '<span class="lane lane-green">green</span>' in page.text
    assert 'id="contributions-chart"' in page.text


@pytest.mark.parametrize(("query", "status", "says"), [
    ({"id": "NO-SUCH-DECLARATION"}, 404, "Declaration not found"),
    ({"id": "   "}, 422, "give a declaration id"),
    ({}, 422, "give a declaration id"),
    ({"id": "D" * 101}, 422, "at most 100 characters"),
    ({"id": "<script>alert(1)</script>"}, 404, "&lt;script&gt;alert(1)&lt;/script&gt;"),
])
def test_bad_lookups_are_clear_4xx_pages(client, query, status, says):
    page = client.get("/ui/declaration", params=query)
    assert page.status_code == status and page.headers["content-type"].startswith("text/html")
    assert says in page.text and "<script>" not in page.text


def test_the_page_lists_the_batchs_red_declarations_as_links_highest_risk_first(client, scored):
    _, batch = scored
    html = client.get("/ui").text
    listed = re.search(r'<div id="red-declarations">.*?</div>', html, re.S).group(0)
    red = batch.loc[batch["lane"] == "red"].sort_values("risk_score", ascending=False, kind="stable")
    shown = re.findall(r'<a href="/ui/declaration\?id=([^"]+)">', listed)
    assert shown == list(red["declaration_id"].head(MAX_LIST_ROWS))  # the simulator's ids need no encoding
    if len(red) > MAX_LIST_ROWS:
        assert f"…and {len(red) - MAX_LIST_ROWS:,} more red declarations" in listed


def test_the_lookup_shows_the_declaration_as_stored_and_its_control_outcome(client, scored):
    scorer, batch = scored
    stored = scorer.warehouse.table("declarations")
    stored = stored[stored["declaration_id"].isin(batch["declaration_id"])]
    controlled = stored[labelled(stored)].iloc[0]
    never = stored[~labelled(stored) & (stored["inspected"].fillna(0) != 1)].iloc[0]  # not inspected
    for row, is_labelled in ((controlled, True), (never, False)):
        html = client.get("/ui/declaration", params={"id": row["declaration_id"]}).text
        fields = re.search(r'<table id="declaration-fields">(.*?)</table>', html, re.S).group(1)
        for name in ("declaration_id", "importer_id", "hs_code", "origin_country", "office_id"):
            assert f"<tr><th>{name}</th><td>{escape(str(row[name]))}</td></tr>" in fields
        assert "row_hash" not in fields and "ingested_at" not in fields and "<th>fraud</th>" not in fields
        if is_labelled:
            outcome = re.search(r'<table id="outcome">(.*?)</table>', html, re.S).group(1)
            assert f"<tr><th>fraud</th><td>{int(row['fraud'])}</td></tr>" in outcome
            assert "<th>control_date</th>" in outcome and "Not controlled" not in html
        else:
            assert "Not controlled (no outcome recorded)." in html and '<table id="outcome">' not in html


def test_a_batch_partly_outside_the_warehouse_is_drawn_over_the_stored_declarations_only(scored, tmp_path):
    scorer, batch = scored
    copy = _copy_of(scorer, tmp_path)
    scored_file = batch.head(5).drop(columns=["office_id", "declaration_date"]).assign(
        declaration_id=[*batch["declaration_id"].head(3), "NEW-1", "NEW-2"], position=range(5),
        policy_hash=scorer.policy.digest())
    copy.warehouse.decisions.append_batch(scored_file, pd.DataFrame(), "score-not-ingested", "new.csv",
                                          datetime(2025, 1, 3))
    html = TestClient(create_app(copy, api_key="", decision_log=False)).get("/ui").text
    assert "score-not-ingested" in html and "2 of the batch's 5 declarations are not in the warehouse" in html
    offices = re.search(r'<svg id="lanes-by-office".*?</svg>', html, re.S).group(0)
    assert NOT_STORED not in offices and NOT_STORED not in re.search(r'<svg id="lanes-by-day".*?</svg>', html,
                                                                     re.S).group(0)
    assert offices.count("<title>") >= 1 and all(o in offices for o in batch["office_id"].head(3))


def test_while_another_process_writes_the_warehouse_the_page_serves_its_last_read(scored):
    scorer, batch = scored
    c = TestClient(create_app(scorer, api_key="", decision_log=False), raise_server_exceptions=False)
    assert c.get("/ui").status_code == 200  # a first read
    with write_locked(scorer.warehouse.path):
        started = time.perf_counter()
        page = c.get("/ui")
        assert time.perf_counter() - started < 5  # bounded by the snapshot wait, not by the writer
        assert page.status_code == 200 and "score-ui-test" in page.text and "The warehouse is busy" in page.text
        lookup = c.get("/ui/declaration", params={"id": batch["declaration_id"].iloc[0]})
        assert lookup.status_code == 503 and lookup.headers["retry-after"]
    assert "The warehouse is busy" not in c.get("/ui").text


def test_an_empty_warehouse_says_what_to_run(tmp_path):
    empty = Scorer(Warehouse(tmp_path / "empty.duckdb"), LanePolicy(), source=FixedSource({}, None))
    page = TestClient(create_app(empty, api_key="", decision_log=False)).get("/ui")
    assert page.status_code == 200
    for hint in ("No scoring batch yet", "aduana score", "No audit list yet: run <code>aduana audit</code>",
                 "No ratings yet", "aduana ratings"):
        assert hint in page.text


def _copy_of(scorer: Scorer, tmp_path) -> Scorer:
    """The scored warehouse copied (so a test may add to it or age it), with the same champion."""
    for suffix in ("", ".wal"):
        source = scorer.warehouse.path.with_name(scorer.warehouse.path.name + suffix)
        if source.exists():
            shutil.copy(source, tmp_path / ("warehouse.duckdb" + suffix))
    copy = Scorer(Warehouse(tmp_path / "warehouse.duckdb"), LanePolicy(),
                  source=FixedSource({"3": scorer.model}, "3"), reload_seconds=0)
    copy.refresh_model(force=True)
    return copy


def _contributions_section(html: str) -> str:
    return re.search(r'<section id="contributions">.*?</section>', html, re.S).group(0)


def test_the_lookup_shows_the_contributions_stored_with_the_decision_not_recomputed_ones(scored, tmp_path):
    scorer, batch = scored
    red = batch[(batch["lane"] == "red") & (batch["selected_by"] == "model")].iloc[0]
    client = TestClient(create_app(scorer, api_key="", decision_log=False))
    section = _contributions_section(client.get("/ui/declaration", params={"id": red["declaration_id"]}).text)
    assert 'data-source="stored"' in section and "Recomputed now" not in section
    for c in red["contributions"][:5]:
        assert f"<td>{escape(c['feature'])}</td>" in section and f"{c['contribution']:+.4f}" in section

    # A later decision by another model, with contributions no model of today would give: the page shows those.
    copy = _copy_of(scorer, tmp_path)
    decided = {"declaration_id": red["declaration_id"], "risk_score": 0.3, "expected_revenue": None, "lane": "red",
               "selected_by": "rule", "reasons": "importer A; B is on the watch list; entry through office X",
               "model_version": "2", "reason_list": [["importer A; B is on the watch list", "entry through office X"]],
               "contributions": [[{"feature": "made_up_signal", "family": "office", "value": "7",
                                   "contribution": 1.2345},
                                  {"feature": "importer_hit_rate", "family": "entity:importer", "value": None,
                                   "contribution": -0.5}]],
               "contribution_base": -2.0, "position": 0, "policy_hash": "p"}
    copy.warehouse.decisions.append_batch(pd.DataFrame(decided), pd.DataFrame(), "score-later", "later.csv",
                                          datetime(2025, 1, 3))
    page = TestClient(create_app(copy, api_key="", decision_log=False)).get(
        "/ui/declaration", params={"id": red["declaration_id"]}).text
    assert "<li>importer A; B is on the watch list</li><li>entry through office X</li>" in page  # one item each
    section = _contributions_section(page)
    assert 'data-source="stored"' in section and "customs-risk v2 gave when it decided" in section
    assert "<td>made_up_signal</td>" in section and "+1.2345" in section and "(missing)" in section
    other = math.log(0.3 / 0.7) - (-2.0) - (1.2345 - 0.5)
    assert f"The other features add {other:+.4f}" in section


def test_a_decision_without_stored_contributions_says_they_are_recomputed(client, scored):
    _, batch = scored
    green = batch[batch["lane"] == "green"].iloc[0]
    assert pd.isna(green["contributions"])  # a green release is not explained when decided
    section = _contributions_section(client.get("/ui/declaration", params={"id": green["declaration_id"]}).text)
    assert 'data-source="recomputed"' in section and "Recomputed now" in section
    assert "a green release is not explained" in section and 'id="contributions-chart"' in section
    # The family table covers every family, the ones that lower the risk included (a green release's strongest).
    scorer = scored[0]
    recomputed = ui.contributions(scorer, ui.scorer_input(scorer.warehouse.declaration(green["declaration_id"])))
    families = set(recomputed.features["family"])
    listed = re.findall(r"<tr><td>([^<]+)</td><td class=n>", section.split("By family", 1)[1])
    assert len(families) > ui.TOP_CONTRIBUTIONS and sorted(listed) == sorted(families)


def test_a_decision_log_from_the_previous_version_still_loads_and_migrates_on_the_next_write(scored, tmp_path):
    scorer, batch = scored
    old = _copy_of(scorer, tmp_path)
    with duckdb.connect(str(old.warehouse.path)) as con:  # the decisions table as the previous version made it
        for column in ("reason_list", "contributions", "contribution_base"):
            con.execute(f"ALTER TABLE decisions DROP COLUMN {column}")
    red = batch[(batch["lane"] == "red") & (batch["selected_by"] == "model")].iloc[0]

    # Read as it is (read-only connections change nothing): no stored list, no stored contributions.
    decision, _ = old.warehouse.decisions.latest_for(red["declaration_id"])
    assert decision["reason_list"] is None and decision["contributions"] is None
    assert len(old.warehouse.decisions.latest_batch("3")) == len(batch)
    assert "contributions" not in old.warehouse.decisions.latest_batch("3")  # the cut-offs' read leaves them out
    page = TestClient(create_app(old, api_key="", decision_log=False)).get(
        "/ui/declaration", params={"id": red["declaration_id"]}).text
    assert all(f"<li>{escape(r)}</li>" in page for r in red["reason_list"])  # from the sentence
    section = _contributions_section(page)
    assert 'data-source="recomputed"' in section and "logged before decisions kept their contributions" in section

    # The next write adds the columns; the old rows read as having none, the new ones carry theirs.
    stored = old.warehouse.table("declarations")
    again = old.score(stored[stored["declaration_id"].isin(batch["declaration_id"].head(200))]
                      .drop(columns=[c for c in LABEL_FIELDS if c in stored.columns]).reset_index(drop=True))
    old.warehouse.decisions.append_batch(again.assign(position=range(len(again)), policy_hash=old.policy.digest()),
                                         pd.DataFrame(), "score-after-upgrade", "again.csv", datetime(2025, 1, 4))
    log = old.warehouse.read("SELECT batch_id, lane, contributions, reason_list FROM decisions")
    before = log[log["batch_id"] == "score-ui-test"]
    assert before["contributions"].isna().all() and before["reason_list"].isna().all()
    after = log[log["batch_id"] == "score-after-upgrade"]
    assert len(after) == 200 and (after["lane"] != "green").any()
    assert after.loc[after["lane"] != "green", "contributions"].map(len).gt(0).all()


pytestmark = pytest.mark.integration

KEY = "analyst-key"
MIN_COLOURS = 40  # a blank or unstyled page has a handful; text, tables and the lanes' colours give hundreds


@pytest.fixture(scope="module")
def served(world, trained, tmp_path_factory):
    """The app (with a key) served by uvicorn as `aduana serve` runs it, stopped however the tests end."""
    chromium()  # no browser: skip (fail under CI) before building anything
    scorer, batch = store_scored_world(world, trained, tmp_path_factory.mktemp("ui-browser"))
    with running(create_app(scorer, api_key=KEY)) as url:
        yield url, scorer, batch


def test_the_analysts_page_renders_its_charts_tables_and_lists_offline(served, tmp_path):
    url, scorer, batch = served
    dom = dump_dom(f"{url}/ui?key={KEY}")  # the key once in the URL: a redirect keeps it in a cookie
    assert "Latest scoring batch" in dom and "score-ui-test" in dom
    histogram = re.search(r'<svg id="score-histogram".*?</svg>', dom, re.S)
    assert histogram and histogram.group(0).count("<rect") >= 5
    assert 'id="lanes-by-office"' in dom and 'id="lanes-by-day"' in dom and dom.count("<table") >= 5
    red = batch.loc[batch["lane"] == "red"].sort_values("risk_score", ascending=False, kind="stable")
    listed = re.search(r'<div id="red-declarations">.*?</div>', dom, re.S).group(0)
    assert f'<a href="/ui/declaration?id={red["declaration_id"].iloc[0]}">' in listed and KEY not in listed
    assert all(escape(i) in dom for i in scorer.warehouse.audits.latest()["importer_id"])
    assert all(escape(k) in dom for k in scorer.warehouse.ratings.latest()["entity_key"])
    shot = screenshot(f"{url}/ui?key={KEY}", "ui", size="1400,1800", folder=tmp_path)
    assert image_size(shot) == (1400, 1800) and distinct_colours(shot) > MIN_COLOURS


def test_the_lookup_page_shows_the_declaration_as_stored_and_the_contributions_chart(served, tmp_path):
    url, scorer, batch = served
    red = batch[batch["lane"] == "red"].iloc[0]["declaration_id"]
    dom = dump_dom(f"{url}/ui/declaration?id={red}&key={KEY}")
    assert 'class="lane lane-red"' in dom and 'id="contributions-chart"' in dom
    stored = scorer.warehouse.declaration(red)
    fields = re.search(r'<table id="declaration-fields">.*?</table>', dom, re.S).group(0)
    for name in ("declaration_id", "importer_id", "hs_code", "origin_country"):
        assert f"<tr><th>{name}</th><td>{escape(str(stored[name]))}</td></tr>" in fields
    assert 'id="outcome"' in dom  # its control outcome, or that it has none
    shot = screenshot(f"{url}/ui/declaration?id={red}&key={KEY}", "ui-declaration", size="1400,2000",
                      folder=tmp_path)
    assert image_size(shot) == (1400, 2000) and distinct_colours(shot) > MIN_COLOURS


def test_without_the_key_the_browser_gets_the_401_page(served):
    url, _, _ = served
    dom = dump_dom(f"{url}/ui")
    assert "This page needs the service's key" in dom and "champion" not in dom



def test_the_swagger_ui_renders_the_operations_from_local_assets(served):
    url, _, _ = served
    dom = dump_dom(f"{url}/docs")
    # The served page names no path: the operations are in the DOM only if Swagger UI's JavaScript loaded and ran.
    paths = re.findall(r'class="opblock-summary-path"[^>]*>.*?</', dom, re.S)
    assert any("/v1/score" in p for p in paths), dom[:2000]
    assert distinct_colours(screenshot(f"{url}/docs", "api-docs")) > MIN_COLOURS
