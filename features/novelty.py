"""Novelty signals: what is new about a declaration, from filings alone (no label, no model).

A scheme nobody has inspected yet leaves no label to learn from, but it changes how trade is filed: an
established importer starts using another declarant, office, heading or origin; a heading starts arriving
from new origins; a declarant starts filing for importers it never served. Six signals, each as of the
declaration's date, from the filings strictly before it:

- `new_pairs`: the share of the declaration's importer pairs (importer × declarant, × office, × HS heading,
  × origin) never filed before. A first-seen importer has all of them new.
- `importer_mix_shift`: a sudden change in the importer's mix of goods, origins, declarants or offices. A
  filing is novel when one of its pairs was first filed at most `NEW_DAYS` before it; the shift counts the
  novel filings of the importer's last `WINDOW_DAYS` beyond what its novel rate of the `NEW_DAYS` before would
  give (an importer that always changes partners does not shift; an established one that suddenly does, does).
- `heading_origin_shift`: the same for the declaration's HS heading and its origins: a heading moving to new
  origins.
- `declarant_client_shift`: the same for the declaration's declarant (the customs broker) and its clients: a
  declarant suddenly filing for importers new to it, beyond its own rate of taking on clients (a broker through
  whom established importers all start to file at once). Zero where no declarant is given.
- `new_relationships`: an established importer filing with partners, goods or origins it took up only recently:
  the mean, over the declaration's importer pairs and its importer × exporter pair, of each pair's newness (1 when
  never filed before, falling linearly to 0 once first filed `NEW_DAYS` ago), times how established the importer is
  (1 − its own newness). The declaration is itself the change: a newcomer, all of whose pairs are new, has none;
  an importer that took up a new seller and new goods a month ago has it on each of those filings.
- `new_parties`: how recently its parties (importer, exporter, declarant) were first seen: each counts 1 when it
  never filed before, falling linearly to 0 once it first filed `NEW_DAYS` ago; the mean over the three (a party
  not given counts 0). A seller nobody has traded with before is a first-seen entity.

Each is a separate source of targeted selections (serving/targeting.py): a bandit learns which of them finds
fraud, so none needs a weight. A declaration's signals do not depend on the others scored with it, so batch and
real time agree.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.entities import MISSING, hs_level
from features.profiles import RECENT_DAYS, to_seconds

DAY = 86_400
NEW_DAYS = RECENT_DAYS  # a pair first filed within the profiles' recent window counts as new
WINDOW_DAYS = 30  # the recent mix: the last month's filings
PAIRS = {"declarant": "declarant_id", "office": "office_id", "heading": "hs_heading", "origin": "origin_country"}
SPAN = 2**40  # seconds between two groups' keys (35,000 years: any query's window stays within its group)
PARTIES = ("importer_id", "exporter_id", "declarant_id")  # the parties whose first filing `new_parties` reads
RELATIONSHIPS = {**PAIRS, "exporter": "exporter_id"}  # the importer pairs `new_relationships` reads
NOVELTY_COLUMNS = ["new_pairs", "importer_mix_shift", "heading_origin_shift", "declarant_client_shift", "new_parties",
                   "new_relationships"]


def as_text(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A column's values as the signals key them: text, MISSING where missing (an absent column is all missing)."""
    values = frame[column].astype("str").fillna(MISSING) if column in frame else pd.Series(MISSING, index=frame.index)
    return values.to_numpy(dtype=object)


def _columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The text of each column the signals read (missing values share one key; an absent column is all missing)."""
    out = {column: as_text(frame, column)
           for column in ("importer_id", "exporter_id", "declarant_id", "office_id", "origin_country")}
    out["hs_heading"] = hs_level(frame["hs_code"], "hs_heading").fillna(MISSING).to_numpy(dtype=object)
    return out


def youth(first: np.ndarray, seconds: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """A party's newness at each query: 1 when it never filed strictly before (`first` NaN or not earlier),
    falling linearly to 0 at NEW_DAYS after its first filing; 0 where the party is not given."""
    with np.errstate(invalid="ignore"):
        young = np.where(first < seconds, np.clip(1.0 - (seconds - first) / (NEW_DAYS * DAY), 0.0, None), 1.0)
    return np.where(missing, 0.0, young)


def relationships(firsts: list[np.ndarray], seconds: np.ndarray, importer_youth: np.ndarray) -> np.ndarray:
    """`new_relationships` from the first filing of each of the declaration's RELATIONSHIPS pairs (NaN: never) and
    its importer's newness."""
    recent = sum(youth(first, seconds, np.zeros(len(seconds), dtype=bool)) for first in firsts)
    return recent / len(RELATIONSHIPS) * (1.0 - importer_youth)


