"""The feature set: one risk profile per declaration, from declarations, manifests and the trader registry.

Pure pandas. `integrate` joins the three sources; `build_features` adds value signals, manifest checks,
registry attributes and entity profiles, and returns the matrix with its hash.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features import catalogue
from features.contract import CANONICAL_DTYPES, LABEL_FIELDS, field_types
from features.entities import MISSING
from features.intake.mapping import EXTRA_CATEGORICAL_PREFIX, EXTRA_NUMERIC_PREFIX
from features.intake.text import text_chunks
from features.prices import PriceBands
from features.profiles import ProfileIndex, profile_entities
from features.progress import Advance, quiet
from features.signals import SIGNALS, Inputs

if TYPE_CHECKING:
    from features.context import ScoringContext

PROFILE_GROUPS = ("profiles", "pair_profiles")  # their columns come in the order the profile index gives
MONOTONE_INCREASING = ("undervaluation_depth",)  # deeper under the price band never lowers risk
# Canonical and joined columns the models take as they are.
PASSTHROUGH = ("importer_id", "declarant_id", "exporter_id", "hs_code", "origin_country", "office_id", "transport_mode",
               "departure_country", "carrier", "credit_rating", "sector", "tax_rate", "duty_paid", "aeo_certified",
               "prior_violations", "bl_items", "declared_value", "net_mass_kg", "quantity")


@dataclass
class FeatureSet:
    X: pd.DataFrame  # model input, one row per declaration
    meta: pd.DataFrame  # declaration_id, declaration_date and labels, aligned with X
    categorical: list[str]
    numeric: list[str]
    price_bands: PriceBands = field(default_factory=PriceBands)
    price_reference_log: pd.Series | None = None  # each row's band median, for readable reasons
    reference_columns: list[str] = field(default_factory=list)  # the mapped columns present in the data

    @property
    def columns(self) -> list[str]:
        return self.categorical + self.numeric

    def model_columns(self, groups: tuple[str, ...]) -> list[str]:
        """The engineered model's inputs: the declaration group, the mapping's extras and `groups`."""
        keep = {"declaration", *groups}
        return [c for c in self.columns if catalogue.group_of(c) in keep]

    @cached_property
    def data_hash(self) -> str:
        """A hash of the feature matrix (computed when asked: training logs it, scoring does not need it)."""
        return feature_hash(self.X)


def bill_totals(declarations: pd.DataFrame) -> pd.DataFrame:
    """Declared net mass and item count per bill of lading, the bills in order of first appearance (read by key:
    not sorted, which took a third of the time), each bill's mass summed in row order."""
    if "bill_of_lading" not in declarations:
        return pd.DataFrame(columns=["bl_net_mass_kg", "bl_items"])
    mass = declarations["net_mass_kg"] if "net_mass_kg" in declarations else pd.Series(np.nan, index=declarations.index)
    grouped = mass.groupby(declarations["bill_of_lading"], sort=False)
    return pd.DataFrame({"bl_net_mass_kg": grouped.sum(min_count=1), "bl_items": grouped.size()})


MANIFEST_FIELDS = ["port_of_loading", "transshipment_ports", "gross_weight_kg", "carrier"]
REGISTRY_FIELDS = ["registration_date", "aeo_certified", "credit_rating", "prior_violations", "sector"]


def _lookup(frame: pd.DataFrame, table: pd.DataFrame | None, key: str, fields: list[str]) -> pd.DataFrame:
    """Left-join `fields` of `table` (indexed by `key`) onto `frame` by `key`."""
    if table is None or table.empty or key not in frame:
        return frame
    found = table[[f for f in fields if f in table.columns]]
    at = positions(found.index, frame[key])
    return pd.concat([frame, pd.DataFrame({c: pd.api.extensions.take(found[c].array, at, allow_fill=True)
                                           for c in found.columns}, index=frame.index)], axis=1)


def positions(index: pd.Index, keys: pd.Series) -> np.ndarray:
    """Each key's position in the unique `index`, -1 where it is absent (`Index.get_indexer`). Text on both sides,
    at least as many keys as the index holds values, is matched by Arrow's hash join, without a Python string per
    value; fewer keys go to pandas' own, whose hash table of the index is built on its first lookup and kept with
    the index: the partitions of a batch and the API's small batches look up the same history's index again and
    again (100k keys against 526k values: 37 ms, against Arrow's 127 ms that hashes the index on every call)."""
    within, found = text_chunks(index), text_chunks(keys)
    if not (within and found) or len(keys) < len(index):
        return index.get_indexer(keys)
    found = pa.chunked_array(found)
    value_set = pa.chunked_array(within).combine_chunks().cast(found.type)
    return pc.index_in(found, value_set=value_set).fill_null(-1).to_numpy().astype(np.intp)


def integrate(declarations: pd.DataFrame, manifests: pd.DataFrame | None = None,
              traders: pd.DataFrame | None = None, context: ScoringContext | None = None,
              batch_totals: pd.DataFrame | None = None, totals: pd.DataFrame | None = None) -> pd.DataFrame:
    """Join each declaration to its bill of lading and its importer's registry record.

    With a `context` (the warehouse snapshot), bill-of-lading totals also count the items already stored, so a
    declaration gets the same features whether it arrives in a batch or alone. `batch_totals`: the new items'
    totals of the whole batch these declarations are a partition of (features/context.py `BatchState`), instead
    of their own. `totals`: the declarations' own `bill_totals`, where the caller has them already.
    """
    frame = declarations.copy()
    totals = bill_totals(frame) if totals is None else totals
    if context is not None:
        manifests, traders = context.manifests, context.traders
        added = batch_totals if batch_totals is not None else \
            bill_totals(frame[context.known_ids.get_indexer(frame["declaration_id"]) < 0])  # its items not stored yet
        totals = context.bill_totals.reindex(totals.index).add(added.reindex(totals.index), fill_value=0)
    else:
        manifests = keyed(manifests, "bill_of_lading")
        traders = keyed(traders, "importer_id")
    if "bill_of_lading" in frame and len(totals):
        frame = frame.join(totals, on="bill_of_lading")
    frame = _lookup(frame, manifests, "bill_of_lading", MANIFEST_FIELDS)
    return _lookup(frame, traders, "importer_id", REGISTRY_FIELDS)


