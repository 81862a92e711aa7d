"""The entity risk ratings as computed: each ratings list (`aduana ratings`, and the audit flow's enterprise ratings)
is kept (append-only), so the analysts' page and later reviews read the ratings that were published, with when,
on what threshold, and beside which audit list."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from features.warehouse.warehouse import Warehouse

RATINGS_DDL = """
CREATE TABLE IF NOT EXISTS ratings (
    list_id VARCHAR NOT NULL, entity VARCHAR NOT NULL, key_columns VARCHAR NOT NULL, min_controls BIGINT NOT NULL,
    audit_list_id VARCHAR, rated_at TIMESTAMP NOT NULL, rank BIGINT NOT NULL, entity_key VARCHAR NOT NULL,
    band VARCHAR, hit_rate DOUBLE, interval_low DOUBLE, interval_high DOUBLE, controls BIGINT, hits BIGINT,
    volume BIGINT, why VARCHAR)
"""
# entity_key: the rated entity's key values joined by KEY_JOIN in key_columns' order (a lane: 'CN → CO-CTG').
RATED_COLUMNS = ["band", "hit_rate", "interval_low", "interval_high", "controls", "hits", "volume", "why"]
STORED_COLUMNS = ["list_id", "entity", "key_columns", "min_controls", "audit_list_id", "rated_at", "rank",
                  "entity_key", *RATED_COLUMNS]
KEY_JOIN = " → "


class Ratings:
    """The ratings lists of one warehouse (`warehouse.ratings`)."""

    def __init__(self, warehouse: Warehouse):
        self.warehouse = warehouse

    def record(self, rated: pd.DataFrame, entity: str, keys: list[str], min_controls: int,
               audit_list_id: str | None = None) -> str | None:
        """Append one ratings list (serving/entity_ratings.py `entity_ratings`, best first, its key columns as columns) in one
        transaction; returns its id (None for an empty list: nothing is stored)."""
        if rated.empty:
            return None
        at = datetime.now(UTC).replace(tzinfo=None)
        list_id = f"ratings-{at:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
        key = rated[keys[0]].astype("str")
        for column in keys[1:]:
            key = key + KEY_JOIN + rated[column].astype("str")
        rows = rated.reindex(columns=RATED_COLUMNS).assign(
            list_id=list_id, entity=entity, key_columns=KEY_JOIN.join(keys), min_controls=min_controls,
            audit_list_id=audit_list_id, rated_at=at, rank=range(1, len(rated) + 1), entity_key=key.to_numpy())
        rows = rows.astype({"audit_list_id": "object", "band": "str", "why": "str"})
        self.warehouse.append("ratings", rows[STORED_COLUMNS])
        return list_id

    def latest(self) -> pd.DataFrame:
        """The most recent list of each rated entity kind, by entity then rank (empty before the first)."""
        if not self.warehouse.counts()["ratings"]:  # no warehouse, no table yet, or no list
            return pd.DataFrame(columns=STORED_COLUMNS)
        with self.warehouse.connect(read_only=True) as con:
            return con.execute(
                "SELECT * FROM ratings WHERE list_id IN (SELECT list_id FROM ratings QUALIFY row_number() OVER "
                "(PARTITION BY entity ORDER BY rated_at DESC, list_id DESC) = 1) ORDER BY entity, rank").df()
