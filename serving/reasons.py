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
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from string import Formatter

import numpy as np
import pandas as pd
import pyarrow as pa
from catboost import Pool

from features.catalogue import BY_NAME, family_of, is_extra
from features.entities import BY_NAME as ENTITY_BY_NAME
from features.entities import HS_LEVELS, MISSING, hs_dotted, hs_prefix
from features.profiles import PROFILE_SUFFIXES, RECENT_DAYS
from features.warehouse.decisions import LIST_TYPES
from training.explainer import shap_values
from training.models import RiskModel

TOP_REASONS = 3
TOP_CONTRIBUTIONS = 12  # features kept per explained decision, strongest (by size) first
PART_ROWS = 16_384  # rows explained at a time in a large batch (`explanations`)
# The value family's amounts (a `log_` feature is quoted as its amount): what each is, and its value as text.
AMOUNTS = {"declared_value": ("declared value", "{:,.0f}".format), "net_mass_kg": ("net mass", "{:,.0f} kg".format),
           "quantity": ("quantity", "{:,.0f}".format), "duty_paid": ("duty paid", "{:,.0f}".format),
           "tax_rate": ("duty rate", lambda rate: f"{100 * rate:.4g}%")}
RECORD = ("hit_rate", f"hit_rate_{RECENT_DAYS}d", "revenue_rate", "inspections")  # what the entity's controls found


def _present(value: object) -> object:
    """A value of the declaration or of the model's input, None when missing (a categorical gap included)."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, str):
        return None if value == MISSING else value
    return None if isinstance(value, float) and value != value else value  # NaN is unequal to itself


def _presented(values: np.ndarray | list) -> list:
    """`_present` of each value: a column (an array, a column at a time) or a few rows' values (a list)."""
    if isinstance(values, list):
        return [_present(v) for v in values]
    if values.dtype.kind in "iub":
        return values.tolist()
    missing = np.isnan(values) if values.dtype.kind == "f" else pd.isna(values)
    if values.dtype == object:  # a categorical gap (compared where a value is present: pandas' NA has no truth)
        missing[~missing] = values[~missing] == MISSING
    out = values.astype(object)
    out[missing] = None
    return out.tolist()


class _Table:
    """The explained rows' values a column at a time, read when first quoted and then kept: `read(column)` gives
    every row's value (None for a column a sentence may not quote: a catalogue feature the model does not have), and
    a missing value reads as None. `said` gives what a sentence quotes of the declaration: its entity columns ("?"
    when missing), its HS levels and its dotted HS code."""

    def __init__(self, n: int, read: Callable[[str], np.ndarray | list | None]):
        self.n, self.read = n, read
        self.columns: dict[str, list] = {}
        self.quoted: dict[str, list] = {}

    @classmethod
    def of(cls, row: dict) -> _Table:
        """One declaration's table: its fields (a dict)."""
        return cls(1, lambda column: [row.get(column)])

    def __getitem__(self, column: str) -> list:
        found = self.columns.get(column)
        if found is None:
            values = self.read(column)
            found = self.columns[column] = [None] * self.n if values is None else _presented(values)
        return found

    def said(self, key: str) -> list:
        found = self.quoted.get(key)
        if found is None:
            if key in HS_LEVELS or key == "hs_dotted":
                shown: dict[object, str] = {}  # each code's text once
                make = hs_dotted if key == "hs_dotted" else (lambda hs: hs_prefix(hs, key))
                found = [shown[v] if v in shown else shown.setdefault(v, make(str("" if v is None else v)))
                         for v in self["hs_code"]]
            else:
                found = ["?" if v is None else v for v in self[key]]
            self.quoted[key] = found
        return found

    def labels(self, template: str, rows: list[int]) -> list[str]:
        """An entity's label (features/entities.py: a template of the columns `said` gives) for each of `rows`."""
        columns = {field: self.said(field) for _, field, _, _ in Formatter().parse(template) if field}
        return [template.format_map({field: values[i] for field, values in columns.items()}) for i in rows]


