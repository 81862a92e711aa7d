"""Entity risk profiles as of each declaration's date, with no leakage.

A declaration filed on day d may use:
- the labels of controls that finished strictly before d (control_date < d);
- the filing of other declarations strictly before d (volume, first seen).

Rates are smoothed towards the global hit rate known at d (a Bayesian prior worth `PRIOR_WEIGHT` controls).
"""
from __future__ import annotations

import threading
from bisect import bisect_left
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from features.entities import ENTITIES, NAMES, entity_keys
from features.labels import labelled

NAN = float("nan")
PRIOR_WEIGHT = 5.0
RECENT_DAYS = 90
LABEL_LAG_DAYS = 1  # when a label has no control_date, it counts from this many days after filing
PROFILE_SUFFIXES = ("hit_rate", f"hit_rate_{RECENT_DAYS}d", "revenue_rate", "inspections", "volume",
                    f"volume_{RECENT_DAYS}d", "days_known")
PROFILE_COLUMNS = [f"{entity.name}_{suffix}" for entity in ENTITIES for suffix in PROFILE_SUFFIXES]


def profile_columns(names: tuple[str, ...] = NAMES) -> list[str]:
    """The profile columns of these entities, in PROFILE_COLUMNS' order for them."""
    return [f"{name}_{suffix}" for name in names for suffix in PROFILE_SUFFIXES]


def profile_entities(columns: list[str] | None) -> tuple[str, ...]:
    """The entities (in NAMES' order) whose profiles give at least one of `columns` (every entity for None): what a
    model's inputs need looked up, since a profile's lookups are shared by its columns."""
    if columns is None:
        return NAMES
    wanted = set(columns)
    return tuple(name for name in NAMES if any(c in wanted for c in profile_columns((name,))))


def to_seconds(times: np.ndarray) -> np.ndarray:
    """datetime64 → int64 seconds (profiles resolve time to the second; NaT sorts first)."""
    return np.asarray(times).astype("datetime64[s]").astype("int64")


NEVER = int(np.iinfo("int64").max)  # the first event of a key that has none
SORT_NEEDLES = 4096  # from this many queries up, sort them first: binary searches in order stay in cache


