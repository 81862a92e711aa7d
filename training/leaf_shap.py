"""CatBoost's SHAP values of a row read from tables made once per model, one row of a table per tree and leaf.

CatBoost's TreeSHAP (`get_feature_importance(type="ShapValues")`, its default "Regular" calculation) walks every tree
of the model for every row it explains: about 19 µs a tree, 1.7 ms a declaration for 90 trees. In a symmetric tree
a row's path-dependent SHAP values depend only on the leaf it reaches, so `LeafShap` computes, once per model, each
tree's contribution to each feature for each of its leaves; a row's SHAP values are then the sum over trees of one
table row each (the tree's leaf for the row, from `calc_leaf_indexes`), and the base value is CatBoost's.

The contributions are the exact Shapley values of the path-dependent expectation CatBoost's TreeSHAP computes
(catboost/libs/fstr/shap_values.cpp), found by enumerating the subsets of a tree's players (at most its depth):
- the players are CatBoost's "combination classes": a float feature; a categorical feature, whether split one-hot
  or through a CTR of it alone; a CTR of several categorical features (the float and one-hot parts of a CTR's
  projection count for nothing). A class's value is shared equally among its categorical features.
- the expectation weighs a split's sides by the training rows of the leaves below them (the model's leaf weights),
  walking from the tree's last split (the highest bit of the leaf index) to its first.
- a side no training row reached is skipped: its leaves count as zero. That is exact only where such leaves have no
  value; a model with zero-weight leaves that have values (monotone constraints, blends) makes CatBoost weigh them
  with the explained rows' own leaf counts, so `LeafShap.of` gives None for it: give it the explainer of
  training/explainer.py, in which each such leaf weighs one row.
`LeafShap.of` also gives None for models it cannot reproduce exactly: non-symmetric trees (grow_policy Depthwise or
Lossguide) and models with more than one value per leaf (multiclass). Callers then use CatBoost's own SHAP.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import cache, cached_property
from pathlib import Path

import numpy as np

ZERO_APPROX = 1e-9  # CatBoost's own test for a leaf value that is not zero (see training/explainer.py)
_CHUNK = 16  # up to this many rows, summed at once (rows x trees x features doubles, a few MB)
_ROWS = 8192  # more rows go tree by tree in parts of this many (measured: 3 times faster than all rows at once)


class LeafShap:
    """A model's SHAP values per tree and leaf; `values(pool)` equals CatBoost's ShapValues for any row."""

    def __init__(self, model, table: np.ndarray, offsets: np.ndarray, base: float, n_features: int):
        self.model = model
        self.table = table  # (all trees' leaves, features): tree t's leaf l is row offsets[t] + l
        self.offsets = offsets
        self.base = base  # the mean prediction under the leaf weights, plus the model's bias
        self.n_features = n_features

    def __getstate__(self) -> dict:
        """Pickled without `touched`, which is made again from the table on first use."""
        return {name: value for name, value in self.__dict__.items() if name != "touched"}

    def arrays(self) -> dict[str, np.ndarray]:
        """The tables as plain arrays (training/store.py writes them beside the model)."""
        return {"table": self.table, "offsets": self.offsets, "base": np.array(self.base),
                "n_features": np.array(self.n_features)}

    @classmethod
    def from_arrays(cls, model, arrays) -> LeafShap:  # noqa: ANN001 - a CatBoost model, `arrays`' mapping
        """The tables `arrays` gave of `model`."""
        return cls(model, arrays["table"], arrays["offsets"], float(arrays["base"]), int(arrays["n_features"]))

    @classmethod
    def of(cls, model, spec: dict | None = None) -> LeafShap | None:
        """The tables of a fitted CatBoostClassifier or CatBoostRegressor, or None where they would not be exact.
        `spec`: the model's JSON export, where the caller already holds it."""
        if spec is None:
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "model.json"
                model.save_model(str(path), format="json")
                spec = json.loads(path.read_text())
        trees = spec.get("oblivious_trees")
        if not trees or spec.get("trees"):
            return None  # non-symmetric trees
        classes, n_features = _split_classes(spec)
        if classes is None:
            return None
        scale, bias = _scale_and_bias(spec)
        if scale is None:
            return None
        tables, base = [], bias
        for tree in trees:
            splits = tree.get("splits") or []  # a tree without splits has none
            depth = len(splits)
            values = np.asarray(tree["leaf_values"], dtype=float) * scale
            weights = np.asarray(tree["leaf_weights"], dtype=float)
            if values.size != 1 << depth or weights.size != values.size:
                return None  # more than one value per leaf (multiclass), or no weights
            if ((weights == 0) & (np.abs(values) >= ZERO_APPROX)).any() or weights.sum() <= 0:
                return None  # CatBoost would weigh these leaves with the explained rows (module docstring)
            tree_classes = [classes.get(split["split_index"]) for split in splits]
            if any(found is None for found in tree_classes):
                return None
            base += float(values @ weights / weights.sum())
            tables.append(_tree_table(values, weights, tree_classes, n_features))
        offsets = np.cumsum([0] + [len(table) for table in tables[:-1]]).astype(np.int64)
        table = np.concatenate(tables) if tables else np.zeros((0, n_features))
        return cls(model, table, offsets, base, n_features)

    def values(self, pool) -> np.ndarray:
        """Rows x (features + 1): each feature's SHAP value, then the base value (CatBoost's layout and numbers).

        Many rows go in parts of `_ROWS`, each part's leaves read and summed on one core while the others do theirs:
        CatBoost reads the leaves of all rows at once more than twice as slowly (measured at 150k rows, 600 trees),
        and they would take rows x trees x 4 bytes."""
        rows = pool.num_row()
        if rows <= _ROWS:  # up to _CHUNK rows (an API call's) on one core: CatBoost's other threads would spin longer
            return self.from_leaves(self.model.calc_leaf_indexes(pool, thread_count=1 if rows <= _CHUNK else -1))
        out = np.empty((rows, self.n_features + 1))

        def part(start: int) -> None:
            end = min(start + _ROWS, rows)
            leaves = self.model.calc_leaf_indexes(pool.slice(list(range(start, end))), thread_count=1)
            out[start:end, :-1] = self._summed(leaves).T

        _on_every_core(part, range(0, rows, _ROWS))
        out[:, -1] = self.base
        return out

    def from_leaves(self, leaves) -> np.ndarray:
        """The SHAP values of rows given their leaf in every tree (rows x trees, as `calc_leaf_indexes` gives).

        Each row's values are its trees' table rows added in tree order, so a row gets the same bits alone or in a
        batch: a few rows sum their gathered table rows at once, many rows go tree by tree over the features each
        tree touches (adding a zero changes nothing)."""
        leaves = np.atleast_2d(np.asarray(leaves))  # CatBoost's uint32 as it is: no copy of rows x trees
        if not np.issubdtype(leaves.dtype, np.integer):
            leaves = leaves.astype(np.int64)
        out = np.empty((len(leaves), self.n_features + 1))
        if len(leaves) <= _CHUNK:
            out[:, :-1] = self.table[leaves + self.offsets].sum(axis=1)
        else:
            def part(start: int) -> None:
                out[start:start + _ROWS, :-1] = self._summed(leaves[start:start + _ROWS]).T

            _on_every_core(part, range(0, len(leaves), _ROWS))
        out[:, -1] = self.base
        return out

    def _summed(self, leaves: np.ndarray) -> np.ndarray:
        """features x rows: the rows' values tree by tree over the features each tree touches, a part of rows small
        enough that its running sums stay in the processor's cache, its leaves one contiguous row per tree."""
        by_tree = np.ascontiguousarray(leaves.T)
        by_feature = np.zeros((self.n_features, len(leaves)))  # a feature's values contiguous
        for tree, parts in enumerate(self.touched):
            at = by_tree[tree]
            for feature, values in parts:
                by_feature[feature] += values[at]
        return by_feature

    @cached_property
    def touched(self) -> list[list[tuple[int, np.ndarray]]]:
        """Per tree, each feature it gives a contribution to, with that feature's value at each of its leaves."""
        ends = [*self.offsets[1:], len(self.table)]
        parts = []
        for start, end in zip(self.offsets, ends, strict=True):
            leaves = self.table[start:end]
            parts.append([(int(f), np.ascontiguousarray(leaves[:, f])) for f in np.flatnonzero((leaves != 0).any(axis=0))])
        return parts


