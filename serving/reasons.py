"""Reasons an officer can defend: the top drivers of a score (CatBoost SHAP values) as plain sentences.

Features are grouped into families (the unit price, the manifest, the route, the registry, each entity's
record...; features/catalogue.py) so that three reasons say three different things.

The same SHAP pass also gives each explained row's strongest feature contributions (`Explanation.contributions`),
which the decision log keeps beside the decision: what the deciding model said, readable later without the model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.catalogue import family_of, is_extra
from features.profiles import MISSING, RECENT_DAYS
from training.models import RiskModel

TOP_REASONS = 3
TOP_CONTRIBUTIONS = 12  # features kept per explained decision, strongest (by size) first
ENTITY_LABELS = {
    "importer": "importer {importer_id}", "declarant": "declarant {declarant_id}", "exporter": "exporter {exporter_id}",
    "hs_chapter": "HS chapter {hs_chapter}", "hs_heading": "HS heading {hs_heading}",
    "hs_subheading": "HS {hs_dotted} goods", "origin": "origin {origin_country}", "lane": "lane {origin_country} → {office_id}",
    "importer_heading": "importer {importer_id} with HS heading {hs_heading}",
    "declarant_office": "declarant {declarant_id} at office {office_id}",
    "exporter_origin": "exporter {exporter_id} from {origin_country}",
}


def _v(row: dict | _Row, column: str, default: object = None) -> object:
    value = row.get(column, default)
    return default if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)) else value


def sentence(family: str, strongest: str, row: dict | _Row) -> str:
    """One readable reason for a feature family, using the declaration's own values."""
    hs = str(_v(row, "hs_code", ""))
    values = {**{k: _v(row, k, "?") for k in ("importer_id", "declarant_id", "exporter_id", "origin_country", "office_id")},
              "hs_chapter": hs[:2], "hs_heading": hs[:4], "hs_dotted": f"{hs[:4]}.{hs[4:6]}" if len(hs) >= 6 else hs}
    if family == "price":
        deviation = _v(row, "log_unit_price", np.nan) - _v(row, "price_reference_log", np.nan)
        if np.isnan(deviation):
            return "unit price cannot be checked against a reference (no net mass or no price band)"
        side = "below" if deviation < 0 else "above"
        return (f"unit price {abs(math.expm1(deviation)):.0%} {side} the HS {values['hs_dotted']} reference "
                f"for origin {values['origin_country']}")
    if family == "manifest":
        ratio = _v(row, "manifest_mass_ratio")
        if ratio is None:
            return "no manifest found for the bill of lading"
        return f"manifest gross weight is {ratio:.2f}× the net mass declared on bill of lading {_v(row, 'bill_of_lading', '?')}"
    if family == "route":
        if _v(row, "loading_mismatch") == 1:
            return f"loaded in {_v(row, 'loading_country', '?')} although the declared origin is {values['origin_country']}"
        if _v(row, "transshipped") == 1:
            return f"transshipped via {_v(row, 'transshipment_ports', 'a hub')}"
        return f"shipping route from {_v(row, 'departure_country', '?')} by {_v(row, 'transport_mode', '?')}"
    if family == "registry":
        if strongest in ("credit_rating", "credit_rating_rank"):
            return f"importer's credit rating is {_v(row, 'credit_rating', 'missing')}"
        if strongest == "aeo_certified":
            return "importer is not AEO-certified" if _v(row, "aeo_certified") != 1 else "importer is AEO-certified"
        if strongest == "prior_violations":
            n = int(_v(row, 'prior_violations', 0))
            return f"importer has {n} prior violation{'s' if n != 1 else ''}"
        age = _v(row, "company_age_days")
        return f"importer registered {int(age)} days before filing" if age is not None else "importer is not in the registry"
    if family == "value":
        if strongest == "tax_rate":
            return f"duty rate {_v(row, 'tax_rate', 0):.0%}"
        return f"declared value {_v(row, 'declared_value', 0):,.0f} for {_v(row, 'net_mass_kg', 0):,.0f} kg"
    if family.startswith("entity:"):
        entity = family.split(":", 1)[1]
        who = ENTITY_LABELS[entity].format(**values)
        if strongest.endswith(("volume", f"volume_{RECENT_DAYS}d", "days_known")):
            return f"{who} first seen {int(_v(row, f'{entity}_days_known', 0))} days ago, {int(_v(row, f'{entity}_volume', 0))} earlier filings"
        if strongest.endswith(f"hit_rate_{RECENT_DAYS}d"):
            return f"{who}'s hit rate {_v(row, strongest, 0):.0%} over the last {RECENT_DAYS} days"
        if strongest.endswith("revenue_rate"):
            return f"{who}'s controls recovered {_v(row, strongest, 0):,.0f} on average"
        return f"{who}'s hit rate {_v(row, f'{entity}_hit_rate', 0):.0%} over {int(_v(row, f'{entity}_inspections', 0))} controls"
    if family == "office":
        return f"entry through office {values['office_id']}"
    if is_extra(family):  # a column the mapping added: its own name and value
        return f"{family.split('_', 1)[1].replace('_', ' ')} {_v(row, family, '?')}"
    return f"{family} = {_v(row, family, '?')}"


