"""The scoring context: what the warehouse knows, indexed once and reused by every batch and API call."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import numpy as np
import pandas as pd

from features.build import bill_totals, empty_declarations, integrate, keyed
from features.entities import NAMES
from features.novelty import NoveltyIndex
from features.prices import PriceBands
from features.profiles import ProfileIndex, first_filings


class NoveltyLookup(Protocol):
    """features/novelty.py NoveltyIndex, or a store of the same lookups (features/warehouse/novelty_store.py)."""

    def lookup(self, rows: pd.DataFrame) -> pd.DataFrame: ...


class Records:
    """One table's rows by its unique index, a row's fields read without building a Series: the index's hash
    table finds the position, each field's array gives the value (missing values as None)."""

    def __init__(self, table: pd.DataFrame | None):
        self.index = None if table is None else table.index
        self.arrays = {} if table is None else {c: table[c].array for c in table.columns}

    def get(self, key: object, fields: list[str]) -> dict:
        if self.index is None or key is None:
            return {}
        try:
            position = self.index.get_loc(key)
        except (KeyError, TypeError):
            return {}
        found = {}
        for f in fields:
            if f in self.arrays:
                value = self.arrays[f][position]
                found[f] = None if value is None or value is pd.NA or value is pd.NaT or value != value else value
        return found


@dataclass
class ScoringContext:
    manifests: pd.DataFrame | None  # indexed by bill_of_lading
    traders: pd.DataFrame | None  # indexed by importer_id
    bill_totals: pd.DataFrame
    known_ids: pd.Index  # unique declaration ids already stored
    history: pd.DataFrame  # integrated declarations
    profiles: ProfileIndex  # or any index with its `lookup` (features/warehouse/profile_store.py ProfileStore)
    bands: Callable[[], PriceBands] | None = None  # the history's price bands, where `history` does not hold it
    # the history's novelty lookups (features/warehouse/novelty_store.py), where `history` does not hold it
    novelty_of: Callable[[], NoveltyLookup] | None = None

    @classmethod
    def from_tables(cls, declarations: pd.DataFrame, manifests: pd.DataFrame, traders: pd.DataFrame) -> ScoringContext:
        if declarations.empty:
            declarations = empty_declarations()
        totals = bill_totals(declarations)
        history = integrate(declarations, manifests, traders, totals=totals)
        return cls(manifests=keyed(manifests, "bill_of_lading"), traders=keyed(traders, "importer_id"),
                   bill_totals=totals, known_ids=pd.Index(declarations["declaration_id"].unique()),
                   history=history, profiles=ProfileIndex(history))

    @property
    def has_novelty(self) -> bool:
        """Whether the novelty signals can be looked up: a history in pandas, or a store of it."""
        return len(self.history) > 0 or self.novelty_of is not None

    @cached_property
    def novelty(self) -> NoveltyLookup:
        """The history's filings as novelty lookups (targeted exploration reads them; built on first use)."""
        return self.novelty_of() if self.novelty_of is not None else NoveltyIndex(self.history)

    @cached_property
    def records(self) -> dict[str, Records]:
        """The manifests, the registry and the bill-of-lading totals as one-key lookups (the one-row path's)."""
        return {"manifests": Records(self.manifests), "traders": Records(self.traders),
                "bill_totals": Records(self.bill_totals)}

    def index_rows(self, names: tuple[str, ...] = NAMES) -> ScoringContext:
        """Build now the hash tables the one-row path looks up in (pandas builds an index's on its first lookup:
        ~250 ms at a million rows, which the first real-time call would otherwise pay), and the profile indexes
        of the entities `names` (the scorer's model's: another entity's is built on its first lookup)."""
        indexes = [r.index for r in self.records.values() if r.index is not None] + [self.known_ids]
        if isinstance(self.profiles, ProfileIndex):
            indexes += [e.vocabulary for e in self.profiles.entities_of(names).values()]
        for index in indexes:
            if len(index):
                index.get_indexer(index[:1])
        return self

    def known(self, declaration_id: object) -> bool:
        """Whether the warehouse holds this declaration id."""
        return declaration_id in self.known_ids

    @cached_property
    def price_bands(self) -> PriceBands:
        """Bands fitted on the whole history: for a model that carries none of its own."""
        return self.bands() if self.bands is not None else PriceBands.fit(self.history)


@dataclass
class BatchState:
    """What scoring a batch reads across its rows: the bill-of-lading totals of its declarations the warehouse does
    not hold yet, and each entity key's earliest filing in it. A partition scored with its whole batch's state gets
    the features it gets in the whole batch, so scoring in partitions gives the same bytes."""

    bill_totals: pd.DataFrame  # per bill of lading: bl_net_mass_kg, bl_items of the batch's new declarations
    first_filed: dict[str, pd.Series]  # entity → key → earliest filing in the batch (seconds)

    @classmethod
    def of(cls, declarations: pd.DataFrame, stored: np.ndarray) -> BatchState:
        """The state of a batch of canonical declarations held whole; `stored`: which of them the warehouse holds.
        serving/partition_run.py settles the same tables over a file's chunks."""
        return cls(bill_totals=bill_totals(declarations[~stored]), first_filed=first_filings(declarations))
