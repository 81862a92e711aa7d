"""A declaration's feature contributions (SHAP values, log-odds): those the deciding model stored with the decision
(`stored_contributions`), or the current champion's, recomputed through the scorer's one-row path
(`contributions`) for the declaration as the warehouse stores it (`scorer_input`)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from features.contract import LABEL_FIELDS
from features.warehouse import STORED_BOOKKEEPING
from serving.reasons import explanations
from serving.scorer import Scorer


@dataclass(frozen=True)
class Contributions:
    """One declaration's SHAP values (log-odds): base + sum of every feature's contribution = logit(risk)."""

    model_version: str | None
    base: float
    risk_score: float
    features: pd.DataFrame  # feature, family, value, contribution; strongest (by size) first
    families: pd.DataFrame  # family, contribution: the grouping the reasons use (serving/reasons.py)
    stored: bool = False  # the deciding model's, kept with the decision (only its strongest features); else recomputed


def _by_family(features: pd.DataFrame) -> pd.DataFrame:
    return (features.groupby("family", sort=False)["contribution"].sum().reset_index()
            .sort_values("contribution", ascending=False, kind="stable").reset_index(drop=True))


def stored_contributions(decision: dict) -> Contributions | None:
    """The contributions the decision log kept with a decision (the deciding model's at decision time), if any."""
    kept = decision.get("contributions")
    if not kept:
        return None
    features = pd.DataFrame(kept, columns=["feature", "family", "value", "contribution"])
    base = decision.get("contribution_base")
    return Contributions(model_version=decision.get("model_version"),
                         base=math.nan if base is None or pd.isna(base) else float(base),
                         risk_score=float(decision["risk_score"]), features=features, families=_by_family(features),
                         stored=True)


def scorer_input(stored: dict) -> dict:
    """A stored declaration as the scorer takes one: canonical fields and a mapping's extras, labels and
    bookkeeping aside (what serving/realtime.py scores of the warehouse's own rows)."""
    return {k: v for k, v in stored.items() if k not in LABEL_FIELDS and k not in STORED_BOOKKEEPING}


def contributions(scorer: Scorer, declaration: dict) -> Contributions:
    """The champion's feature contributions for one declaration, on the API's one-row feature path."""
    for _ in range(3):  # the champion may be swapped by a hot reload in between: compute again with the new one
        model, version = scorer.model, scorer.version
        frame, X, scores = scorer.scores_rows([declaration])  # the one-row path the API scores on
        if scorer.model is model:
            break
    found = explanations(model, X, frame, top_contributions=len(model.columns))  # the reasons' SHAP, every feature
    features = pd.DataFrame(found.contributions[0], columns=["feature", "family", "value", "contribution"])
    return Contributions(model_version=version, base=found.base, risk_score=float(scores["risk_score"].iloc[0]),
                         features=features, families=_by_family(features))