class _Totals:
    """Running totals of event values per key code, sorted by (code, time): each 'strictly before' lookup is
    one `searchsorted` over a composite (code, second) array, for a batch of a million rows or for one."""

    def __init__(self, codes: np.ndarray, times: np.ndarray, values: dict[str, np.ndarray]):
        kept = codes >= 0  # events of keys outside the vocabulary cannot be asked for
        codes, seconds = codes[kept].astype("int64"), to_seconds(times)[kept]
        self.lo, self.hi = (int(seconds.min()), int(seconds.max())) if len(seconds) else (0, 0)
        self.stride = self.hi - self.lo + 2  # query times are clipped into [lo, hi + 1]
        if (int(codes.max()) + 1 if len(codes) else 0) * self.stride >= 2**62:
            raise ValueError("profile history spans too many keys × seconds for the lookup index")
        order = np.lexsort((seconds, codes))
        self.codes = codes[order]
        self.composite = self.codes * self.stride + (seconds[order] - self.lo)
        frame = pd.DataFrame({name: v[kept][order] for name, v in values.items()})
        self.width = len(values)
        self.cumulative = frame.groupby(self.codes, sort=False).cumsum().to_numpy(dtype="float64")
        self.first_at = np.full(int(self.codes.max()) + 1 if len(self.codes) else 0, np.iinfo("int64").max)
        self.first_at[self.codes[::-1]] = seconds[order][::-1]  # each key's earliest event (last write wins)

    def first_seen(self, codes: np.ndarray) -> np.ndarray:
        """Each key's earliest event in seconds (int64 max when it has none)."""
        padded = np.append(self.first_at, np.iinfo("int64").max)  # the last slot answers unknown keys
        return padded[np.where((codes >= 0) & (codes < len(self.first_at)), codes, len(self.first_at))]

    def before(self, codes: np.ndarray, seconds: np.ndarray, shift_days: int = 0) -> np.ndarray:
        """For each query (key code, time), the running totals of its key's events strictly before time − shift
        (rows × values; zero when none)."""
        if not len(self.codes):
            return np.zeros((len(codes), self.width))
        at = np.clip(seconds - shift_days * 86_400, self.lo, self.hi + 1) - self.lo
        needles = np.maximum(codes, 0) * self.stride + at
        if len(needles) >= SORT_NEEDLES:
            order = np.argsort(needles)
            position = np.empty(len(needles), dtype="int64")
            position[order] = np.searchsorted(self.composite, needles[order], side="left") - 1
        else:
            position = np.searchsorted(self.composite, needles, side="left") - 1
        safe = np.maximum(position, 0)
        found = (codes >= 0) & (position >= 0) & (self.codes[safe] == codes)
        return np.where(found[:, None], self.cumulative[safe], 0.0)

    def before_sorted(self, codes: np.ndarray, seconds: np.ndarray, shift_days: int = 0,
                      first_only: bool = False) -> np.ndarray:
        """`before` for queries already in (code, time) order (unknown codes may lead), answered in that order:
        the binary searches walk the index forwards, and no query sort is paid per lookup. `first_only`: the first
        running total alone, as a vector."""
        if not len(self.codes):
            return np.zeros(len(codes)) if first_only else np.zeros((len(codes), self.width))
        at = np.clip(seconds - shift_days * 86_400, self.lo, self.hi + 1) - self.lo
        position = np.searchsorted(self.composite, np.maximum(codes, 0) * self.stride + at, side="left") - 1
        safe = np.maximum(position, 0)
        found = (codes >= 0) & (position >= 0) & (self.codes[safe] == codes)
        # `take` of whole rows (or of the one column) gathers 4 times faster than fancy-indexing a column slice
        values = np.take(self.cumulative[:, 0] if first_only else self.cumulative, safe, axis=0)
        if not found.all():
            values[~found] = 0.0
        return values

    def before_one(self, code: int, second: int, shift_days: int = 0) -> list[float]:
        """`before` for one query, in Python scalars (a one-row call pays no array setup)."""
        if code < 0 or not len(self.codes):
            return [0.0] * self.width
        at = min(max(second - shift_days * 86_400, self.lo), self.hi + 1) - self.lo
        # bisect over a memoryview: numpy's searchsorted lets go of the GIL, and under concurrent requests taking
        # it back costs a wait of up to the interpreter's switch interval (5 ms), 44 times a declaration
        position = bisect_left(self._scalars[0], code * self.stride + at) - 1
        if position < 0 or self._scalars[1][position] != code:
            return [0.0] * self.width
        return self.cumulative[position].tolist()

    @cached_property
    def _scalars(self) -> tuple[memoryview, memoryview]:
        """The composite keys and key codes as Python-indexable views (no copy)."""
        return memoryview(self.composite), memoryview(self.codes)

    def first_seen_one(self, code: int) -> int:
        """`first_seen` for one key code."""
        return int(self.first_at[code]) if 0 <= code < len(self.first_at) else NEVER


def _label_totals(history: pd.DataFrame, codes: np.ndarray) -> _Totals:
    """Running totals of controls (n), frauds and revenue per key, by the date each control ended."""
    rows = labelled(history)
    fraud = history["fraud"].fillna(0).astype("float64").to_numpy()
    revenue = history["revenue"].fillna(0).astype("float64").to_numpy() if "revenue" in history else np.zeros(len(history))
    return _Totals(codes[rows], history["control_date"].to_numpy()[rows],
                   {"n": np.ones(int(rows.sum())), "fraud": fraud[rows], "revenue": revenue[rows]})


def smoothed_rate(hits: np.ndarray, n: np.ndarray, prior: np.ndarray | float) -> np.ndarray:
    """A hit rate shrunk towards `prior` by PRIOR_WEIGHT pseudo-controls (the posterior mean of a Beta prior)."""
    return (hits + PRIOR_WEIGHT * prior) / (n + PRIOR_WEIGHT)


@dataclass
class _Entity:
    vocabulary: pd.Index  # key → code
    labels: _Totals
    filings: _Totals