@dataclass(frozen=True)
class Explanation:
    """What one SHAP pass says about each explained row, in row order."""

    reasons: list[list[str]]  # sentences raising the risk, strongest first (one family each)
    # The `top_contributions` features of largest |SHAP| (log-odds), strongest first, each
    # {"feature", "family", "value" (the model's input as text, None when missing), "contribution"}.
    contributions: list[list[dict]]
    base: float  # the SHAP base value (log-odds): base + every feature's contribution = logit(risk)


def feature_value_text(value: object) -> str | None:
    """A model input as the analysts read it: numbers to 6 significant digits, None when missing."""
    kind = type(value)
    if kind is str:
        return None if value == MISSING else value  # a categorical gap reaches the model as MISSING
    if kind is float or isinstance(value, np.floating):
        return None if value != value else f"{value:.6g}"  # NaN is the one value unequal to itself
    return None if value is None or value is pd.NA else str(value)


def explain(model: RiskModel, X: pd.DataFrame, context: pd.DataFrame, top: int = TOP_REASONS) -> list[list[str]]:
    """The top `top` reasons raising each row's risk, strongest first (from SHAP values of the classifier)."""
    return explanations(model, X, context, top).reasons


def explanations(model: RiskModel, X: pd.DataFrame, context: pd.DataFrame, top: int = TOP_REASONS,
                 top_contributions: int = TOP_CONTRIBUTIONS) -> Explanation:
    """Each row's reasons (`explain`) and its strongest feature contributions, from one SHAP pass."""
    if X.empty:
        return Explanation([], [], math.nan)
    shap = model.classifier.get_feature_importance(model.pool(X), type="ShapValues")
    base, shap = float(shap[0, -1]), shap[:, :-1]
    member_family = [family_of(c) for c in model.columns]
    families = list(dict.fromkeys(member_family))
    members = [np.flatnonzero(np.array(member_family) == f) for f in families]
    by_family = np.column_stack([shap[:, m].sum(axis=1) for m in members])  # rows × families
    strongest = np.column_stack([m[np.argmax(shap[:, m], axis=1)] for m in members])  # the leading feature
    order = np.argsort(-by_family, axis=1, kind="stable")[:, :top]
    leading = np.argsort(-np.abs(shap), axis=1, kind="stable")[:, :top_contributions]
    # Python values in bulk (indexing numpy per cell costs more than the rest), for the columns some row shows only.
    inputs = {j: X[model.columns[j]].to_numpy().tolist() for j in np.unique(leading).tolist()}
    sizes = np.take_along_axis(shap, leading, axis=1).tolist()
    columns = _Columns(context, X)
    reasons, contributions = [], []
    for i, (features, values) in enumerate(zip(leading.tolist(), sizes, strict=True)):
        row = _Row(columns, i)
        reasons.append([sentence(families[j], model.columns[strongest[i, j]], row) for j in order[i]
                        if by_family[i, j] > 0])
        contributions.append([{"feature": model.columns[j], "family": member_family[j],
                               "value": feature_value_text(inputs[j][i]), "contribution": value}
                              for j, value in zip(features, values, strict=True)])
    return Explanation(reasons, contributions, base)


class _Columns(dict):
    """Column arrays of the declarations (then of the features), converted on first use."""

    def __init__(self, context: pd.DataFrame, X: pd.DataFrame):
        super().__init__()
        self.frames = (context, X)

    def __missing__(self, column: str) -> np.ndarray | None:
        found = next((f[column].to_numpy() for f in self.frames if column in f.columns), None)
        self[column] = found
        return found


class _Row:
    """One declaration's values, read from the column arrays (no per-row dict of every column)."""

    __slots__ = ("columns", "i")

    def __init__(self, columns: _Columns, i: int):
        self.columns, self.i = columns, i

    def get(self, column: str, default: object = None) -> object:
        values = self.columns[column]
        return default if values is None else values[self.i]
