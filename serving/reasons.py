"""Reasons an officer can defend: the top drivers of a score (CatBoost SHAP values) as plain sentences.

Features are grouped into families (the unit price, the manifest, the route, the registry, each entity's
record...; features/catalogue.py) so that three reasons say three different things. Each family's sentence comes
from its strongest feature among the deciding model's columns, with the value the model saw: an entity's raw id
reads as the entity (the model's learned risk for it), a profile statistic only when the model has it, and a
hit rate only over at least one control.

The same SHAP pass also gives each explained row's strongest feature contributions (`Explanation.contributions`),
which the decision log keeps beside the decision: what the deciding model said, readable later without the model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from catboost import Pool

from features.catalogue import BY_NAME, family_of, is_extra
from features.entities import BY_NAME as ENTITY_BY_NAME
from features.entities import HS_LEVELS, MISSING, hs_dotted, hs_prefix
from features.profiles import PROFILE_SUFFIXES, RECENT_DAYS
from training.explainer import shap_values
from training.models import RiskModel

TOP_REASONS = 3
TOP_CONTRIBUTIONS = 12  # features kept per explained decision, strongest (by size) first
# The value family's amounts (a `log_` feature is quoted as its amount): what each is, and its value as text.
AMOUNTS = {"declared_value": ("declared value", "{:,.0f}".format), "net_mass_kg": ("net mass", "{:,.0f} kg".format),
           "quantity": ("quantity", "{:,.0f}".format), "duty_paid": ("duty paid", "{:,.0f}".format),
           "tax_rate": ("duty rate", lambda rate: f"{100 * rate:.4g}%")}
RECORD = ("hit_rate", f"hit_rate_{RECENT_DAYS}d", "revenue_rate", "inspections")  # what the entity's controls found


def _v(row: dict | _Row, column: str, default: object = None) -> object:
    """A value of the declaration or of the model's input; `default` when missing (a categorical gap included)."""
    value = row.get(column, default)
    if value is None or value is pd.NA:
        return default
    if isinstance(value, str):
        return default if value == MISSING else value
    return default if isinstance(value, float) and value != value else value  # NaN is unequal to itself


class _Said(dict):
    """What a sentence may quote of a declaration, read when first quoted: its entity columns ("?" when missing), its
    HS levels and its dotted HS code."""

    def __init__(self, row: dict | _Row):
        super().__init__()
        self.row = row

    def __missing__(self, key: str) -> str:
        if key in HS_LEVELS or key == "hs_dotted":
            hs = str(_v(self.row, "hs_code", ""))
            found = hs_dotted(hs) if key == "hs_dotted" else hs_prefix(hs, key)
        else:
            found = _v(self.row, key, "?")
        self[key] = found
        return found


def _many(n: float, what: str) -> str:
    return f"{int(n):,} {what}{'' if int(n) == 1 else 's'}"


def sentence(family: str, strongest: str, row: dict | _Row) -> str | None:
    """One readable reason for a feature family, from its `strongest` feature's value on the declaration.

    `row` gives the model's inputs and the declaration's other fields, never a feature the model lacks (see
    `_Columns`), so a sentence quotes only what the model saw. None: nothing defensible to say."""
    if family == "price":
        values = _Said(row)
        deviation = _v(row, "log_unit_price", np.nan) - _v(row, "price_reference_log", np.nan)
        if np.isnan(deviation):
            return "unit price cannot be checked against a reference (no net mass or no price band)"
        side = "below" if deviation < 0 else "above"
        return (f"unit price {abs(math.expm1(deviation)):.0%} {side} the HS {values['hs_dotted']} reference "
                f"for origin {values['origin_country']}")
    if family == "manifest":
        if strongest == "bl_items":
            items = _v(row, "bl_items")
            return "no bill of lading declared" if items is None else \
                f"bill of lading {_v(row, 'bill_of_lading', '?')} carries {_many(items, 'declared item')}"
        ratio = _v(row, "manifest_mass_ratio")
        if ratio is None:
            return "no manifest gross weight to check the declared net mass against"
        return f"manifest gross weight is {ratio:.2f}× the net mass declared on bill of lading {_v(row, 'bill_of_lading', '?')}"
    if family == "route":
        return _route(strongest, row, _Said(row)["origin_country"])
    if family == "registry":
        return _registry(strongest, row)
    if family == "value":
        what, shown = AMOUNTS.get(strongest.removeprefix("log_"), (strongest, str))
        amount = _v(row, strongest)
        if amount is None:
            return f"no {what} declared"
        return f"{what} {shown(math.expm1(amount) if strongest.startswith('log_') else amount)}"
    if family.startswith("entity:"):
        return _entity(family.split(":", 1)[1], strongest, row, _Said(row))
    if family == "office":
        return f"entry through office {_Said(row)['office_id']}"
    if is_extra(family):  # a column the mapping added: its own name and value
        value = _v(row, family)
        return f"{family.split('_', 1)[1].replace('_', ' ')} {'not given' if value is None else value}"
    return f"{family} = {_v(row, family, '(missing)')}"


