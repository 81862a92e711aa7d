"""One declaration's features in plain Python: the real-time API's path.

`integrate` + `build_features` pay about 20 ms of pandas overhead for a single row, more than the model and
the HTTP round trip together. This computes the same values for one declaration in canonical fields (and a
mapping's extras) from the same warehouse snapshot; tests/integration/test_scoring.py proves the two agree value
for value, edge values included (a unit price that underflows to 0 or overflows to inf is missing on both).
The API scores every declaration of a request this way, each as if it came alone.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from features import catalogue
from features.build import (
    LOG_COLUMNS,
    MANIFEST_FIELDS,
    PASSTHROUGH,
    REGISTRY_FIELDS,
)
from features.context import ScoringContext
from features.intake.mapping import EXTRA_CATEGORICAL_PREFIX, EXTRA_NUMERIC_PREFIX
from features.prices import PriceBands, log_ratio
from features.profiles import ENTITIES, MISSING, PROFILE_COLUMNS, to_seconds

NAN = float("nan")


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


def _number(value: object) -> float:
    return NAN if _missing(value) else float(value)


def _record(table: pd.DataFrame | None, key: object, fields: list[str]) -> dict:
    """`fields` of the row of `table` (uniquely indexed) at `key`; missing values as None."""
    if table is None or _missing(key):
        return {}
    try:
        position = table.index.get_loc(key)
    except KeyError:
        return {}
    return {f: (None if _missing(v := table[f].iat[position]) else v) for f in fields if f in table.columns}


def _add(a: float, b: float) -> float:
    """a + b where a missing side counts as zero, missing only when both are (pandas' add with fill_value=0)."""
    return NAN if math.isnan(a) and math.isnan(b) else (0.0 if math.isnan(a) else a) + (0.0 if math.isnan(b) else b)


def integrate_row(declaration: dict, context: ScoringContext) -> dict:
    """`integrate` for one declaration: its bill of lading's totals (stored items plus itself when new), its
    manifest and its importer's registry record."""
    row = {k: (None if _missing(v) else v) for k, v in declaration.items()}
    bl = row.get("bill_of_lading")
    if bl is not None:
        stored = _record(context.bill_totals, bl, ["bl_net_mass_kg", "bl_items"])
        mass, items = _number(stored.get("bl_net_mass_kg")), _number(stored.get("bl_items"))
        if context.known_ids.get_indexer([row["declaration_id"]])[0] < 0:  # not stored yet: it counts itself
            mass, items = _add(mass, _number(row.get("net_mass_kg"))), _add(items, 1.0)
        row.update(bl_net_mass_kg=mass, bl_items=items)
    row.update(_record(context.manifests, bl, MANIFEST_FIELDS))
    row.update(_record(context.traders, row.get("importer_id"), REGISTRY_FIELDS))
    return row


def _finite(x: float) -> float:
    return x if math.isfinite(x) else NAN


def row_features(row: dict, bands: PriceBands, context: ScoringContext) -> dict:
    """`build_features` for one integrated declaration (from `integrate_row`): every model input by name
    (categoricals as text, `MISSING` when absent; numerics as float), plus `price_reference_log` for reasons."""
    hs, origin = str(row["hs_code"]), row["origin_country"]
    value, mass = _number(row.get("declared_value")), _number(row.get("net_mass_kg"))
    lup = log_ratio(value, mass)
    median, mad, band_rows = bands.lookup_one(hs[:6], origin)
    deviation = lup - median
    pol, route, departure = row.get("port_of_loading"), row.get("transshipment_ports"), row.get("departure_country")
    declared, gross = _number(row.get("bl_net_mass_kg")), _number(row.get("gross_weight_kg"))
    registered = row.get("registration_date")
    features = {
        "hs_chapter": hs[:2], "log_unit_price": lup, "price_reference_log": median,
        "undervaluation_depth": NAN if math.isnan(deviation) else max(-deviation, 0.0),
        "overvaluation_depth": NAN if math.isnan(deviation) else max(deviation, 0.0),
        "unit_price_zscore": deviation / (1.4826 * mad + 0.05), "price_band_rows": 0.0 if math.isnan(band_rows) else band_rows,
        "loading_country": pol[:2] if pol is not None else None,
        "loading_mismatch": NAN if pol is None else float(pol[:2] != origin),
        "departure_mismatch": NAN if departure is None else float(departure != origin),
        "transshipped": NAN if pol is None else float(route is not None),
        "transshipment_count": float(route.count(";") + 1) if route is not None else 0.0,
        "manifest_mass_ratio": _finite(gross / declared) if declared > 0 else NAN,
        "company_age_days": NAN if registered is None else float((pd.Timestamp(row["declaration_date"]) - registered).days),
    }
    features.update({f.name: f.one(row) for f in catalogue.computed()})
    categorical = set(catalogue.columns(categorical=True))
    for column in LOG_COLUMNS:
        features[f"log_{column}"] = math.log1p(max(v, 0.0)) if not math.isnan(v := _number(row.get(column))) else NAN
    for column in PASSTHROUGH:
        value = row.get(column)
        features[column] = (None if value is None else str(value)) if column in categorical else _number(value)
    for column, value in row.items():  # a mapping's extras, as build_features passes them through
        if column.startswith(EXTRA_CATEGORICAL_PREFIX):
            features[column] = MISSING if value is None else str(value)
        elif column.startswith(EXTRA_NUMERIC_PREFIX):
            features[column] = _number(value)
    keys = {name: np.array(["|".join(_text(row, c, hs) for c in columns)], dtype=object) for name, columns in ENTITIES.items()}
    when = to_seconds(np.array([np.datetime64(pd.Timestamp(row["declaration_date"]), "us")]))
    features.update(zip(PROFILE_COLUMNS, context.profiles.lookup_keys(keys, when)[0].tolist(), strict=True))
    return {k: (MISSING if v is None else v) if k in categorical else v for k, v in features.items()}


def _text(row: dict, column: str, hs: str) -> str:
    """An entity key part as `entity_keys` writes it."""
    if column.startswith("hs_"):
        return hs[:{"hs_chapter": 2, "hs_heading": 4, "hs_subheading": 6}[column]]
    value = row.get(column)
    return MISSING if value is None else str(value)
