"""One declaration's features in plain Python: the real-time API's path.

`integrate` + `build_features` pay about 20 ms of pandas overhead for a single row, more than the model and
the HTTP round trip together. This computes the same values for one declaration in canonical fields (and a
mapping's extras) from the same warehouse snapshot; tests/integration/test_scorer.py proves the two agree value
for value, edge values included (a unit price that underflows to 0 or overflows to inf is missing on both).
The API scores every declaration of a request this way, each as if it came alone.
"""
from __future__ import annotations

import math

import pandas as pd

from features import catalogue
from features.build import MANIFEST_FIELDS, PASSTHROUGH, REGISTRY_FIELDS
from features.context import ScoringContext
from features.entities import MISSING, NAMES
from features.intake.mapping import EXTRA_CATEGORICAL_PREFIX, EXTRA_NUMERIC_PREFIX
from features.prices import PriceBands
from features.signals import SIGNALS, Inputs, number

NAN = float("nan")


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


def _add(a: float, b: float) -> float:
    """a + b where a missing side counts as zero, missing only when both are (pandas' add with fill_value=0)."""
    return NAN if math.isnan(a) and math.isnan(b) else (0.0 if math.isnan(a) else a) + (0.0 if math.isnan(b) else b)


def integrate_row(declaration: dict, context: ScoringContext) -> dict:
    """`integrate` for one declaration: its bill of lading's totals (stored items plus itself when new), its
    manifest and its importer's registry record."""
    row = {k: (None if _missing(v) else v) for k, v in declaration.items()}
    records = context.records
    bl = row.get("bill_of_lading")
    if bl is not None:
        stored = records["bill_totals"].get(bl, ["bl_net_mass_kg", "bl_items"])
        mass, items = number(stored.get("bl_net_mass_kg")), number(stored.get("bl_items"))
        if not context.known(row["declaration_id"]):  # not stored yet: it counts itself
            mass, items = _add(mass, number(row.get("net_mass_kg"))), _add(items, 1.0)
        row.update(bl_net_mass_kg=mass, bl_items=items)
    row.update(records["manifests"].get(bl, MANIFEST_FIELDS))
    row.update(records["traders"].get(row.get("importer_id"), REGISTRY_FIELDS))
    return row


def row_features(row: dict, bands: PriceBands, context: ScoringContext, names: tuple[str, ...] = NAMES) -> dict:
    """`build_features` for one integrated declaration (from `integrate_row`): every model input by name
    (categoricals as text, `MISSING` when absent; numerics as float), plus `price_reference_log` for reasons.
    `names`: the entities whose profiles are looked up (`build_features`' `columns` as `profile_entities` reads
    them)."""
    inputs = Inputs(bands, context.profiles, names=names)
    categorical = set(catalogue.columns(categorical=True))
    features = {}
    for signal in SIGNALS:
        features.update(signal.one(row, inputs))
    for f in catalogue.computed():
        features[f.name] = f.one(row)
    for column in PASSTHROUGH:
        value = row.get(column)
        features[column] = (None if value is None else str(value)) if column in categorical else number(value)
    for column, value in row.items():  # a mapping's extras, as build_features passes them through
        if column.startswith(EXTRA_CATEGORICAL_PREFIX):
            features[column] = MISSING if value is None else str(value)
        elif column.startswith(EXTRA_NUMERIC_PREFIX):
            features[column] = number(value)
    for column in categorical:
        if features.get(column, MISSING) is None:
            features[column] = MISSING
    return features