def _or(value: object, default: object) -> object:
    return default if value is None else value


def _many(n: float, what: str) -> str:
    return f"{int(n):,} {what}{'' if int(n) == 1 else 's'}"


def entity_named(entity: str, row: dict) -> str:
    """An entity's label for one declaration (a dict), as its reasons name it: "?" for a missing column."""
    return _Table.of(row).labels(ENTITY_BY_NAME[entity].label, [0])[0]


def sentence(family: str, strongest: str, row: dict) -> str | None:
    """One readable reason for a feature family, from its `strongest` feature's value on the declaration `row`
    (`_sentences` for one row)."""
    return _sentences(family, strongest, _Table.of(row), [0])[0]


UNCHECKED_PRICE = "unit price cannot be checked against a reference (no net mass or no price band)"


def _sentences(family: str, strongest: str, table: _Table, rows: list[int]) -> list[str | None]:
    """One readable reason for a feature family for each of `rows`, from its `strongest` feature's value there.

    `table` gives the model's inputs and the declarations' other fields, never a feature the model lacks (see
    `_Table`), so a sentence quotes only what the model saw. None: nothing defensible to say."""
    if family == "price":
        price, reference = table["log_unit_price"], table["price_reference_log"]
        hs, origin = table.said("hs_dotted"), table.said("origin_country")
        out = []
        for i in rows:
            deviation = _or(price[i], math.nan) - _or(reference[i], math.nan)
            out.append(UNCHECKED_PRICE if deviation != deviation else  # NaN: unequal to itself
                       f"unit price {abs(math.expm1(deviation)):.0%} {'below' if deviation < 0 else 'above'} the HS "
                       f"{hs[i]} reference for origin {origin[i]}")
        return out
    if family == "manifest":
        lading = table["bill_of_lading"]
        if strongest == "bl_items":
            items = table["bl_items"]
            return ["no bill of lading declared" if items[i] is None else
                    f"bill of lading {_or(lading[i], '?')} carries {_many(items[i], 'declared item')}" for i in rows]
        ratio = table["manifest_mass_ratio"]
        return ["no manifest gross weight to check the declared net mass against" if ratio[i] is None else
                f"manifest gross weight is {ratio[i]:.2f}× the net mass declared on bill of lading "
                f"{_or(lading[i], '?')}" for i in rows]
    if family == "route":
        return _route(strongest, table, rows)
    if family == "registry":
        return _registry(strongest, table, rows)
    if family == "value":
        what, shown = AMOUNTS.get(strongest.removeprefix("log_"), (strongest, str))
        amounts, logged = table[strongest], strongest.startswith("log_")
        return [f"no {what} declared" if amounts[i] is None else
                f"{what} {shown(math.expm1(amounts[i]) if logged else amounts[i])}" for i in rows]
    if family.startswith("entity:"):
        return _entity(family.split(":", 1)[1], strongest, table, rows)
    if family == "office":
        office = table.said("office_id")
        return [f"entry through office {office[i]}" for i in rows]
    values = table[family]
    if is_extra(family):  # a column the mapping added: its own name and value
        what = family.split("_", 1)[1].replace("_", " ")
        return [f"{what} {_or(values[i], 'not given')}" for i in rows]
    return [f"{family} = {_or(values[i], '(missing)')}" for i in rows]