def _entity(entity: str, strongest: str, row: dict | _Row, values: dict) -> str | None:
    """An entity's reason: the entity itself for its raw id (CatBoost's own statistics of it), else its profile."""
    described = ENTITY_BY_NAME[entity]
    noun, who = described.noun, described.label.format_map(values)
    suffix = strongest.removeprefix(f"{entity}_")
    if suffix not in PROFILE_SUFFIXES:  # the raw id (importer_id, hs_code, origin_country, hs_chapter...)
        if _v(row, strongest) is None:
            return f"no {noun} declared: the model's learned risk where it is missing"
        return f"{who}: the model's learned risk for this {noun}"
    value = _v(row, strongest)
    if value is None:  # an entity the profiles cannot identify: nothing known to quote
        return None
    if suffix in RECORD:  # a record of controls: said only over the controls it counts
        controls = _v(row, f"{entity}_inspections")
        if controls is None:
            return None
        if controls == 0:
            return f"{who} has no earlier controls"
        if suffix == "revenue_rate":
            return f"{who}'s controls recovered {value:,.0f} on average over {_many(controls, 'control')}"
        if suffix == f"hit_rate_{RECENT_DAYS}d":
            return f"{who}'s hit rate {value:.0%} over the last {RECENT_DAYS} days ({_many(controls, 'control')} in all)"
        rate = _v(row, f"{entity}_hit_rate")
        return f"{who}'s hit rate {rate:.0%} over {_many(controls, 'control')}" if rate is not None else \
            f"{who} has {_many(controls, 'earlier control')}"
    if suffix == f"volume_{RECENT_DAYS}d":
        return f"{who}: {_many(value, 'filing')} in the last {RECENT_DAYS} days"
    days, volume = _v(row, f"{entity}_days_known"), _v(row, f"{entity}_volume")
    known = ([f"first seen {_many(days, 'day')} ago"] if days is not None else []) + \
        ([_many(volume, "earlier filing")] if volume is not None else [])
    return f"{who}: {', '.join(known)}"


def _registry(strongest: str, row: dict | _Row) -> str:
    if strongest in ("credit_rating", "credit_rating_rank"):
        rating = _v(row, "credit_rating")
        return f"importer's credit rating is {rating}" if rating else "importer's credit rating: not on record"
    value = _v(row, strongest)
    if value is None:
        what = {"aeo_certified": "AEO status", "company_age_days": "registration date"}.get(strongest, strongest.replace("_", " "))
        return f"importer's {what}: not on record"
    if strongest == "aeo_certified":
        return "importer is AEO-certified" if value == 1 else "importer is not AEO-certified"
    if strongest == "prior_violations":
        return f"importer has {_many(value, 'prior violation')}"
    if strongest == "company_age_days":
        return f"importer registered {_many(value, 'day')} before filing"
    return f"importer's {strongest.replace('_', ' ')} is {value}"


def _route(strongest: str, row: dict | _Row, origin: str) -> str:
    if strongest in ("loading_country", "loading_mismatch"):
        loading = _v(row, "loading_country")
        if loading is None:
            return "no port of loading on the manifest"
        return f"loaded in {loading}" + (f" although the declared origin is {origin}"
                                         if _v(row, "loading_mismatch") == 1 else "")
    if strongest in ("transshipped", "transshipment_count"):
        moved = _v(row, "transshipped")
        if moved is None:
            return "no manifest route to check"
        return f"transshipped via {_v(row, 'transshipment_ports', 'a hub')}" if moved == 1 else "shipped without transshipment"
    if strongest == "carrier":
        return f"carried by {_v(row, 'carrier', 'an unknown carrier')}"
    departure = _v(row, "departure_country")
    if strongest == "departure_mismatch" and _v(row, "departure_mismatch") == 1:
        return f"departed from {departure} although the declared origin is {origin}"
    return f"shipped from {departure or 'an undeclared country'} by {_v(row, 'transport_mode', 'an undeclared mode')}"


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
                 top_contributions: int = TOP_CONTRIBUTIONS, pool: Pool | None = None) -> Explanation:
    """Each row's reasons (`explain`) and its strongest feature contributions, from one SHAP pass (over `pool`,
    X's pool when it is already built)."""
    if X.empty:
        return Explanation([], [], math.nan)
    shap = shap_values(model.classifier, model.pool(X) if pool is None else pool)
    leading = _leading(shap, top_contributions)
    columns = _Columns(context, X)
    return _explained(model, shap, leading, [_Row(columns, i) for i in range(len(X))], _texts(model, X, leading), top)


def _texts(model: RiskModel, X: pd.DataFrame, leading: np.ndarray) -> list[list[str | None]]:
    """`feature_value_text` of each row's leading features' inputs (rows x leading), a column at a time: each
    column's cells that some row shows, gathered and converted in one pass."""
    out = np.empty(leading.shape, dtype=object)
    for j in np.unique(leading).tolist():
        rows, at = np.nonzero(leading == j)
        values = X[model.columns[j]].to_numpy()[rows]
        if values.dtype == np.float64:
            shown = [None if v != v else f"{v:.6g}" for v in values.tolist()]  # NaN: the value unequal to itself
        else:
            shown = [feature_value_text(v) for v in values.tolist()]
        out[rows, at] = shown
    return out.tolist()


