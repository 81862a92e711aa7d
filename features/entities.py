"""The entities risk is profiled and rated on, and the HS levels they use: declared here once.

An entity is a party, a kind of goods or a trade lane, identified by one or more declaration columns. Everything
that names entities reads this table: the time-aware profiles and their feature columns (features/profiles.py),
the reasons officers read (serving/reasons.py), the risk ratings (`aduana ratings`, the audit flow's enterprise
ratings), the analysts' page and the backtest's replay. A new entity is one more `Entity` below.

HS levels are prefixes of the HS code: chapter (2 digits), heading (4), subheading (6). `hs_level` and
`hs_prefix` cut them, for a column and for one code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is imported where a frame is cut: the table itself is read by the CLI's argument checks
    import numpy as np
    import pandas as pd

MISSING = "__missing__"  # the one key of a missing value (and CatBoost's categorical gap)
HS_LEVELS = {"hs_chapter": 2, "hs_heading": 4, "hs_subheading": 6}


def hs_level(codes: pd.Series, level: str) -> pd.Series:
    """An HS level of each code ('hs_chapter', 'hs_heading' or 'hs_subheading'); missing stays missing."""
    return codes.astype("str").str[:HS_LEVELS[level]]


def hs_prefix(code: str, level: str) -> str:
    """`hs_level` for one code."""
    return code[:HS_LEVELS[level]]


def hs_dotted(code: str) -> str:
    """An HS code as officers write its subheading: '8703.23'."""
    return f"{code[:4]}.{code[4:6]}" if len(code) >= 6 else code


@dataclass(frozen=True)
class Entity:
    name: str
    columns: tuple[str, ...]  # declaration columns (or HS levels) that identify it, in key order
    noun: str  # what it is, in a reason: "no {noun} declared"
    label: str  # a declaration's own one, formatted with its columns (and `hs_dotted`)
    enterprise: bool = False  # rated beside each post-clearance audit list
    pair: bool = False  # a combination of two parties or of a party and goods (its own profile group)


ENTITIES: tuple[Entity, ...] = (
    Entity("importer", ("importer_id",), "importer", "importer {importer_id}", enterprise=True),
    Entity("declarant", ("declarant_id",), "declarant", "declarant {declarant_id}", enterprise=True),
    Entity("exporter", ("exporter_id",), "exporter", "exporter {exporter_id}"),
    Entity("hs_chapter", ("hs_chapter",), "HS chapter", "HS chapter {hs_chapter}"),
    Entity("hs_heading", ("hs_heading",), "HS heading", "HS heading {hs_heading}"),
    Entity("hs_subheading", ("hs_subheading",), "HS code", "goods HS {hs_dotted}"),
    Entity("origin", ("origin_country",), "origin", "origin {origin_country}"),
    Entity("lane", ("origin_country", "office_id"), "lane", "lane {origin_country} → {office_id}"),
    # Pairs: customs fraud often lives in a combination (this importer with these goods, this broker at this
    # office, this seller from this origin) while each party alone looks ordinary.
    Entity("importer_heading", ("importer_id", "hs_heading"), "pair", "importer {importer_id} with HS heading {hs_heading}", pair=True),
    Entity("declarant_office", ("declarant_id", "office_id"), "pair", "declarant {declarant_id} at office {office_id}", pair=True),
    Entity("exporter_origin", ("exporter_id", "origin_country"), "pair", "exporter {exporter_id} from {origin_country}", pair=True),
)
BY_NAME = {e.name: e for e in ENTITIES}
NAMES = tuple(BY_NAME)
PAIRS = tuple(e.name for e in ENTITIES if e.pair)
ENTERPRISES = tuple(e.name for e in ENTITIES if e.enterprise)


def source_columns() -> list[str]:
    """The declaration columns the entities are read from (HS levels come from `hs_code`), in first-use order."""
    wanted = [c if c not in HS_LEVELS else "hs_code" for e in ENTITIES for c in e.columns]
    return list(dict.fromkeys(wanted))


def with_levels(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with its HS levels as columns (what a rating groups by)."""
    return frame.assign(**{level: hs_level(frame["hs_code"], level) for level in HS_LEVELS})


def entity_keys(frame: pd.DataFrame, names: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """One string key array per entity whose columns are present (missing values share one key); `names`: only
    these entities' (default: every one)."""
    texts: dict[str, np.ndarray] = {}

    def text(column: str) -> np.ndarray:  # each column (or HS level) converted once, shared by its entities
        if column not in texts:
            series = hs_level(frame["hs_code"], column) if column in HS_LEVELS else frame[column].astype("str")
            texts[column] = series.fillna(MISSING).to_numpy(dtype=object)
        return texts[column]

    keys = {}
    for entity in ENTITIES:
        if names is not None and entity.name not in names:
            continue
        if all(c in frame.columns or c in HS_LEVELS for c in entity.columns):
            values = [text(c) for c in entity.columns]
            key = values[0]
            for more in values[1:]:
                key = key + "|" + more
            keys[entity.name] = key
    return keys


def entity_key(row: dict, entity: Entity) -> str:
    """`entity_keys` for one declaration (a dict with missing values as None)."""
    hs = str(row["hs_code"])
    return "|".join(hs_prefix(hs, c) if c in HS_LEVELS else (MISSING if row.get(c) is None else str(row[c]))
                    for c in entity.columns)