class ProfileIndex:
    """Running totals of a history's labels and filings per entity, ready to describe any declaration as of its date.

    Built once per history snapshot; looking up a batch (or one declaration) is then a few binary searches per
    entity. `filings`: take volumes and first-seen dates from that index instead (the backtest's label-free
    index of every filing, shared by all policies), so only `history`'s labels are indexed here.
    """

    def __init__(self, history: pd.DataFrame, filings: ProfileIndex | None = None):
        assumed = history["declaration_date"] + pd.Timedelta(days=LABEL_LAG_DAYS)
        control = history["control_date"].fillna(assumed) if "control_date" in history else assumed
        self._history = history.assign(control_date=control)
        self._filings = filings
        self.global_labels = _label_totals(self._history, np.zeros(len(history), dtype="int64"))
        self._built: dict[str, _Entity | None] = {}
        self._lock = threading.Lock()

    def entities_of(self, names: tuple[str, ...]) -> dict[str, _Entity]:
        """The named entities' indexes, each built on its first use (the missing ones in one pass over the
        history): a scorer whose model reads three entities' profiles indexes those three. An entity the history
        cannot identify (its columns absent) has none."""
        if any(name not in self._built for name in names):
            with self._lock:  # the API's threads: one builds, the others wait for it
                missing = tuple(name for name in names if name not in self._built)
                if missing:
                    self._build(missing)
        return {name: entity for name in names if (entity := self._built[name]) is not None}

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}  # a lock does not pickle

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def _build(self, names: tuple[str, ...]) -> None:
        history = self._history
        keys = entity_keys(history, names)
        dates = history["declaration_date"].to_numpy()
        for name in names:
            key, entity = keys.get(name), None
            if key is not None and self._filings is not None:
                shared = self._filings.entities_of((name,)).get(name)
                if shared is not None:
                    labels = _label_totals(history, shared.vocabulary.get_indexer(key))
                    entity = _Entity(shared.vocabulary, labels, shared.filings)
            elif key is not None:
                vocabulary = pd.Index(pd.unique(key))
                codes = vocabulary.get_indexer(key)
                entity = _Entity(vocabulary, _label_totals(history, codes),
                                 _Totals(codes, dates, {"filings": np.ones(len(key))}))
            self._built[name] = entity

    def lookup(self, queries: pd.DataFrame, batch_first: dict[str, pd.Series] | None = None,
               names: tuple[str, ...] = NAMES) -> pd.DataFrame:
        """Profile features for each query row, from labels and filings strictly before its date. A key first
        filed in the batch is known from its earliest filing among `queries`, or, for queries that are a
        partition of a larger batch, from `batch_first` (`first_filings` of the whole batch). `names`: the
        entities to look up (`profile_columns(names)`; scoring asks only for those its model reads)."""
        block = self.lookup_keys(entity_keys(queries, names), to_seconds(queries["declaration_date"].to_numpy()),
                                 batch_first, names)
        return pd.DataFrame(block, columns=profile_columns(names), index=queries.index, copy=False)

    def lookup_keys(self, keys: dict[str, np.ndarray], q_seconds: np.ndarray,
                    batch_first: dict[str, pd.Series] | None = None, names: tuple[str, ...] = NAMES) -> np.ndarray:
        """`lookup` on entity keys (as `entity_keys` makes them) and filing times in seconds: rows ×
        `profile_columns(names)`."""
        n_queries = len(q_seconds)
        if n_queries >= SORT_NEEDLES:
            return self._lookup_sorted(keys, q_seconds, batch_first, names)
        g = self.global_labels.before(np.zeros(n_queries, dtype="int64"), q_seconds)
        # Before the first control ends nothing is known, not even the base rate: rates are then missing (NaN).
        known = g[:, 0] > 0
        prior_rate = np.where(known, g[:, 1] / np.maximum(g[:, 0], 1), np.nan)
        prior_revenue = np.where(known, g[:, 2] / np.maximum(g[:, 0], 1), np.nan)
        out = np.full((n_queries, len(names) * len(PROFILE_SUFFIXES)), np.nan)  # one block: no frame assembly
        entities = self.entities_of(names)
        for e, name in enumerate(names):
            if name not in keys or name not in entities:  # the entity cannot be identified: unknown profile
                continue
            entity, key = entities[name], keys[name]
            codes = _codes(entity.vocabulary, key)
            total, older = entity.labels.before(codes, q_seconds), entity.labels.before(codes, q_seconds, RECENT_DAYS)
            volume = entity.filings.before(codes, q_seconds)[:, 0]
            volume_old = entity.filings.before(codes, q_seconds, RECENT_DAYS)[:, 0]
            n, hits = total[:, 0], total[:, 1]
            in_batch = _batch_first(key, q_seconds) if batch_first is None else _first_of(batch_first[name], key)
            known_since = np.minimum(entity.filings.first_seen(codes), in_batch)
            out[:, e * len(PROFILE_SUFFIXES):(e + 1) * len(PROFILE_SUFFIXES)] = np.column_stack([
                smoothed_rate(hits, n, prior_rate),  # hit_rate
                smoothed_rate(hits - older[:, 1], n - older[:, 0], prior_rate),  # over the last RECENT_DAYS
                smoothed_rate(total[:, 2], n, prior_revenue),  # revenue_rate
                n, volume, volume - volume_old,  # inspections, volume, recent volume
                ((q_seconds - known_since) / 86_400).clip(min=0),  # days_known
            ])
        return out

    def _lookup_sorted(self, keys: dict[str, np.ndarray], q_seconds: np.ndarray,
                       batch_first: dict[str, pd.Series] | None, names: tuple[str, ...]) -> np.ndarray:
        """`lookup_keys` for a large batch, the same values computed in another order: the queries are sorted by
        time once, then per entity by key code (a stable radix pass keeps the time order within a key), and
        all four lookups of the entity (labels and filings, now and RECENT_DAYS earlier: clipping and shifting
        times keeps that order) walk their index forwards in that one order; each entity's columns are computed
        in it and written back once."""
        n_queries = len(q_seconds)
        by_time = np.argsort(q_seconds, kind="stable")
        seconds = q_seconds[by_time]
        g = self.global_labels.before_sorted(np.zeros(n_queries, dtype="int64"), seconds)
        known = g[:, 0] > 0  # rates before the first control ends are missing (NaN), as in `lookup_keys`
        prior_rate = np.empty(n_queries)
        prior_revenue = np.empty(n_queries)
        prior_rate[by_time] = np.where(known, g[:, 1] / np.maximum(g[:, 0], 1), np.nan)
        prior_revenue[by_time] = np.where(known, g[:, 2] / np.maximum(g[:, 0], 1), np.nan)
        # column-major: each entity's columns are scattered back one column at a time, and a column is then one
        # stretch of memory (twice as fast as rows 77 values apart); pandas keeps a frame's columns that way too
        out = np.full((n_queries, len(names) * len(PROFILE_SUFFIXES)), np.nan, order="F")
        entities = self.entities_of(names)
        for e, name in enumerate(names):
            if name not in keys or name not in entities:
                continue
            entity, key = entities[name], keys[name]
            codes = _codes(entity.vocabulary, key)
            order = _by_code(codes, by_time)
            codes, seconds = codes[order], q_seconds[order]
            total = entity.labels.before_sorted(codes, seconds)
            older = entity.labels.before_sorted(codes, seconds, RECENT_DAYS)
            volume = entity.filings.before_sorted(codes, seconds, first_only=True)
            volume_old = entity.filings.before_sorted(codes, seconds, RECENT_DAYS, first_only=True)
            n, hits = total[:, 0], total[:, 1]
            if batch_first is None:
                in_batch = _batch_first_sorted(key, order, codes, seconds)
            else:
                in_batch = _first_of(batch_first[name], key)[order]  # keys hash faster in their own order
            known_since = np.minimum(entity.filings.first_seen(codes), in_batch)
            rate, revenue = prior_rate[order], prior_revenue[order]
            columns = out[:, e * len(PROFILE_SUFFIXES):(e + 1) * len(PROFILE_SUFFIXES)]
            for c, values in enumerate((
                smoothed_rate(hits, n, rate),  # hit_rate
                smoothed_rate(hits - older[:, 1], n - older[:, 0], rate),  # over the last RECENT_DAYS
                smoothed_rate(total[:, 2], n, revenue),  # revenue_rate
                n, volume, volume - volume_old,  # inspections, volume, recent volume
                ((seconds - known_since) / 86_400).clip(min=0),  # days_known
            )):
                columns[order, c] = values
        return out

    def lookup_one(self, keys: dict[str, str], second: int, names: tuple[str, ...] = NAMES) -> list[float]:
        """`lookup_keys` for one query (entity keys as `entity_key` makes them, its filing time in seconds), in
        Python floats: the same values, without the array setup that costs a one-row call more than the lookups."""
        g_n, g_fraud, g_revenue = self.global_labels.before_one(0, second)
        prior_rate = g_fraud / max(g_n, 1) if g_n > 0 else NAN
        prior_revenue = g_revenue / max(g_n, 1) if g_n > 0 else NAN
        out = [NAN] * (len(names) * len(PROFILE_SUFFIXES))
        entities = self.entities_of(names)
        for e, name in enumerate(names):
            if name not in keys or name not in entities:
                continue
            entity, key = entities[name], keys[name]
            code = _code(entity.vocabulary, key)
            n, hits, revenue = entity.labels.before_one(code, second)
            old_n, old_hits, _ = entity.labels.before_one(code, second, RECENT_DAYS)
            volume = entity.filings.before_one(code, second)[0]
            volume_old = entity.filings.before_one(code, second, RECENT_DAYS)[0]
            known_since = min(entity.filings.first_seen_one(code), second)  # a batch of one: known from itself
            out[e * len(PROFILE_SUFFIXES):(e + 1) * len(PROFILE_SUFFIXES)] = [
                _smoothed(hits, n, prior_rate), _smoothed(hits - old_hits, n - old_n, prior_rate),
                _smoothed(revenue, n, prior_revenue), n, volume, volume - volume_old,
                max((second - known_since) / 86_400, 0.0),
            ]
        return out