def empty_declarations() -> pd.DataFrame:
    """A declarations frame with no rows and the contract's dtypes (a warehouse with no history yet)."""
    return pd.DataFrame({c: pd.Series(dtype=CANONICAL_DTYPES[t]) for c, t in field_types("declarations").items()})


def keyed(table: pd.DataFrame | None, key: str) -> pd.DataFrame | None:
    if table is None or table.empty or key not in table:
        return None
    return table.drop_duplicates(key, keep="last").set_index(key)


def feature_hash(X: pd.DataFrame) -> str:
    digest = hashlib.sha256(",".join(X.columns).encode())
    digest.update(pd.util.hash_pandas_object(X, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def build_features(frame: pd.DataFrame, history: pd.DataFrame | None = None,
                   bands: PriceBands | None = None, profiles: ProfileIndex | None = None,
                   advance: Advance = quiet, batch_first: dict[str, pd.Series] | None = None,
                   columns: list[str] | None = None) -> FeatureSet:
    """Build the model's feature matrix for `frame` (integrated declarations).

    `history`: past declarations whose labels and filings feed the entity profiles (default: `frame` itself,
    as in training), or `profiles` already indexed from it. `bands`: price reference bands (default: fitted
    on the history). `advance` is told of each of its parts as it is built. `batch_first`: each entity key's
    earliest filing in the whole batch `frame` is a partition of (features/context.py `BatchState`). `columns`:
    the features a scorer reads (its model's); entity profiles that give none of them are left out (default:
    every feature, as training needs).
    """
    frame = frame.reset_index(drop=True)
    history = frame if history is None else history
    extra_cat = sorted(c for c in frame.columns if c.startswith(EXTRA_CATEGORICAL_PREFIX))
    extra_num = sorted(c for c in frame.columns if c.startswith(EXTRA_NUMERIC_PREFIX))
    passthrough = [c for c in PASSTHROUGH if c in frame] + extra_cat + extra_num  # absent ones become NaN below
    what, total = f"features for {len(frame):,} declarations", len(SIGNALS) + 2  # the history's indexes, each part
    advance(what, 0, total, label="started")
    inputs = Inputs(PriceBands.fit(history) if bands is None else bands, profiles or ProfileIndex(history), batch_first,
                    profile_entities(columns))
    advance(what, 1, total, label="history indexed (price bands, entity profiles)")
    parts = []
    for done, signal in enumerate(SIGNALS, start=2):
        parts.append(signal.batch(frame, inputs))
        advance(what, done, total, label=f"{signal.name} signals")
    parts.append(pd.DataFrame({f.name: f.batch(frame) for f in catalogue.computed()}, index=frame.index))
    advance(what, total, total, label="catalogue features")
    # one concat, not a join per part: a one-row API call pays per pandas operation
    X = pd.concat([*parts, frame[passthrough]], axis=1)
    categorical, numeric = column_order(list(X.columns))
    reference = X["price_reference_log"]
    X = _model_dtypes(X.reindex(columns=categorical + numeric), categorical)  # absent sources → NaN columns
    meta = feature_meta(frame)
    mapped = [c for c in catalogue.REFERENCE_COLUMNS if c in frame] + extra_cat + extra_num
    return FeatureSet(X=X, meta=meta, categorical=categorical, numeric=numeric, price_bands=inputs.bands,
                      price_reference_log=reference, reference_columns=mapped)


def feature_meta(frame: pd.DataFrame) -> pd.DataFrame:
    """What a feature set keeps of each row beside its features: its id, date and labels."""
    return frame[["declaration_id", "declaration_date", *[c for c in LABEL_FIELDS if c in frame]]].reset_index(drop=True)


def column_order(columns: list[str]) -> tuple[list[str], list[str]]:
    """(categorical, numeric) model columns in the feature matrix's order: every catalogue feature in catalogue
    order, the entity profiles present in `columns` in the order the profile index gives them, then the
    mapping's extras present in `columns`."""
    extra_cat = sorted(c for c in columns if c.startswith(EXTRA_CATEGORICAL_PREFIX))
    extra_num = sorted(c for c in columns if c.startswith(EXTRA_NUMERIC_PREFIX))
    base_categorical = catalogue.columns(categorical=True)
    base_numeric = [c for c in catalogue.columns(categorical=False) if catalogue.group_of(c) not in PROFILE_GROUPS]
    known = {*base_categorical, *base_numeric, *extra_cat, *extra_num, "price_reference_log"}
    profile_columns = [c for c in columns if c not in known]
    return base_categorical + extra_cat, base_numeric + profile_columns + extra_num


def _model_dtypes(X: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    """Categoricals as str with a sentinel for missing (CatBoost refuses NaN there); numerics as float64."""
    for column in X.columns:
        if column in categorical:
            X[column] = X[column].astype("str").fillna(MISSING)
        elif X[column].dtype != "float64":
            X[column] = pd.to_numeric(X[column], errors="coerce").astype("float64")
    return X
