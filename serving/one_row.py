"""Real time at the model's speed: a request's declarations scored in plain Python, no frame built on the way.

Each declaration's features come from the snapshot's indexed lookups (features/row.py), its model inputs go to
CatBoost as plain lists in one pool (the risk and revenue models read the same pool, and the reasons' SHAP pass
reads it again), its lane from the real-time thresholds, its draw and rule hits from the same functions' one-row
forms. The answers are the batch path's for the same declaration (tests/integration/test_one_row.py holds score,
lane and reasons equal, edge values included).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from catboost import Pool

from features.context import ScoringContext
from features.entities import MISSING
from features.prices import PriceBands
from features.profiles import profile_entities
from features.row import integrate_row, row_features
from serving.lanes import LanePolicy
from serving.reasons import Explanation, explain_values
from serving.selection import NO_THRESHOLDS, RED, YELLOW, Thresholds, draw_one, rule_one
from serving.targeting import SOURCE_WORDS
from training.models import RiskModel

EXPLORATION_REASON = "random exploration draw"


@dataclass
class RowsScored:
    """A request's declarations on the one-row path, in request order."""

    rows: list[dict]  # each integrated declaration, with its price_reference_log
    values: list[list]  # each one's model inputs, in the model's column order
    pool: Pool  # `values` as the model reads them
    risk: list[float]
    expected: list[float]


def score_rows(model: RiskModel, context: ScoringContext, bands: PriceBands, declarations: list[dict]) -> RowsScored:
    """Each declaration's features as if it came alone; one model call for them all."""
    categorical, names = set(model.categorical), _profiles_read(tuple(model.columns))
    rows, values = [], []
    for declaration in declarations:
        row = integrate_row(declaration, context)
        features = row_features(row, bands, context, names)
        row["price_reference_log"] = features["price_reference_log"]
        rows.append(row)
        values.append([features.get(c, MISSING if c in categorical else math.nan) for c in model.columns])
    pool = model.values_pool(values)
    risk, expected = model.predict_pool(pool)
    return RowsScored(rows, values, pool, risk.tolist(), expected.tolist())


@lru_cache(maxsize=8)
def _profiles_read(columns: tuple[str, ...]) -> tuple[str, ...]:
    """`profile_entities` of a model's columns, worked out once per model rather than per call."""
    return profile_entities(list(columns))


def answers(model: RiskModel, version: str | None, policy: LanePolicy, thresholds: Thresholds | None,
            scored: RowsScored, explain_lanes: tuple[str, ...] = (RED, YELLOW)) -> list[dict]:
    """The scorer's output records (serving/scorer.py OUTPUT_COLUMNS, then DETAIL_COLUMNS) of scored declarations:
    lanes from the thresholds, reasons from one SHAP pass over the explained ones."""
    rules = [rule_one(row, policy.rules) for row in scored.rows]
    thresholds = thresholds or NO_THRESHOLDS
    lanes = [thresholds.lane_one(
        rule, expected if policy.rank_by == "expected_revenue" and not math.isnan(expected) else risk,
        draw_one(row["declaration_id"], policy.seed))
        for row, rule, risk, expected in zip(scored.rows, rules, scored.risk, scored.expected, strict=True)]
    chosen = [i for i, (lane, _) in enumerate(lanes) if lane in explain_lanes]
    explained = _explain(model, scored, chosen)
    said = dict(zip(chosen, zip(explained.contributions, explained.reasons, strict=True), strict=True))
    out = []
    for i, (row, rule, (lane, selected_by)) in enumerate(zip(scored.rows, rules, lanes, strict=True)):
        found, sentences = said.get(i, (None, []))
        items = reason_items(selected_by, rule, sentences)
        out.append({"declaration_id": row["declaration_id"], "risk_score": scored.risk[i],
                    "expected_revenue": scored.expected[i], "lane": lane, "selected_by": selected_by,
                    "reasons": "; ".join(items), "model_version": version, "reason_list": items,
                    "contributions": found, "contribution_base": explained.base if i in said else math.nan,
                    "inclusion_probability": 1.0 if selected_by in ("rule", "model") and lane == RED
                    else thresholds.exploration_rate, "stratum": "random" if selected_by == "exploration" else ""})
    return out


def reason_items(selected_by: str, rule: str, sentences: list[str], stratum: str = "",
                 source_score: float = math.nan, followed: str = "") -> list[str]:
    """A decision's reasons in order: the exploration that chose it (the random draw, or the targeted source, what
    it follows and its score), the rule it hit, then what the model's SHAP values say."""
    explored = []
    if selected_by == "exploration":
        explored = [EXPLORATION_REASON if stratum in ("", "random") else targeted_reason(stratum, source_score, followed)]
    return explored + ([rule] if rule else []) + sentences


def targeted_reason(stratum: str, score: float, followed: str = "") -> str:
    """Why a targeted source chose a declaration, in an officer's words: the source, what it follows (a lead's
    relationship) and its score."""
    said = SOURCE_WORDS.get(stratum, stratum) + (f": {followed}" if followed else "")
    return f"selected to explore: {said}" + ("" if math.isnan(score) else f" (score {score:.3g})")


def _explain(model: RiskModel, scored: RowsScored, chosen: list[int]) -> Explanation:
    if len(chosen) == len(scored.rows):
        return explain_values(model, scored.pool, scored.values, scored.rows)
    values = [scored.values[i] for i in chosen]
    return explain_values(model, model.values_pool(values) if values else scored.pool, values,
                          [scored.rows[i] for i in chosen])
