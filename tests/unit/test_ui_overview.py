"""serving/ui/overview.py: the overview's sections on tiny frames: the red declarations as links, the lanes by
office and day over the stored declarations only, and the ratings in the entity table's order."""
from __future__ import annotations

import re

import pandas as pd

from features.entities import NAMES
from serving.ui import overview
from serving.ui.page_data import NOT_STORED, summarise_batch
from tests.unit.test_ui_page_data import batch_rows


def test_the_red_declarations_link_to_their_pages_at_most_max_list_rows_with_the_rest_counted(monkeypatch):
    monkeypatch.setattr(overview, "MAX_LIST_ROWS", 2)
    rows = batch_rows([True] * 12).assign(declaration_id=lambda f: [f"D {i}&x" for i in range(12)])
    html = overview.batch_section(summarise_batch(rows, "expected_revenue", 0))
    listed = re.search(r'<div id="red-declarations">.*?</div>', html, re.S).group(0)
    links = re.findall(r'<a href="([^"]+)">([^<]+)</a>', listed)
    assert len(links) == 2 and all(href.startswith("/ui/declaration?id=") for href, _ in links)
    assert all(text.endswith("&amp;x") for _, text in links) and "&amp;amp;" not in listed  # escaped once
    assert all(href.startswith("/ui/declaration?id=D+") and "%26x" in href and "key" not in href for href, _ in links)
    reds = int((rows["lane"] == "red").sum())
    assert f"Red declarations ({reds}, highest risk first)" in html and f"…and {reds - 2} more red declarations" in html


def test_a_batch_partly_in_the_warehouse_says_how_many_are_not_and_draws_no_bar_for_them():
    html = overview.batch_section(summarise_batch(batch_rows([True] * 4 + [False] * 2), "expected_revenue", 0))
    assert "2 of the batch's 6 declarations are not in the warehouse" in html and "cover the other 4" in html
    charts = "".join(re.findall(r'<svg id="lanes-by-(?:office|day)".*?</svg>', html, re.S))
    assert charts and NOT_STORED not in charts
    assert f"<td>{NOT_STORED}</td><td class=n>" not in html  # no office row for them either


def test_a_batch_not_in_the_warehouse_shows_no_office_or_day_chart():
    html = overview.batch_section(summarise_batch(batch_rows([False] * 6), "expected_revenue", 0))
    assert "None of the batch's 6 declarations is in the warehouse" in html
    assert 'id="lanes-by-office"' not in html and 'id="lanes-by-day"' not in html
    assert 'id="score-histogram"' in html and 'id="red-declarations"' in html


def ratings_of(entities: list[str]) -> pd.DataFrame:
    return pd.DataFrame({
        "entity": entities, "rank": 1, "entity_key": [f"{e}-key" for e in entities], "band": "high",
        "hit_rate": 0.2, "interval_low": 0.1, "interval_high": 0.3, "controls": 10, "hits": 2, "volume": 50,
        "list_id": [f"ratings-{e}" for e in entities], "rated_at": pd.Timestamp("2025-01-02"), "min_controls": 5,
        "key_columns": "k", "audit_list_id": None})


def test_ratings_follow_the_entity_tables_order_and_show_any_entity_they_hold():
    rated = ["lane", "zz_new_entity", "hs_chapter", "importer", "declarant_office", "exporter"]
    html = overview.ratings_section(ratings_of(rated))
    shown = re.findall(r"<h3>([^<]+)</h3>", html)
    known = [e for e in NAMES if e in rated]
    assert shown == [*known, "zz_new_entity"]
    assert all(f"<td>{e}-key</td>" in html for e in rated)  # keys as text: only declarations have a page
    assert "<a " not in html


def test_the_audit_lists_importers_are_text():
    audit = pd.DataFrame({"rank": [1, 2], "importer_id": ["IMP<1>", "IMP2"], "audit_priority": [9.0, 8.0],
                          "expected_unrecovered": [100.0, 90.0], "reasons": ["a", None], "list_id": "audit-1",
                          "period": "2025-01-01:2025-01-02", "selected_at": pd.Timestamp("2025-01-02"),
                          "capacity": 2})
    html = overview.audit_section(audit)  # a list stored before the random share: every enterprise ranked
    assert "<td>IMP&lt;1&gt;</td>" in html and "<td>IMP2</td>" in html and "<a " not in html
    assert html.count("<td>priority</td>") == 2 and "0 of them drawn at random" in html
    drawn = overview.audit_section(audit.assign(selected_by=["priority", "random"], inclusion_probability=[1.0, 0.05]))
    assert "<td>random draw (1 in 20)</td>" in drawn and "1 of them drawn at random" in drawn
    assert "No findings reported yet" in drawn
    found = {"level": 0.9, "random_audited": 3, "examined": 120, "frauds_found": 6, "released_outside_priority": 5000,
             "fraud_rate": {"estimate": 0.05, "ci_low": 0.02, "ci_high": 0.11, "released_total": 250.0}}
    said = overview.audit_section(audit, found)
    assert "about <strong>5.0%</strong> (90 % interval 2.0% to 11.0%) of the 5,000 declarations" in said
    assert "some 250 declarations nobody selected" in said


def test_the_batch_shows_the_estimate_of_fraud_among_all_its_declarations_in_words():
    rows = batch_rows([True] * 60).assign(hs_code="870323", importer_id="I1", revenue=None,
                                          inclusion_probability=[1.0 if i % 6 in (0, 3) else 0.1 for i in range(60)])
    rows.loc[5, ["selected_by", "stratum"]] = ["exploration", "importer_mix_shift"]
    rows["fraud"] = [float(i % 4 == 0) if (i % 6 in (0, 3) or i % 10 == 1) else None for i in range(60)]
    view = summarise_batch(rows, "risk_score", 0)
    html = overview.batch_section(view)
    assert 'id="compliance"' in html and "drawn at random" in html
    assert re.search(r"About <strong>\d+\.\d%</strong> of the batch's 60 declarations", html)
    assert "chance of selection" in html and "certain" in html
    assert "exploration: a sudden change in its importer&#x27;s partners or goods" in html
    empty = overview.batch_section(summarise_batch(rows.assign(fraud=None), "risk_score", 0))
    assert "No estimate yet" in empty