def explain_values(model: RiskModel, pool: Pool, values: list[list], rows: list[dict], top: int = TOP_REASONS,
                   top_contributions: int = TOP_CONTRIBUTIONS) -> Explanation:
    """`explanations` for rows given as plain lists (`values`, the model's inputs in its column order, and `pool`,
    their pool) with their integrated declarations (`rows`): the one-row path's, with no frame."""
    if not values:
        return Explanation([], [], math.nan)
    shap = shap_values(model.classifier, pool)
    positions = {c: j for j, c in enumerate(model.columns)}
    readable = [_Values(positions, v, r) for v, r in zip(values, rows, strict=True)]
    leading = _leading(shap, top_contributions)
    texts = [[feature_value_text(row[j]) for j in features] for row, features in zip(values, leading.tolist(), strict=True)]
    return _explained(model, shap, leading, readable, texts, top)


def _leading(shap: np.ndarray, top_contributions: int) -> np.ndarray:
    """Each row's `top_contributions` features of largest |SHAP|, strongest first."""
    return np.argsort(-np.abs(shap[:, :-1]), axis=1, kind="stable")[:, :top_contributions]


def _explained(model: RiskModel, shap: np.ndarray, leading: np.ndarray, rows: list, texts: list[list[str | None]],
               top: int) -> Explanation:
    """The reasons and contributions of SHAP values (`shap`, with the base value last); `rows[i]` reads row i's
    values for the sentences, `texts[i][k]` is row i's input to its k-th leading feature as text."""
    base, shap = float(shap[0, -1]), shap[:, :-1]
    columns = model.columns
    member_family = [family_of(c) for c in columns]
    families = list(dict.fromkeys(member_family))
    members = [np.flatnonzero(np.array(member_family) == f) for f in families]
    by_family = np.column_stack([shap[:, m].sum(axis=1) for m in members])  # rows × families
    strongest = np.column_stack([m[np.argmax(shap[:, m], axis=1)] for m in members])  # the leading feature
    # Per row, its families by their sum, strongest first: which, their leading feature, whether they raise it
    # (as Python lists: indexing numpy a cell at a time costs more than the sentences)
    order = np.argsort(-by_family, axis=1, kind="stable")
    raising = (np.take_along_axis(by_family, order, axis=1) > 0).tolist()
    leaders = np.array(columns, dtype=object)[np.take_along_axis(strongest, order, axis=1)].tolist()
    order = order.tolist()
    sizes = np.take_along_axis(shap, leading, axis=1).tolist()
    names = np.array(columns, dtype=object)[leading].tolist()
    kinds = np.array(member_family, dtype=object)[leading].tolist()
    reasons, contributions = [], []
    for i, row in enumerate(rows):
        said = []
        for j, leader, up in zip(order[i], leaders[i], raising[i], strict=True):
            if not up or len(said) == top:  # the rest lower the risk
                break
            if text := sentence(families[j], leader, row):  # a family with nothing defensible gives way
                said.append(text)
        reasons.append(said)
        contributions.append([{"feature": name, "family": kind, "value": text, "contribution": size}
                              for name, kind, text, size in zip(names[i], kinds[i], texts[i], sizes[i], strict=True)])
    return Explanation(reasons, contributions, base)


class _Columns(dict):
    """Column values converted on first use: the model's inputs as the model saw them, the declarations' other
    fields, and nothing for a feature the model does not have (even where the declarations carry it)."""

    def __init__(self, context: pd.DataFrame, X: pd.DataFrame):
        super().__init__()
        self.context, self.X = context, X

    def __missing__(self, column: str) -> list | None:
        if column in self.X.columns:
            found = self.X[column].to_numpy().tolist()
        elif column in BY_NAME or column not in self.context.columns:
            found = None
        else:
            found = self.context[column].to_numpy().tolist()
        self[column] = found  # as a list: a row's value is then a Python object, as the one-row path reads it
        return found


class _Values:
    """One declaration given as plain values: the model's inputs (`values`, by column position), its integrated
    fields (`row`) for the rest, and nothing for a catalogue feature the model does not have (as `_Columns`)."""

    __slots__ = ("positions", "values", "row")

    def __init__(self, positions: dict[str, int], values: list, row: dict):
        self.positions, self.values, self.row = positions, values, row

    def get(self, column: str, default: object = None) -> object:
        j = self.positions.get(column)
        if j is not None:
            return self.values[j]
        return default if column in BY_NAME else self.row.get(column, default)


class _Row:
    """One declaration's values, read from the column arrays (no per-row dict of every column)."""

    __slots__ = ("columns", "i")

    def __init__(self, columns: _Columns, i: int):
        self.columns, self.i = columns, i

    def get(self, column: str, default: object = None) -> object:
        values = self.columns[column]
        return default if values is None else values[self.i]