def _on_every_core(part, starts: range) -> None:  # noqa: ANN001
    """`part(start)` for each start, on every core: numpy and CatBoost let go of the GIL while they work."""
    if len(starts) == 1:
        part(starts[0])
        return
    with ThreadPoolExecutor(min(len(starts), os.cpu_count() or 1)) as pool:
        list(pool.map(part, starts))


def _split_classes(spec: dict) -> tuple[dict[int, tuple[int, ...]] | None, int]:
    """Each binary split's combination class, as the flat indexes of its features (CatBoost's MapBinFeaturesToClasses).

    CatBoost numbers binary splits float features first (by their borders), then one-hot values, then CTR borders;
    the float and one-hot numbers are checked below against what the splits say of themselves.
    """
    info = spec["features_info"]
    floats = info.get("float_features", [])
    cats = info.get("categorical_features", [])
    cat_flat = {cat["feature_index"]: cat["flat_feature_index"] for cat in cats}
    flat = [f["flat_feature_index"] for f in floats] + [c["flat_feature_index"] for c in cats]
    n_features = max(flat) + 1 if flat else 0
    classes: list[tuple[int, ...]] = []
    for feature in floats:
        classes += [(feature["flat_feature_index"],)] * len(feature.get("borders") or [])
    for cat in cats:
        classes += [(cat["flat_feature_index"],)] * len(cat.get("values") or [])
    for ctr in info.get("ctrs", []):
        members = tuple(cat_flat.get(element["cat_feature_index"]) for element in ctr["elements"]
                        if element.get("combination_element") == "cat_feature_value")
        if not members or None in members:
            return None, n_features
        classes += [members] * len(ctr.get("borders") or [])
    by_index = dict(enumerate(classes))
    float_flat = {f["feature_index"]: f["flat_feature_index"] for f in floats}
    for tree in spec["oblivious_trees"]:  # the numbering must agree with what the splits say of themselves
        for split in tree.get("splits") or []:
            kind, index = split["split_type"], split["split_index"]
            expected = (float_flat.get(split.get("float_feature_index")),) if kind == "FloatFeature" else \
                (cat_flat.get(split.get("cat_feature_index")),) if kind == "OneHotFeature" else None
            if kind not in ("FloatFeature", "OneHotFeature", "OnlineCtr") or index not in by_index or \
                    (expected is not None and by_index[index] != expected):
                return None, n_features
    return by_index, n_features