def _entity(entity: str, strongest: str, table: _Table, rows: list[int]) -> list[str | None]:
    """An entity's reason: the entity itself for its raw id (CatBoost's own statistics of it), else its profile."""
    described = ENTITY_BY_NAME[entity]
    noun, who = described.noun, dict(zip(rows, table.labels(described.label, rows), strict=True))
    suffix = strongest.removeprefix(f"{entity}_")
    value = table[strongest]
    if suffix not in PROFILE_SUFFIXES:  # the raw id (importer_id, hs_code, origin_country, hs_chapter...)
        return [f"no {noun} declared: the model's learned risk where it is missing" if value[i] is None else
                f"{who[i]}: the model's learned risk for this {noun}" for i in rows]
    out: list[str | None] = []
    if suffix in RECORD:  # a record of controls: said only over the controls it counts
        controls, rate = table[f"{entity}_inspections"], table[f"{entity}_hit_rate"]
        for i in rows:
            found, count = value[i], controls[i]
            if found is None or count is None:  # an entity the profiles cannot identify: nothing known to quote
                out.append(None)
            elif count == 0:
                out.append(f"{who[i]} has no earlier controls")
            elif suffix == "revenue_rate":
                out.append(f"{who[i]}'s controls recovered {found:,.0f} on average over {_many(count, 'control')}")
            elif suffix == f"hit_rate_{RECENT_DAYS}d":
                out.append(f"{who[i]}'s hit rate {found:.0%} over the last {RECENT_DAYS} days "
                           f"({_many(count, 'control')} in all)")
            else:
                out.append(f"{who[i]}'s hit rate {rate[i]:.0%} over {_many(count, 'control')}" if rate[i] is not None
                           else f"{who[i]} has {_many(count, 'earlier control')}")
        return out
    if suffix == f"volume_{RECENT_DAYS}d":
        return [None if value[i] is None else f"{who[i]}: {_many(value[i], 'filing')} in the last {RECENT_DAYS} days"
                for i in rows]
    days, volume = table[f"{entity}_days_known"], table[f"{entity}_volume"]
    for i in rows:
        if value[i] is None:
            out.append(None)
            continue
        known = ([f"first seen {_many(days[i], 'day')} ago"] if days[i] is not None else []) + \
            ([_many(volume[i], "earlier filing")] if volume[i] is not None else [])
        out.append(f"{who[i]}: {', '.join(known)}")
    return out


REGISTRY_WORDS = {"aeo_certified": "AEO status", "company_age_days": "registration date"}


def _registry(strongest: str, table: _Table, rows: list[int]) -> list[str]:
    if strongest in ("credit_rating", "credit_rating_rank"):
        rating = table["credit_rating"]
        return [f"importer's credit rating is {rating[i]}" if rating[i] else "importer's credit rating: not on record"
                for i in rows]
    values, out = table[strongest], []
    for i in rows:
        value = values[i]
        if value is None:
            out.append(f"importer's {REGISTRY_WORDS.get(strongest, strongest.replace('_', ' '))}: not on record")
        elif strongest == "aeo_certified":
            out.append("importer is AEO-certified" if value == 1 else "importer is not AEO-certified")
        elif strongest == "prior_violations":
            out.append(f"importer has {_many(value, 'prior violation')}")
        elif strongest == "company_age_days":
            out.append(f"importer registered {_many(value, 'day')} before filing")
        else:
            out.append(f"importer's {strongest.replace('_', ' ')} is {value}")
    return out


def _route(strongest: str, table: _Table, rows: list[int]) -> list[str]:
    origin = table.said("origin_country")
    if strongest in ("loading_country", "loading_mismatch"):
        loading, mismatch = table["loading_country"], table["loading_mismatch"]
        return ["no port of loading on the manifest" if loading[i] is None else f"loaded in {loading[i]}" +
                (f" although the declared origin is {origin[i]}" if mismatch[i] == 1 else "") for i in rows]
    if strongest in ("transshipped", "transshipment_count"):
        moved, ports = table["transshipped"], table["transshipment_ports"]
        return ["no manifest route to check" if moved[i] is None else
                f"transshipped via {_or(ports[i], 'a hub')}" if moved[i] == 1 else "shipped without transshipment"
                for i in rows]
    if strongest == "carrier":
        carrier = table["carrier"]
        return [f"carried by {_or(carrier[i], 'an unknown carrier')}" for i in rows]
    departure, mismatch, mode = table["departure_country"], table["departure_mismatch"], table["transport_mode"]
    return [f"departed from {departure[i]} although the declared origin is {origin[i]}"
            if strongest == "departure_mismatch" and mismatch[i] == 1 else
            f"shipped from {departure[i] or 'an undeclared country'} by {_or(mode[i], 'an undeclared mode')}"
            for i in rows]


