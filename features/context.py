"""The scoring context: what the warehouse knows, indexed once and reused by every batch and API call."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from features.build import bill_totals, empty_declarations, integrate, keyed
from features.prices import PriceBands
from features.profiles import ProfileIndex, first_filings


@dataclass
class ScoringContext:
    manifests: pd.DataFrame | None  # indexed by bill_of_lading
    traders: pd.DataFrame | None  # indexed by importer_id
    bill_totals: pd.DataFrame
    known_ids: pd.Index  # unique declaration ids already stored
    history: pd.DataFrame  # integrated declarations
    profiles: ProfileIndex  # or any index with its `lookup` (features/warehouse/profile_store.py ProfileStore)
    bands: Callable[[], PriceBands] | None = None  # the history's price bands, where `history` does not hold it

    @classmethod
    def from_tables(cls, declarations: pd.DataFrame, manifests: pd.DataFrame, traders: pd.DataFrame) -> ScoringContext:
        if declarations.empty:
            declarations = empty_declarations()
        history = integrate(declarations, manifests, traders)
        return cls(manifests=keyed(manifests, "bill_of_lading"), traders=keyed(traders, "importer_id"),
                   bill_totals=bill_totals(declarations), known_ids=pd.Index(declarations["declaration_id"].unique()),
                   history=history, profiles=ProfileIndex(history))

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
