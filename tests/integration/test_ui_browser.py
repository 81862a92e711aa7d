"""The analysts' page and the API docs in a real browser: headless Chromium against a real uvicorn server on
loopback, with every other network cut off (tests/browser.py), so nothing may come from a CDN."""
from __future__ import annotations

import re
from html import escape

import pytest

from serving.api import create_app
from tests.browser import chromium, distinct_colours, dump_dom, image_size, screenshot
from tests.integration.test_api_guards import running
from tests.integration.test_ui import store_scored_world

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