def _scale_and_bias(spec: dict) -> tuple[float | None, float]:
    """The model's scale and its one bias; None for the scale where CatBoost gives no SHAP values to match.

    CatBoost refuses SHAP values for a scale other than 1 ("Non-identity {Scale} for feature importance is not
    supported"), and a model with a bias per class is multiclass. The bias goes to the base value, as CatBoost's does.
    """
    found = spec.get("scale_and_bias") or [1.0, [0.0]]
    scale, bias = float(found[0]), found[1]
    bias = bias if isinstance(bias, list) else [bias]
    if scale != 1.0 or len(bias) > 1:
        return None, 0.0
    return scale, float(bias[0]) if bias else 0.0


def _tree_table(values: np.ndarray, weights: np.ndarray, tree_classes: list, n_features: int) -> np.ndarray:
    """(leaves, features): the tree's SHAP contributions for a row in each leaf, by subset enumeration."""
    depth = len(tree_classes)
    leaves = np.arange(1 << depth)
    table = np.zeros((1 << depth, n_features))
    if depth == 0:
        return table
    players = list(dict.fromkeys(tree_classes))
    level_player = np.array([players.index(found) for found in tree_classes])
    # the walk from the root goes down levels depth-1, ..., 0; ratio[k] is the weight of a leaf's side at level k
    # over that of its node, 0 where the node has no weight (CatBoost skips such sides)
    ratio = np.empty((depth, 1 << depth))
    node_weight = np.full(1 << depth, weights.sum())
    mask = 0
    for level in range(depth - 1, -1, -1):
        mask |= 1 << level
        side_weight = np.bincount(leaves & mask, weights, minlength=1 << depth)[leaves & mask]
        ratio[level] = np.divide(side_weight, node_weight, out=np.zeros(1 << depth), where=node_weight > 0)
        node_weight = side_weight
    subsets = np.arange(1 << len(players))
    known = (subsets[:, None] >> level_player[None, :]) & 1 == 1  # subsets x levels: is the level's player known
    level_mask = (known * (1 << np.arange(depth))).sum(axis=1)  # leaf-index bits a subset fixes
    reach = np.where(known[:, :, None], 1.0, ratio[None, :, :]).prod(axis=1)  # subsets x leaves
    key = subsets[:, None] * (1 << depth) + (leaves[None, :] & level_mask[:, None])
    sums = np.bincount(key.ravel(), (reach * values).ravel(), minlength=(1 << depth) << len(players))
    expectation = sums[key]  # subsets x leaves: E[f | the subset's players as the row in that leaf has them]
    shares = _shapley(len(players)) @ expectation  # players x leaves
    for player, members in enumerate(players):
        for feature in members:
            table[:, feature] += shares[player] / len(members)
    return table


@cache
def _shapley(n: int) -> np.ndarray:
    """(players, subsets): φ_i = Σ_S coefficient[i, S] E[S], the Shapley weights of n players."""
    coefficient = np.zeros((n, 1 << n))
    for subset in range(1 << n):
        size = bin(subset).count("1")
        for player in range(n):
            if not subset >> player & 1:
                share = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
                coefficient[player, subset | 1 << player] += share
                coefficient[player, subset] -= share
    coefficient.setflags(write=False)
    return coefficient
