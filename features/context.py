"""The scoring context: what the warehouse knows, indexed once and reused by every batch and API call."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import pandas as pd

from features.build import bill_totals, empty_declarations, integrate, keyed
from features.prices import PriceBands
from features.profiles import ProfileIndex


@dataclass
class ScoringContext:
    manifests: pd.DataFrame | None  # indexed by bill_of_lading
    traders: pd.DataFrame | None  # indexed by importer_id
    bill_totals: pd.DataFrame
    known_ids: pd.Index  # unique declaration ids already stored
    history: pd.DataFrame  # integrated declarations
    profiles: ProfileIndex

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
        return PriceBands.fit(self.history)