def _smoothed(hits: float, n: float, prior: float) -> float:
    """`smoothed_rate` of Python floats."""
    return (hits + PRIOR_WEIGHT * prior) / (n + PRIOR_WEIGHT)


def _code(vocabulary: pd.Index, key: str) -> int:
    try:
        return int(vocabulary.get_loc(key))
    except KeyError:
        return -1


def _codes(vocabulary: pd.Index, keys: np.ndarray) -> np.ndarray:
    """Each key's position in the vocabulary (-1 when unknown); one key skips get_indexer's setup."""
    if len(keys) >= SORT_NEEDLES:
        return _indexer(vocabulary, keys)
    if len(keys) != 1:
        return vocabulary.get_indexer(keys)
    try:
        return np.array([vocabulary.get_loc(keys[0])])
    except KeyError:
        return np.array([-1])


def _indexer(index: pd.Index, keys: np.ndarray) -> np.ndarray:
    """`index.get_indexer(keys)`. Given an array, pandas first converts every key to the index's string dtype (3 to
    4 times the time of hashing it); an array of Python strings at least as long as the index goes as an object
    Index instead, hashed as it is, for the price of hashing the index's own keys once more."""
    if len(keys) >= len(index) and isinstance(keys, np.ndarray) and keys.dtype == object:
        target = pd.Index(keys, dtype=object, copy=False)
        if target.inferred_type == "string":  # (cached: get_indexer reads it again)
            return index.get_indexer(target)
    return index.get_indexer(keys)


