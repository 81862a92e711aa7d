"""Entity risk profiles as of each declaration's date, with no leakage.

A declaration filed on day d may use:
- the labels of controls that finished strictly before d (control_date < d);
- the filing of other declarations strictly before d (volume, first seen).

Rates are smoothed towards the global hit rate known at d (a Bayesian prior worth `PRIOR_WEIGHT` controls).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

PRIOR_WEIGHT = 5.0
RECENT_DAYS = 90
LABEL_LAG_DAYS = 1
PROFILE_SUFFIXES = ("hit_rate", f"hit_rate_{RECENT_DAYS}d", "revenue_rate", "inspections", "volume",
                    f"volume_{RECENT_DAYS}d", "days_known")  # when a label has no control_date, it counts from this many days after filing
MISSING = "__missing__"

# Entity name → the columns that identify it.
ENTITIES: dict[str, tuple[str, ...]] = {
    "importer": ("importer_id",),
    "declarant": ("declarant_id",),
    "exporter": ("exporter_id",),
    "hs_chapter": ("hs_chapter",),
    "hs_heading": ("hs_heading",),
    "hs_subheading": ("hs_subheading",),
    "origin": ("origin_country",),
    "lane": ("origin_country", "office_id"),
}


def entity_keys(frame: pd.DataFrame) -> pd.DataFrame:
    """One string key column per entity whose columns are present (missing values share one key)."""
    hs = frame["hs_code"].astype("str")
    parts = frame.assign(hs_chapter=hs.str[:2], hs_heading=hs.str[:4], hs_subheading=hs.str[:6])
    keys = {}
    for name, columns in ENTITIES.items():
        if all(c in parts.columns for c in columns):
            key = parts[columns[0]].astype("str").fillna(MISSING)
            for c in columns[1:]:
                key = key + "|" + parts[c].astype("str").fillna(MISSING)
            keys[name] = key.to_numpy()
    return pd.DataFrame(keys, index=frame.index)


def _cumulative_before(events: pd.DataFrame, queries: pd.DataFrame, values: list[str], shift_days: int = 0) -> pd.DataFrame:
    """For each query (key, time), the sum of event values with the same key and event time < time - shift."""
    events = events.groupby(["key", "time"], sort=False)[values].sum().reset_index().sort_values("time", kind="stable")
    events[values] = events.groupby("key", sort=False)[values].cumsum()
    q = pd.DataFrame({"key": queries["key"].to_numpy(), "time": queries["time"].to_numpy() - np.timedelta64(shift_days, "D"),
                      "position": np.arange(len(queries))}).sort_values("time", kind="stable")
    merged = pd.merge_asof(q, events, on="time", by="key", allow_exact_matches=False, direction="backward")
    return merged.sort_values("position")[values].fillna(0.0).reset_index(drop=True)


def _label_events(history: pd.DataFrame, key: np.ndarray) -> pd.DataFrame:
    labelled = history["inspected"].fillna(0).to_numpy() == 1
    fraud = history["fraud"].fillna(0).astype("float64").to_numpy()
    revenue = history["revenue"].fillna(0).astype("float64").to_numpy() if "revenue" in history else np.zeros(len(history))
    return pd.DataFrame({"key": key[labelled], "time": history["control_date"].to_numpy()[labelled],
                         "n": 1.0, "fraud": fraud[labelled], "revenue": revenue[labelled]})


def _smoothed(hits: np.ndarray, n: np.ndarray, prior: np.ndarray) -> np.ndarray:
    return (hits + PRIOR_WEIGHT * prior) / (n + PRIOR_WEIGHT)


def build_profiles(history: pd.DataFrame, queries: pd.DataFrame) -> pd.DataFrame:
    """Profile features for each query row, from the history's labels and filings strictly before its date.

    `history` holds past (possibly labelled) declarations; `queries` the declarations to describe. In
    training both are the same frame; in scoring, history is the warehouse and queries the new batch.
    """
    assumed = history["declaration_date"] + pd.Timedelta(days=LABEL_LAG_DAYS)
    history = history.assign(control_date=history["control_date"].fillna(assumed) if "control_date" in history else assumed)
    q_time = queries["declaration_date"].to_numpy()
    h_keys, q_keys = entity_keys(history), entity_keys(queries)
    out = {}
    # The global prior, itself as of each date.
    glob_h = np.full(len(history), "all", dtype=object)
    glob_q = pd.DataFrame({"key": np.full(len(queries), "all", dtype=object), "time": q_time})
    label_events = _label_events(history, glob_h)
    g = _cumulative_before(label_events, glob_q, ["n", "fraud", "revenue"])
    # Before the first control ends nothing is known, not even the base rate: rates are then missing (NaN).
    prior_rate = np.where(g["n"] > 0, g["fraud"] / g["n"].clip(lower=1), np.nan)
    prior_revenue = np.where(g["n"] > 0, g["revenue"] / g["n"].clip(lower=1), np.nan)
    filings = pd.DataFrame({"time": history["declaration_date"].to_numpy(), "filings": 1.0})
    for name in ENTITIES:
        if name not in q_keys or name not in h_keys:  # the entity cannot be identified: its profile is unknown
            for suffix in PROFILE_SUFFIXES:
                out[f"{name}_{suffix}"] = np.full(len(queries), np.nan)
            continue
        qk = pd.DataFrame({"key": q_keys[name].to_numpy(), "time": q_time})
        labels = _label_events(history, h_keys[name].to_numpy())
        filed = filings.assign(key=h_keys[name].to_numpy())
        total = _cumulative_before(labels, qk, ["n", "fraud", "revenue"])
        older = _cumulative_before(labels, qk, ["n", "fraud"], shift_days=RECENT_DAYS)
        volume = _cumulative_before(filed, qk, ["filings"])["filings"].to_numpy()
        volume_old = _cumulative_before(filed, qk, ["filings"], shift_days=RECENT_DAYS)["filings"].to_numpy()
        n, hits = total["n"].to_numpy(), total["fraud"].to_numpy()
        recent_n, recent_hits = n - older["n"].to_numpy(), hits - older["fraud"].to_numpy()
        first_seen = pd.concat([pd.Series(h_keys[name].to_numpy()), pd.Series(q_keys[name].to_numpy())])
        first_date = pd.Series(
            np.concatenate([history["declaration_date"].to_numpy(), q_time])
        ).groupby(first_seen.to_numpy()).min()
        known_since = first_date.reindex(q_keys[name].to_numpy()).to_numpy()
        out[f"{name}_hit_rate"] = _smoothed(hits, n, prior_rate)
        out[f"{name}_hit_rate_{RECENT_DAYS}d"] = _smoothed(recent_hits, recent_n, prior_rate)
        out[f"{name}_revenue_rate"] = _smoothed(total["revenue"].to_numpy(), n, prior_revenue)
        out[f"{name}_inspections"] = n
        out[f"{name}_volume"] = volume
        out[f"{name}_volume_{RECENT_DAYS}d"] = volume - volume_old
        out[f"{name}_days_known"] = ((q_time - known_since) / np.timedelta64(1, "D")).clip(min=0)
    return pd.DataFrame(out, index=queries.index)
