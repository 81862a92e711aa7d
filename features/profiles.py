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
LABEL_LAG_DAYS = 1  # when a label has no control_date, it counts from this many days after filing
PROFILE_SUFFIXES = ("hit_rate", f"hit_rate_{RECENT_DAYS}d", "revenue_rate", "inspections", "volume",
                    f"volume_{RECENT_DAYS}d", "days_known")
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


def _cumulate(events: pd.DataFrame, values: list[str]) -> _Totals:
    """Running totals of event values per key, by time: the index a query is looked up in."""
    totals = events.groupby(["key", "time"], sort=False)[values].sum().reset_index().sort_values("time", kind="stable")
    totals[values] = totals.groupby("key", sort=False)[values].cumsum()
    return _Totals(totals, values)


SMALL_QUERY = 256  # up to this many rows, look keys up one by one instead of merging whole tables


class _Totals:
    """Running totals per key (a sorted table for batch merges, per-key arrays for small lookups)."""

    def __init__(self, table: pd.DataFrame, values: list[str]):
        self.table, self.values = table, values
        self._by_key: dict | None = None

    def by_key(self) -> dict:
        if self._by_key is None:
            self._by_key = {k: (g["time"].to_numpy(), g[self.values].to_numpy())
                            for k, g in self.table.groupby("key", sort=False)}
        return self._by_key


def _before(totals: _Totals, keys: np.ndarray, times: np.ndarray, values: list[str],
            shift_days: int = 0) -> dict[str, np.ndarray]:
    """For each query (key, time), the running totals of events with the same key strictly before time - shift."""
    times = times - np.timedelta64(shift_days, "D")
    if len(keys) <= SMALL_QUERY:
        columns = [totals.values.index(v) for v in values]
        out = np.zeros((len(keys), len(values)))
        index = totals.by_key()
        for i, (key, when) in enumerate(zip(keys, times, strict=True)):
            found = index.get(key)
            if found is not None:
                position = np.searchsorted(found[0], when, side="left") - 1
                if position >= 0:
                    out[i] = found[1][position, columns]
        return {v: out[:, j] for j, v in enumerate(values)}
    q = pd.DataFrame({"key": keys, "time": times, "position": np.arange(len(keys))})
    merged = pd.merge_asof(q.sort_values("time", kind="stable"), totals.table[["key", "time", *values]], on="time",
                           by="key", allow_exact_matches=False, direction="backward")
    merged = merged.sort_values("position")
    return {v: merged[v].fillna(0.0).to_numpy() for v in values}


def _label_events(history: pd.DataFrame, key: np.ndarray) -> pd.DataFrame:
    labelled = history["inspected"].fillna(0).to_numpy() == 1
    fraud = history["fraud"].fillna(0).astype("float64").to_numpy()
    revenue = history["revenue"].fillna(0).astype("float64").to_numpy() if "revenue" in history else np.zeros(len(history))
    return pd.DataFrame({"key": key[labelled], "time": history["control_date"].to_numpy()[labelled],
                         "n": 1.0, "fraud": fraud[labelled], "revenue": revenue[labelled]})


def _smoothed(hits: np.ndarray, n: np.ndarray, prior: np.ndarray) -> np.ndarray:
    return (hits + PRIOR_WEIGHT * prior) / (n + PRIOR_WEIGHT)


class ProfileIndex:
    """Running totals of a history's labels and filings per entity, ready to describe any declaration as of its date.

    Built once per history snapshot; looking up a batch (or one declaration) is then a merge per entity.
    """

    def __init__(self, history: pd.DataFrame):
        assumed = history["declaration_date"] + pd.Timedelta(days=LABEL_LAG_DAYS)
        control = history["control_date"].fillna(assumed) if "control_date" in history else assumed
        history = history.assign(control_date=control)
        keys = entity_keys(history)
        self.global_labels = _cumulate(_label_events(history, np.full(len(history), "all", dtype=object)),
                                       ["n", "fraud", "revenue"])
        self.entities: dict[str, tuple[_Totals, _Totals, pd.Series]] = {}
        dates = history["declaration_date"].to_numpy()
        for name in keys.columns:
            key = keys[name].to_numpy()
            labels = _cumulate(_label_events(history, key), ["n", "fraud", "revenue"])
            filings = _cumulate(pd.DataFrame({"key": key, "time": dates, "filings": 1.0}), ["filings"])
            first_seen = pd.Series(dates).groupby(key).min()
            self.entities[name] = (labels, filings, first_seen)

    def lookup(self, queries: pd.DataFrame) -> pd.DataFrame:
        """Profile features for each query row, from labels and filings strictly before its date."""
        q_time = queries["declaration_date"].to_numpy()
        q_keys = entity_keys(queries)
        g = _before(self.global_labels, np.full(len(queries), "all", dtype=object), q_time, ["n", "fraud", "revenue"])
        # Before the first control ends nothing is known, not even the base rate: rates are then missing (NaN).
        known = g["n"] > 0
        prior_rate = np.where(known, g["fraud"] / np.maximum(g["n"], 1), np.nan)
        prior_revenue = np.where(known, g["revenue"] / np.maximum(g["n"], 1), np.nan)
        out = {}
        for name in ENTITIES:
            if name not in q_keys or name not in self.entities:  # the entity cannot be identified: unknown profile
                for suffix in PROFILE_SUFFIXES:
                    out[f"{name}_{suffix}"] = np.full(len(queries), np.nan)
                continue
            labels, filings, first_seen = self.entities[name]
            key = q_keys[name].to_numpy()
            total = _before(labels, key, q_time, ["n", "fraud", "revenue"])
            older = _before(labels, key, q_time, ["n", "fraud"], shift_days=RECENT_DAYS)
            volume = _before(filings, key, q_time, ["filings"])["filings"]
            volume_old = _before(filings, key, q_time, ["filings"], shift_days=RECENT_DAYS)["filings"]
            n, hits = total["n"], total["fraud"]
            recent_n, recent_hits = n - older["n"], hits - older["fraud"]
            own_first = pd.Series(q_time).groupby(key).transform("min").to_numpy()
            known_since = np.fmin(first_seen.reindex(key).to_numpy(), own_first)
            out[f"{name}_hit_rate"] = _smoothed(hits, n, prior_rate)
            out[f"{name}_hit_rate_{RECENT_DAYS}d"] = _smoothed(recent_hits, recent_n, prior_rate)
            out[f"{name}_revenue_rate"] = _smoothed(total["revenue"], n, prior_revenue)
            out[f"{name}_inspections"] = n
            out[f"{name}_volume"] = volume
            out[f"{name}_volume_{RECENT_DAYS}d"] = volume - volume_old
            out[f"{name}_days_known"] = ((q_time - known_since) / np.timedelta64(1, "D")).clip(min=0)
        return pd.DataFrame(out, index=queries.index)


def build_profiles(history: pd.DataFrame, queries: pd.DataFrame) -> pd.DataFrame:
    """Profile features for `queries` from `history` (in training both are the same frame)."""
    return ProfileIndex(history).lookup(queries)