CONTRIBUTIONS_TYPE = LIST_TYPES["contributions"]  # the decision log's column: a list of (feature, family, value, contribution)


@dataclass(frozen=True)
class TopContributions:
    """Each explained row's `top_contributions` features of largest |SHAP| (log-odds), strongest first, as columns
    (rows × top): the model's column numbers (`features`, naming `columns` of `families`), the model's input as text
    (None when missing) and the contribution. Read as dicts (`rows`) or as the decision log's Arrow column (`arrow`):
    a large batch's contributions never become a Python object each."""

    columns: list[str]
    families: list[str]
    features: np.ndarray  # integers
    texts: np.ndarray  # objects: text or None
    sizes: np.ndarray  # floats

    @classmethod
    def none(cls) -> TopContributions:
        return cls([], [], np.zeros((0, 0), dtype=np.intp), np.zeros((0, 0), dtype=object), np.zeros((0, 0)))

    @classmethod
    def joined(cls, parts: list[TopContributions]) -> TopContributions:
        """The parts' rows, in order (parts of the same model)."""
        return cls(parts[0].columns, parts[0].families, *(np.concatenate([getattr(p, a) for p in parts])
                                                          for a in ("features", "texts", "sizes")))

    def __len__(self) -> int:
        return len(self.features)

    def rows(self) -> list[list[dict]]:
        """Each row's contributions as {"feature", "family", "value", "contribution"}."""
        if not len(self):
            return []
        flat = self.features.ravel()
        dicts = [{"feature": name, "family": family, "value": text, "contribution": size} for name, family, text, size
                 in zip(np.array(self.columns, dtype=object)[flat].tolist(),
                        np.array(self.families, dtype=object)[flat].tolist(), self.texts.ravel().tolist(),
                        self.sizes.ravel().tolist(), strict=True)]
        top = self.features.shape[1]
        return [dicts[start:start + top] for start in range(0, len(dicts), top)]

    def arrow(self, at: np.ndarray, n: int) -> pa.ListArray:
        """The decision log's contributions column (CONTRIBUTIONS_TYPE) of `n` rows: these rows' at the increasing
        positions `at`, null at the others."""
        top = self.features.shape[1] if len(self) else 0
        counts = np.zeros(n, dtype=np.int64)
        counts[at] = top
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        flat = pa.array(self.features.ravel().astype(np.int32))
        named = lambda words: pa.DictionaryArray.from_arrays(flat, pa.array(words, pa.string())).cast(pa.string())  # noqa: E731
        items = pa.StructArray.from_arrays(
            [named(self.columns), named(self.families), pa.array(self.texts.ravel(), pa.string()),
             pa.array(self.sizes.ravel(), pa.float64())], fields=list(CONTRIBUTIONS_TYPE.value_type))
        missing = np.ones(n, dtype=bool)
        missing[at] = False
        return pa.ListArray.from_arrays(pa.array(offsets), items, type=CONTRIBUTIONS_TYPE, mask=pa.array(missing))


