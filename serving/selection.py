"""Selection: who goes red, in one place for batch lanes, real-time lanes and the backtest.

- `capacity`: how many of `rows` declarations a share allows, ⌈share·rows⌉, rounded first so that float error
  (0.07·100 = 7.000000000000001) does not cost an extra inspection.
- `split_exploration`: (model picks, random picks) of a capacity.
- `top_k`: the k highest scores, equal scores ordered by a seeded draw (so the order of rows never matters).
- `exploration_draw`: a pseudo-random number per declaration, from its id and a seed only.
- `select`: the model's top picks, then a random draw among the rest.
- `rule_hits`: the hard rules (watch lists, prohibited goods) that put a declaration red whatever its score,
  matched on the text normal form of features/intake/text.py (a zero-width copy of a listed id is that id).
- `Thresholds`: the same selection one declaration at a time (the API), as cut-offs learned from a batch.

Pure: numpy, pandas and the text normal form only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from pandas._libs.hashing import hash_object_array
from pydantic import BaseModel, ConfigDict, Field

from features.intake.text import normalise, normalise_text

RED, YELLOW, GREEN = "red", "yellow", "green"


class Rules(BaseModel):
    model_config = ConfigDict(extra="forbid")
    watchlist_importers: list[str] = Field(default_factory=list)
    prohibited_hs_prefixes: list[str] = Field(default_factory=list)
    licensed_hs_prefixes: list[str] = Field(default_factory=list)
    embargoed_origins: list[str] = Field(default_factory=list)

    @cached_property
    def normalised(self) -> dict[str, list[str]]:
        """Each list in the text normal form (features/intake/text.py), as declarations are compared to it; made
        once per policy, not once per declaration. Empty when no rule is configured."""
        listed = {name: [normalise(v) for v in values] for name, values in self.model_dump().items()}
        return listed if any(listed.values()) else {}


def capacity(rows: int, share: float) -> int:
    """Selections a share of `rows` allows: ⌈share·rows⌉, at most `rows` (rounded first, so 0.07·100 is 7, not 8)."""
    return min(rows, math.ceil(round(share * rows, 9)))


def split_exploration(k: int, exploration: float) -> tuple[int, int]:
    """(model picks, random picks) of a capacity k: round(exploration·k) of it is drawn at random."""
    explore = min(k, round(exploration * k))
    return k - explore, explore


def exploration_draw(declaration_ids: pd.Series, seed: int) -> np.ndarray:
    """A pseudo-random number per declaration that depends only on its id and the seed (uint64): pandas' hash of the
    text `<id>#<seed>` (`hash_pandas_object`'s, without its Series)."""
    keyed = pd.Series(declaration_ids).reset_index(drop=True).astype("str") + f"#{seed}"
    if keyed.isna().any():  # no text to hash: pandas' own value for a missing one
        return pd.util.hash_pandas_object(keyed, index=False).to_numpy()
    return np.concatenate([_mixed(hash_object_array(keyed.iloc[start:start + DRAW_ROWS].to_numpy(dtype=object),
                                                    _HASH_KEY, "utf8"))
                           for start in range(0, len(keyed), DRAW_ROWS)] or [np.empty(0, dtype=np.uint64)])


DRAW_ROWS = 100_000  # ids hashed at a time by exploration_draw: the hash reads them as Python strings
_HASH_KEY = "0123456789123456"  # pandas' default hash key (pandas.core.util.hashing)
_MASK = 2**64 - 1


def draw_one(declaration_id: object, seed: int) -> int:
    """`exploration_draw` of one declaration, as a Python int."""
    return _mixed(int(hash_object_array(np.array([f"{declaration_id}#{seed}"], dtype=object), _HASH_KEY, "utf8")[0]))


def _mixed(value: int | np.ndarray) -> int | np.ndarray:
    """The mixing steps pandas applies to a text hash (pandas.core.util.hashing), to an int (kept to 64 bits) or to
    a uint64 array (which wraps)."""
    value ^= value >> 30
    value = (value * 0xBF58476D1CE4E5B9) & _MASK
    value ^= value >> 27
    value = (value * 0x94D049BB133111EB) & _MASK
    return value ^ (value >> 31)


def top_k(scores: np.ndarray, k: int, tiebreak: np.ndarray) -> np.ndarray:
    """Positions of the k highest scores, best first; equal scores are ordered by `tiebreak` (a seeded draw), lowest
    first, then by position. Missing scores come last.

    A partial sort: only the rows at or above the k-th highest score are sorted (all of them, so ties at the cut-off
    are broken exactly as a full sort would), which keeps a batch of millions to O(n) time and a few arrays."""
    scores = np.asarray(scores, dtype="float64")
    k = min(max(k, 0), len(scores))
    missing = np.isnan(scores)
    values = scores[~missing] if missing.any() else scores
    if k == 0:
        return np.zeros(0, dtype="int64")
    if k >= len(values):  # every score, then the missing ones by the draw
        present, absent = np.flatnonzero(~missing), np.flatnonzero(missing)
        order = np.concatenate([present[np.lexsort((tiebreak[present], -scores[present]))],
                                absent[np.argsort(tiebreak[absent], kind="stable")]])
        return order[:k]
    kth = np.partition(values, len(values) - k)[len(values) - k]  # the k-th highest score
    candidates = np.flatnonzero(scores >= kth)  # never a missing one
    return candidates[np.lexsort((tiebreak[candidates], -scores[candidates]))][:k]


def lowest_draws(draw: np.ndarray, n: int) -> np.ndarray:
    """Positions of the n lowest draws (the exploration picks among some candidates), equal draws by position.
    A partial sort, as top_k."""
    draw = np.asarray(draw)
    n = min(max(n, 0), len(draw))
    if n == 0:
        return np.zeros(0, dtype="int64")
    if n < len(draw):
        candidates = np.flatnonzero(draw <= np.partition(draw, n - 1)[n - 1])
    else:
        candidates = np.arange(len(draw))
    return candidates[np.argsort(draw[candidates], kind="stable")][:n]


def others(n: int, *taken: np.ndarray) -> np.ndarray:
    """Positions 0..n-1 not in any of `taken`, ascending."""
    free = np.ones(n, dtype=bool)
    for positions in taken:
        free[positions] = False
    return np.flatnonzero(free)


def select(scores: np.ndarray, k: int, exploration: float, draw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A capacity k filled by the model's top picks, then by a random draw among the rest:
    (model positions, explored positions)."""
    exploit, explore = split_exploration(k, exploration)
    chosen = top_k(scores, exploit, draw)
    rest = others(len(scores), chosen)
    return chosen, rest[lowest_draws(draw[rest], explore)]


def rule_hits(frame: pd.DataFrame, rules: Rules) -> pd.Series:
    """The first rule each declaration hits, as readable text ('' when none).

    Ids, codes and the lists are compared in the text normal form (features/intake/text.py), so ' IMP1', 'IMP\u200b1'
    and 'ＩＭＰ１' are all the listed IMP1, whether or not the frame came through ingest's parser."""
    hits = pd.Series("", index=frame.index, dtype="object")
    listed = rules.normalised
    if not listed:  # no rules configured
        return hits
    shown = pd.DataFrame({c: normalise_text(frame[c].astype("str")) for c in ("importer_id", "hs_code", "origin_country")},
                         index=frame.index)
    hs = shown["hs_code"]
    checks = [
        (shown["importer_id"].isin(listed["watchlist_importers"]), "importer {importer_id} is on the watch list"),
        (_prefixed(hs, listed["prohibited_hs_prefixes"]), "HS {hs_code} is prohibited"),
        (_prefixed(hs, listed["licensed_hs_prefixes"]), "HS {hs_code} needs an import licence"),
        (shown["origin_country"].isin(listed["embargoed_origins"]), "origin {origin_country} is under embargo"),
    ]
    for mask, template in reversed(checks):  # the first rule in this list wins
        for i in frame.index[mask.fillna(False).astype(bool).to_numpy()]:
            hits[i] = template.format(**shown.loc[i].to_dict())
    return hits


def rule_one(row: dict, rules: Rules) -> str:
    """`rule_hits` for one declaration (a dict, missing values as None)."""
    listed = rules.normalised
    if not listed:
        return ""
    shown = {c: None if row.get(c) is None else normalise(str(row[c])) for c in ("importer_id", "hs_code", "origin_country")}
    importer, hs, origin = shown["importer_id"], shown["hs_code"], shown["origin_country"]
    if importer is not None and importer in listed["watchlist_importers"]:
        return f"importer {importer} is on the watch list"
    for name, template in (("prohibited_hs_prefixes", "HS {} is prohibited"),
                           ("licensed_hs_prefixes", "HS {} needs an import licence")):
        prefixes = tuple(p for p in listed[name] if p)
        if hs is not None and prefixes and hs.startswith(prefixes):
            return template.format(hs)
    if origin is not None and origin in listed["embargoed_origins"]:
        return f"origin {origin} is under embargo"
    return ""


def _prefixed(hs: pd.Series, prefixes: list[str]) -> pd.Series:
    prefixes = [p for p in prefixes if p]  # an entry that normalises to nothing would match every code
    return hs.str.startswith(tuple(prefixes)) if prefixes else pd.Series(False, index=hs.index)


@dataclass
class Thresholds:
    """Real-time lanes: the cut-offs the latest batch's capacity produced, applied one declaration at a time.

    A declaration of that batch gets the same lane both ways: model picks are the rows ranked at or above the
    lowest model-red rank, explored rows are those whose draw is at or below the highest explored draw (the
    draw only depends on the id and the seed), yellow likewise by rank."""

    red: float
    yellow: float
    exploration: int  # exploration draws at or below this value went red
    batch_id: str = ""
    red_tie: int = np.iinfo(np.uint64).max  # at exactly the red cut-off, draws up to this one went red
    yellow_tie: int = np.iinfo(np.uint64).max

    @classmethod
    def from_decisions(cls, decisions: pd.DataFrame, rank_by: str, seed: int) -> Thresholds | None:
        if decisions.empty:
            return None
        rank = decisions[rank_by].fillna(decisions["risk_score"]).to_numpy()
        model_red = (decisions["selected_by"].eq("model") & decisions["lane"].eq(RED)).to_numpy()
        yellow = (decisions["lane"].eq(YELLOW) & decisions["selected_by"].eq("model")).to_numpy()  # not validation
        explored = decisions["selected_by"].eq("exploration")
        if "stratum" in decisions:  # a targeted pick is not the random draw's: only the random stratum sets its cut-off
            explored &= decisions["stratum"].fillna("").isin(["", "random"])
        explored = explored.to_numpy()
        draws = exploration_draw(decisions["declaration_id"], seed)
        red, red_tie = _cut(rank, draws, model_red)
        low, yellow_tie = _cut(rank, draws, yellow)
        return cls(red=red, yellow=low, exploration=int(draws[explored].max()) if explored.any() else -1,
                   batch_id=str(decisions["batch_id"].iloc[0]), red_tie=red_tie, yellow_tie=yellow_tie)

    def lanes(self, rules: np.ndarray, rank: np.ndarray, draw: np.ndarray) -> pd.DataFrame:
        """lane, selected_by, rule for declarations with these rule hits ('' when none), ranks and draws.
        At a cut-off's exact score, the batch's tie-break (lowest draw first) decides, as top_k does."""
        red = (rank > self.red) | ((rank == self.red) & (draw <= self.red_tie))
        yellow = (rank > self.yellow) | ((rank == self.yellow) & (draw <= self.yellow_tie))
        conditions = [rules != "", red, draw <= self.exploration, yellow]
        return pd.DataFrame({"lane": np.select(conditions, [RED, RED, RED, YELLOW], default=GREEN),
                             "selected_by": np.select(conditions, ["rule", "model", "exploration", "model"], default=""),
                             "rule": rules})

    @property
    def exploration_rate(self) -> float:
        """The probability that a declaration not picked by rule or model is explored: its draw, uniform over
        uint64, is at most the cut-off (0 before any batch)."""
        return (self.exploration + 1) / 2**64

    def lane_one(self, rule: str, rank: float, draw: int) -> tuple[str, str]:
        """`lanes` of one declaration: (lane, selected_by)."""
        if rule:
            return RED, "rule"
        if rank > self.red or (rank == self.red and draw <= self.red_tie):
            return RED, "model"
        if draw <= self.exploration:
            return RED, "exploration"
        if rank > self.yellow or (rank == self.yellow and draw <= self.yellow_tie):
            return YELLOW, "model"
        return GREEN, ""


def _cut(rank: np.ndarray, draws: np.ndarray, chosen: np.ndarray) -> tuple[float, int]:
    """The lowest rank among the chosen rows, and the highest draw chosen at exactly that rank."""
    if not chosen.any():
        return np.inf, int(np.iinfo(np.uint64).max)
    low = float(rank[chosen].min())
    return low, int(draws[chosen & (rank == low)].max())


NO_THRESHOLDS = Thresholds(red=np.inf, yellow=np.inf, exploration=-1)  # before any batch: only rule hits go red
