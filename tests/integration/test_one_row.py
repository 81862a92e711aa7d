"""The API's one-row path (serving/one_row.py) against the batch path, declaration by declaration: the same score,
expected revenue, lane and reasons, on edge values, missing fields, unknown entities, listed ids written other
ways and declarations stored or new."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from serving import one_row
from serving.api.schemas import Declaration
from serving.lanes import LanePolicy
from serving.one_row import EXPLORATION_REASON
from serving.selection import Rules, Thresholds, draw_one, exploration_draw, rule_hits, rule_one
from tests.integration.test_scorer import EDGE_AMOUNTS
from tests.unit.test_cell import canonical_frame
from training.explainer import leaf_shap, shap_values
from training.leaf_shap import LeafShap

pytestmark = pytest.mark.integration
EVERY_LANE = ("red", "yellow", "green")
RULES = Rules(watchlist_importers=["IMP00007"], prohibited_hs_prefixes=["93"], licensed_hs_prefixes=["3004"],
              embargoed_origins=["KP"])


def _shap_sentences(record: dict) -> list[str]:
    """The reasons that come from the SHAP pass (what a lane adds, the draw and the rule, set aside)."""
    return [r for r in record["reason_list"] if r != EXPLORATION_REASON and r != record.get("rule", "")]


def test_a_fuzzed_declaration_gets_the_batch_paths_score_lane_and_reasons(stored_scorer, world):
    scorer = stored_scorer
    scorer.policy = LanePolicy(rules=RULES)
    rows = world.declarations.iloc[16_800:17_200].reset_index(drop=True)  # stored ones, then new ones
    fields = list(Declaration.model_fields)
    batch = scorer.score(rows.drop(columns=["inspected", "fraud", "revenue", "critical", "control_date"]))
    thresholds = Thresholds.from_decisions(batch.assign(batch_id="fuzz"), "risk_score", scorer.policy.seed)
    amount = st.one_of(st.none(), st.sampled_from(EDGE_AMOUNTS), st.floats(0, 1e308, allow_nan=False))
    text = st.sampled_from(["IMP00007", "ＩＭＰ０００07", " IMP00007", "IMP\u200b00007", "NEVER-SEEN", "ü漢字"])

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.integers(0, len(rows) - 1), amount, amount, amount, st.one_of(st.none(), text),
           st.sampled_from(["010121", "930100", "300490", "979797", None]), st.sampled_from(["KP", "CN", "ZZ", None]),
           st.booleans(), st.booleans())
    @example(0, 5e-324, 1e308, None, "ＩＭＰ０００07", "930100", "KP", True, False)
    @example(399, 0.0, 0.0, 0.0, None, None, None, False, True)
    def check(i, value, mass, duty, importer, hs, origin, new_id, drop_optional):
        r = rows.iloc[i]
        record = {k: (None if pd.isna(r[k]) else r[k]) for k in fields if k in r}
        record.update(declaration_date=r["declaration_date"].date(), declared_value=value if value is not None else 1.0,
                      net_mass_kg=mass, duty_paid=duty)
        if importer is not None:
            record["importer_id"] = importer
        if hs is not None:
            record["hs_code"] = hs
        if origin is not None:
            record["origin_country"] = origin
        if new_id:
            record["declaration_id"] += "-fuzz"
        if drop_optional:
            record.update(bill_of_lading=None, declarant_id=None, office_id=None, departure_country=None)
        item = Declaration.model_validate(record)
        frame = canonical_frame([item])
        expected = scorer.score(frame, explain_lanes=EVERY_LANE).iloc[0]
        got = one_row.answers(scorer.model, scorer.version, scorer.policy, thresholds,
                              scorer._one_row([item.model_dump()]), explain_lanes=EVERY_LANE)[0]
        assert got["risk_score"] == pytest.approx(expected["risk_score"], rel=1e-12)
        assert got["expected_revenue"] == pytest.approx(expected["expected_revenue"], rel=1e-12, nan_ok=True)
        rule = rule_hits(frame, RULES).iloc[0]
        assert rule_one(item.model_dump(), RULES) == rule
        assert draw_one(item.declaration_id, scorer.policy.seed) == exploration_draw(frame["declaration_id"],
                                                                                   scorer.policy.seed)[0]
        lanes = thresholds.lanes(np.array([rule]), np.array([expected["risk_score"]]),
                                 exploration_draw(frame["declaration_id"], scorer.policy.seed)).iloc[0]
        assert (got["lane"], got["selected_by"]) == (lanes["lane"], lanes["selected_by"])
        assert _shap_sentences({**got, "rule": rule}) == _shap_sentences({**expected, "rule": rule})
        assert [(c["feature"], c["value"]) for c in got["contributions"]] == \
            [(c["feature"], c["value"]) for c in expected["contributions"]]
        np.testing.assert_allclose([c["contribution"] for c in got["contributions"]],
                                   [c["contribution"] for c in expected["contributions"]], rtol=0, atol=0)
        assert got["contribution_base"] == expected["contribution_base"]

    check()


def test_the_api_answers_what_the_batch_decided(stored_scorer, world):
    """Stored declarations scored as a batch, then one by one with the batch's thresholds: every lane, selection and
    reason equal, score to the last bits."""
    scorer = stored_scorer
    rows = world.declarations.iloc[16_600:17_000].drop(
        columns=["inspected", "fraud", "revenue", "critical", "control_date"]).reset_index(drop=True)
    batch = scorer.score(rows)
    thresholds = Thresholds.from_decisions(batch.assign(batch_id="b"), "risk_score", scorer.policy.seed)
    answered = pd.DataFrame([a for i in range(len(rows)) for a in scorer.score_realtime(rows.iloc[[i]], thresholds)])
    for column in ("lane", "selected_by", "reasons"):
        assert answered[column].tolist() == batch[column].tolist(), column
    np.testing.assert_allclose(answered["risk_score"], batch["risk_score"], rtol=1e-12)
    assert (answered["lane"] != "green").sum() > 20  # enough explained rows to compare


def test_leaf_tables_give_a_row_the_same_bits_alone_and_in_a_batch(stored_scorer, world):
    """The reasons' SHAP values of a declaration do not depend on what it is explained with (the tables sum a row's
    trees in one order whichever way the rows come), and equal CatBoost's own."""
    scorer = stored_scorer
    _, X, _ = scorer._scores(world.declarations.iloc[16_900:17_000].reset_index(drop=True))
    model = scorer.model
    tables = leaf_shap(model.classifier)
    assert isinstance(tables, LeafShap)
    together = shap_values(model.classifier, model.pool(X))
    alone = np.vstack([shap_values(model.classifier, model.pool(X.iloc[[i]])) for i in range(len(X))])
    assert np.array_equal(together, alone)
    from training.explainer import explainer
    catboost = explainer(model.classifier).get_feature_importance(model.pool(X), type="ShapValues")
    np.testing.assert_allclose(together, catboost, atol=1e-9)
    assert not math.isnan(together[0, -1])