def first_filings(frame: pd.DataFrame, names: tuple[str, ...] = NAMES) -> dict[str, pd.Series]:
    """Each entity key's earliest filing (seconds) among `frame`'s declarations: what `lookup` reads of a batch
    across its rows, computed once for a batch scored in partitions (for the entities `names`)."""
    seconds = pd.Series(to_seconds(frame["declaration_date"].to_numpy()))
    return {name: seconds.groupby(key, sort=False).min() for name, key in entity_keys(frame, names).items()}


def _first_of(first: pd.Series, key: np.ndarray) -> np.ndarray:
    """The batch's earliest filing of each key (every key of a partition is one of its batch's)."""
    position = _indexer(first.index, key) if len(key) >= SORT_NEEDLES else first.index.get_indexer(key)
    if (position < 0).any():
        raise ValueError("a partition's entity key is missing from its batch's first filings")
    return first.to_numpy()[position]


def _by_code(codes: np.ndarray, by_time: np.ndarray) -> np.ndarray:
    """`by_time` (a permutation of the queries in time order) stably re-sorted by key code, unknown keys (−1)
    first: a least-significant-digit radix sort on 16-bit digits, one pass per digit the codes use."""
    digits = codes[by_time] + 1
    order, top, shift = by_time, int(digits.max()) if len(digits) else 0, 0
    while True:
        step = np.argsort(((digits >> shift) & 0xFFFF).astype(np.uint16), kind="stable")
        order, shift = order[step], shift + 16
        if top >> shift == 0:
            return order
        digits = digits[step]


def _batch_first_sorted(key: np.ndarray, order: np.ndarray, codes: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    """`_batch_first` of the queries in `order`, given their codes in that order (grouped, unknown ones first)."""
    starts = np.flatnonzero(np.concatenate(([True], codes[1:] != codes[:-1])))
    first = np.repeat(np.minimum.reduceat(seconds, starts), np.diff(np.append(starts, len(codes))))
    unknown = int(np.searchsorted(codes, 0))  # keys outside the vocabulary: grouped by the key itself
    if unknown:
        first[:unknown] = _batch_first(key[order[:unknown]], seconds[:unknown])
    return first


def _batch_first(key: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    """Each query's earliest date among the queries with the same key (a new entity is known from its first filing)."""
    if len(key) <= 1:
        return seconds
    codes, _ = pd.factorize(key)
    return pd.Series(seconds).groupby(codes).transform("min").to_numpy()