@dataclass(frozen=True)
class Explanation:
    """What one SHAP pass says about each explained row, in row order."""

    reasons: list[list[str]]  # sentences raising the risk, strongest first (one family each)
    top: TopContributions  # the strongest feature contributions
    base: float  # the SHAP base value (log-odds): base + every feature's contribution = logit(risk)

    @classmethod
    def none(cls) -> Explanation:
        return cls([], TopContributions.none(), math.nan)

    @property
    def contributions(self) -> list[list[dict]]:
        """Each row's strongest feature contributions, as {"feature", "family", "value" (the model's input as text,
        None when missing), "contribution"}."""
        return self.top.rows()


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
    """Each row's reasons (`explain`) and its strongest feature contributions, from one SHAP pass over X's pool.

    Many rows are explained PART_ROWS at a time, the next part's SHAP values computed on another thread while this
    part's sentences are made (CatBoost and numpy let go of the GIL): a row's SHAP values are its own
    (training/explainer.py), so its reasons are the same in any part."""
    if X.empty:
        return Explanation.none()
    pool = model.pool(X)
    if len(X) <= PART_ROWS:
        return _explained_part(model, shap_values(model.classifier, pool), X, context, top, top_contributions)
    starts = range(0, len(X), PART_ROWS)
    parts = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="aduana-shap") as background:
        def shap_of(start: int) -> Future:
            rows = list(range(start, min(start + PART_ROWS, len(X))))
            return background.submit(shap_values, model.classifier, pool.slice(rows))

        coming = shap_of(0)
        for start in starts:
            shap = coming.result()
            if start + PART_ROWS < len(X):
                coming = shap_of(start + PART_ROWS)
            end = start + PART_ROWS
            parts.append(_explained_part(model, shap, X.iloc[start:end], context.iloc[start:end], top,
                                         top_contributions))
    return Explanation([r for part in parts for r in part.reasons], TopContributions.joined([p.top for p in parts]),
                       parts[0].base)


def _explained_part(model: RiskModel, shap: np.ndarray, X: pd.DataFrame, context: pd.DataFrame, top: int,
                    top_contributions: int) -> Explanation:
    """`explanations` of rows whose SHAP values are `shap`."""
    leading = _leading(shap, top_contributions)

    def read(column: str) -> np.ndarray | None:  # the model's inputs as the model saw them, else the declarations'
        if column in X.columns:
            return X[column].to_numpy()
        return None if column in BY_NAME or column not in context.columns else context[column].to_numpy()

    return _explained(model, shap, leading, _Table(len(X), read), _texts(model, X, leading), top)


