"""SHAP values that belong to a declaration alone, whatever rows are explained with it.

CatBoost's TreeSHAP weighs each leaf by the training rows that reached it. A model can hold leaves that no training
row reached and that still have a value (monotone constraints adjust leaf values; a blend sums its members' trees).
For such a model CatBoost adds the explained rows' own leaf counts to the weights (catboost/libs/fstr:
`HasNonZeroApproxForZeroWeightLeaf`), so a row's SHAP values, and the reasons read from them, depend on which rows are
explained with it: a declaration scored alone (the API), in a batch, or in one partition or another would be given
other reasons. The explainer is a copy of the classifier in which each such leaf weighs one row; its leaf values,
and so its predictions, are the classifier's, and CatBoost then reads the model's weights only.
"""
from __future__ import annotations

import json
import tempfile
import threading
from pathlib import Path

import numpy as np
from catboost import CatBoostClassifier, Pool

from training.leaf_shap import LeafShap

ZERO_APPROX = 1e-9  # CatBoost's own test for a leaf value that is not zero
_EXPLAINERS: dict[int, tuple[CatBoostClassifier, CatBoostClassifier]] = {}  # by the classifier's id, a few at most
_TABLES: dict[int, tuple[CatBoostClassifier, LeafShap | None]] = {}
_LOCK = threading.Lock()


def explainer(classifier: CatBoostClassifier) -> CatBoostClassifier:
    """The classifier to compute SHAP values with (itself when every leaf with a value has a weight)."""
    found = _cached(_EXPLAINERS, classifier)
    if found is not None:
        return found[1]
    spec = _weighted(classifier)
    return _remember(_EXPLAINERS, classifier, classifier if spec is None else _loaded(spec))


def leaf_shap(classifier: CatBoostClassifier, stored: LeafShap | None = None) -> LeafShap | None:
    """The explainer's SHAP tables (training/leaf_shap.py), made once per classifier (~1 s at 600 trees, most of it
    CatBoost's JSON export), or `stored`: those the model was stored with; None where they would not be exact
    (CatBoost's own SHAP serves then). They are read from the explainer's JSON: the explainer's splits and leaf
    values are the classifier's (only leaf weights differ), so the leaves are read from the classifier, and the
    explainer itself is never loaded for them."""
    found = _cached(_TABLES, classifier)
    if found is not None:
        return found[1]
    if stored is not None:
        return _remember(_TABLES, classifier, stored)
    spec = _weighted(classifier)
    made = LeafShap.of(classifier, spec)
    if made is None and spec is not None:  # CatBoost's own SHAP serves: its explainer from this export
        _remember(_EXPLAINERS, classifier, _loaded(spec))
    return _remember(_TABLES, classifier, made)


def _cached(cache: dict, classifier: CatBoostClassifier) -> tuple | None:
    """The cache's (classifier, value) entry of this classifier (its value may be None), else None."""
    with _LOCK:
        found = cache.get(id(classifier))
        return found if found is not None and found[0] is classifier else None


def _remember(cache: dict, classifier: CatBoostClassifier, value):  # noqa: ANN001, ANN202 - the cache's value
    with _LOCK:
        if len(cache) >= 4:
            cache.pop(next(iter(cache)))
        cache[id(classifier)] = (classifier, value)
    return value


def shap_values(classifier: CatBoostClassifier, pool: Pool) -> np.ndarray:
    """The classifier's SHAP values of a pool, CatBoost's layout (rows × (columns + 1), the base value last): from
    its leaf tables where they exist, so a declaration gets the same values alone (the API) or in a batch."""
    tables = leaf_shap(classifier)
    if tables is not None:
        return tables.values(pool)
    return explainer(classifier).get_feature_importance(pool, type="ShapValues")


def _weighted(classifier: CatBoostClassifier) -> dict | None:
    """The classifier's JSON export with each leaf that has a value but no weight weighing one row; None where it
    has none (the classifier is its own explainer)."""
    weights = np.asarray(classifier.get_leaf_weights())
    dimension = np.asarray(classifier.get_leaf_values()).size // max(len(weights), 1)  # values per leaf
    values = np.abs(np.asarray(classifier.get_leaf_values())).reshape(len(weights), dimension).sum(axis=1)
    if not ((weights == 0) & (values >= ZERO_APPROX)).any():
        return None
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.json"
        classifier.save_model(str(path), format="json")
        model = json.loads(path.read_text())
    for tree in model["oblivious_trees"]:
        leaf_values = tree["leaf_values"]
        for leaf, weight in enumerate(tree["leaf_weights"]):
            if weight == 0 and sum(abs(v) for v in leaf_values[leaf * dimension:(leaf + 1) * dimension]) >= ZERO_APPROX:
                tree["leaf_weights"][leaf] = 1.0
    return model


def _loaded(spec: dict) -> CatBoostClassifier:
    """A classifier from its JSON export."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.json"
        path.write_text(json.dumps(spec))
        return CatBoostClassifier().load_model(str(path), format="json")