def excess(past: tuple[np.ndarray, np.ndarray], recent: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """How many more of the recent window's filings (count, novel) were novel than the past window's novel rate
    would give (that rate Laplace-smoothed, (novel + 1) / (filings + 2)), at least 0: `_Windowed.shift`'s, and
    features/warehouse/novelty_store.py's from its running counts."""
    rate = (past[1] + 1) / (past[0] + 2)
    return np.maximum(recent[1] - recent[0] * rate, 0.0)


def _joined(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a + "\x1f" + b


@dataclass
class _Windowed:
    """The filings of each group (an importer, a heading) in time order, with the running count of novel ones."""

    vocabulary: pd.Index
    order_key: np.ndarray  # group code · span + seconds, ascending
    novel_before: np.ndarray  # novel filings before each position (length n + 1)
    span: int

    @classmethod
    def of(cls, groups: np.ndarray, seconds: np.ndarray, novel: np.ndarray) -> _Windowed:
        codes, vocabulary = pd.factorize(groups)
        span = SPAN
        key = codes.astype("int64") * span + (seconds - (seconds.min() if len(seconds) else 0))
        order = np.argsort(key, kind="stable")
        return cls(vocabulary=pd.Index(vocabulary), order_key=key[order],
                   novel_before=np.concatenate([[0], np.cumsum(novel[order])]), span=span)

    def shift(self, groups: np.ndarray, seconds: np.ndarray, origin: int) -> np.ndarray:
        """Per query at time t: how many more of its group's filings in [t − WINDOW_DAYS, t) were novel than the
        group's novel rate of the NEW_DAYS before would predict (that rate Laplace-smoothed, (novel + 1) / (filings
        + 2)), at least 0. A count, not a share: a busy importer that changes all its partners at once weighs more
        than a rare one whose two filings happen to be new."""
        codes = self.vocabulary.get_indexer(groups)
        known = codes >= 0
        base = codes.astype("int64") * self.span + (seconds - origin)
        bounds = [np.searchsorted(self.order_key, base - days * DAY, side="left")
                  for days in (WINDOW_DAYS + NEW_DAYS, WINDOW_DAYS, 0)]
        windows = list(zip(bounds, bounds[1:], strict=False))  # (past, recent)
        count = [np.where(known, hi - lo, 0) for lo, hi in windows]
        novel = [np.where(known, self.novel_before[hi] - self.novel_before[lo], 0) for lo, hi in windows]
        return excess((count[0], novel[0]), (count[1], novel[1]))


class NoveltyIndex:
    """The first filing of every importer pair and heading × origin pair, and the novel share of each importer's
    and heading's recent filings, from a history of filings (declaration dates and entity columns, no labels).

    A lookup at time t counts only filings strictly before t, so one index of every filing serves any date."""

    def __init__(self, filings: pd.DataFrame):
        columns = _columns(filings)
        seconds = to_seconds(filings["declaration_date"].to_numpy())
        self._origin = int(seconds.min()) if len(seconds) else 0
        importer = columns["importer_id"]
        self._first: dict[str, pd.Series] = {}
        recent: dict[str, np.ndarray] = {}  # per importer pair: each filing's pair first filed at most NEW_DAYS before
        for name, column in RELATIONSHIPS.items():
            key = _joined(importer, columns[column])
            first = pd.Series(seconds).groupby(key, sort=False).min()
            self._first[name] = first
            if name in PAIRS:
                recent[name] = seconds - first.reindex(key).to_numpy() <= NEW_DAYS * DAY
        novel = np.logical_or.reduce(list(recent.values()))
        heading_origin = _joined(columns["hs_heading"], columns["origin_country"])
        first = pd.Series(seconds).groupby(heading_origin, sort=False).min()
        self._first["heading_origin"] = first
        moved = seconds - first.reindex(heading_origin).to_numpy() <= NEW_DAYS * DAY
        self._parties = {column: pd.Series(seconds).groupby(columns[column], sort=False).min() for column in PARTIES}
        self._importers = _Windowed.of(importer, seconds, novel.astype("int64"))
        self._headings = _Windowed.of(columns["hs_heading"], seconds, moved.astype("int64"))
        self._declarants = _Windowed.of(columns["declarant_id"], seconds, recent["declarant"].astype("int64"))

    def lookup(self, rows: pd.DataFrame) -> pd.DataFrame:
        """NOVELTY_COLUMNS for each row, as of its declaration date (same index as `rows`)."""
        columns = _columns(rows)
        seconds = to_seconds(rows["declaration_date"].to_numpy())
        importer = columns["importer_id"]
        new = np.zeros(len(rows))
        for name, column in PAIRS.items():
            first = self._first[name].reindex(_joined(importer, columns[column])).to_numpy()
            new += ~(first < seconds)  # never filed strictly before (NaN: never filed at all)
        out = pd.DataFrame(index=rows.index)
        out["new_pairs"] = new / len(PAIRS)
        out["importer_mix_shift"] = self._importers.shift(importer, seconds, self._origin)
        out["heading_origin_shift"] = self._headings.shift(columns["hs_heading"], seconds, self._origin)
        declarant = columns["declarant_id"]
        out["declarant_client_shift"] = np.where(declarant == MISSING, 0.0,
                                                 self._declarants.shift(declarant, seconds, self._origin))
        young = {column: youth(self._parties[column].reindex(columns[column]).to_numpy(dtype="float64"), seconds,
                               columns[column] == MISSING) for column in PARTIES}
        out["new_parties"] = sum(young.values()) / len(PARTIES)
        firsts = [self._first[name].reindex(_joined(importer, columns[column])).to_numpy(dtype="float64")
                  for name, column in RELATIONSHIPS.items()]
        out["new_relationships"] = relationships(firsts, seconds, young["importer_id"])
        return out