def _texts(model: RiskModel, X: pd.DataFrame, leading: np.ndarray) -> np.ndarray:
    """`feature_value_text` of each row's leading features' inputs (rows x leading), a column at a time: each
    column's cells that some row shows, gathered (in the column's own storage: text stays Arrow's), and each of their
    distinct values converted once."""
    n, k = leading.shape
    flat = leading.ravel()
    cells = np.argsort(flat, kind="stable")  # the cells grouped by the feature they show
    features, starts = np.unique(flat[cells], return_index=True)
    out = np.empty(n * k, dtype=object)
    for j, start, end in zip(features.tolist(), starts.tolist(), [*starts[1:].tolist(), n * k], strict=True):
        at, column = cells[start:end], X[model.columns[j]]
        gathered = column.to_numpy()[at // k] if isinstance(column.dtype, np.dtype) else column.array.take(at // k)
        codes, distinct = pd.factorize(gathered, use_na_sentinel=False)
        if distinct.dtype == np.float64:
            shown = [None if v != v else f"{v:.6g}" for v in distinct.tolist()]  # NaN: the value unequal to itself
        else:
            shown = [feature_value_text(v) for v in distinct.tolist()]
        out[at] = np.array(shown, dtype=object)[codes]
    return out.reshape(n, k)


def explain_values(model: RiskModel, pool: Pool, values: list[list], rows: list[dict], top: int = TOP_REASONS,
                   top_contributions: int = TOP_CONTRIBUTIONS) -> Explanation:
    """`explanations` for rows given as plain lists (`values`, the model's inputs in its column order, and `pool`,
    their pool) with their integrated declarations (`rows`): the one-row path's, with no frame."""
    if not values:
        return Explanation.none()
    shap = shap_values(model.classifier, pool)
    positions = {c: j for j, c in enumerate(model.columns)}

    def read(column: str) -> list | None:  # as `explanations` reads a frame's
        j = positions.get(column)
        if j is not None:
            return [v[j] for v in values]
        return None if column in BY_NAME else [r.get(column) for r in rows]

    leading = _leading(shap, top_contributions)
    texts = np.empty(leading.shape, dtype=object)
    texts[:] = [[feature_value_text(row[j]) for j in features]
                for row, features in zip(values, leading.tolist(), strict=True)]
    return _explained(model, shap, leading, _Table(len(values), read), texts, top)


def _leading(shap: np.ndarray, top_contributions: int) -> np.ndarray:
    """Each row's `top_contributions` features of largest |SHAP|, strongest first."""
    return np.argsort(-np.abs(shap[:, :-1]), axis=1, kind="stable")[:, :top_contributions]


def _explained(model: RiskModel, shap: np.ndarray, leading: np.ndarray, table: _Table,
               texts: np.ndarray, top: int) -> Explanation:
    """The reasons and contributions of SHAP values (`shap`, with the base value last); `table` reads the rows'
    values for the sentences, `texts[i, k]` is row i's input to its k-th leading feature as text."""
    base, shap = float(shap[0, -1]), shap[:, :-1]
    columns = model.columns
    member_family, families, members, names = _grouped(tuple(columns))
    by_family = np.column_stack([shap[:, m].sum(axis=1) for m in members])  # rows × families
    strongest = np.column_stack([m[np.argmax(shap[:, m], axis=1)] for m in members])  # the leading feature
    # Per row, the families that raise its risk by their sum, strongest first, with their leading feature (as Python
    # lists: indexing numpy a cell at a time costs more than the sentences)
    order = np.argsort(-by_family, axis=1, kind="stable")
    raising = (np.take_along_axis(by_family, order, axis=1) > 0).sum(axis=1).tolist()
    leaders = names[np.take_along_axis(strongest, order, axis=1)].tolist()
    reasons = _reasons(families, order.tolist(), leaders, raising, table, top)
    top_contributions = TopContributions(list(columns), member_family, leading, texts,
                                         np.take_along_axis(shap, leading, axis=1))
    return Explanation(reasons, top_contributions, base)


@lru_cache(maxsize=8)
def _grouped(columns: tuple[str, ...]) -> tuple[list[str], list[str], list[np.ndarray], np.ndarray]:
    """A model's columns by family, worked out once per model rather than per call (an API call explains one
    declaration): each column's family, the families in order, each one's column positions, and the columns' names
    as an array to index."""
    member_family = [family_of(c) for c in columns]
    families = list(dict.fromkeys(member_family))
    members = [np.flatnonzero(np.array(member_family) == f) for f in families]
    return member_family, families, members, np.array(columns, dtype=object)


def _reasons(families: list[str], order: list[list[int]], leaders: list[list[str]], raising: list[int],
             table: _Table, top: int) -> list[list[str]]:
    """Each row's first `top` sentences (one per family) among its families that raise its risk (`order[i]`, the
    first `raising[i]` of them; a family with nothing defensible to say gives way to the next). The sentences are
    made a family and leading feature at a time, for every row that asks for one, in rounds: a row asks for as many
    as it lacks, and again only where one of them had nothing to say."""
    reasons: list[list[str]] = [[] for _ in order]
    asked = [0] * len(order)  # each row's candidates asked for so far
    active = range(len(order))
    while active:
        wanted: dict[tuple[int, str], list[int]] = {}  # a family and its leading feature → the rows asking
        asks = []
        for i in active:
            k = asked[i]
            end = min(k + top - len(reasons[i]), raising[i])
            mine = []
            for j, leader in zip(order[i][k:end], leaders[i][k:end], strict=True):
                rows = wanted.setdefault((j, leader), [])
                mine.append(((j, leader), len(rows)))
                rows.append(i)
            asked[i] = end
            asks.append((i, mine))
        said = {key: _sentences(families[key[0]], key[1], table, rows) for key, rows in wanted.items()}
        again = []
        for i, mine in asks:
            for key, at in mine:
                if text := said[key][at]:
                    reasons[i].append(text)
            if len(reasons[i]) < top and asked[i] < raising[i]:
                again.append(i)
        active = again
    return reasons
