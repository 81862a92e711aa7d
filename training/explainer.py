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
_EXPLAINERS: dict[int, list] = {}  # by the classifier's id, a few at most: [classifier, explainer, its JSON or None]
_TABLES: dict[int, tuple[CatBoostClassifier, LeafShap | None]] = {}
_LOCK = threading.Lock()


def explainer(classifier: CatBoostClassifier) -> CatBoostClassifier:
    """The classifier to compute SHAP values with (itself when every leaf with a value has a weight)."""
    return _explainer(classifier)[0]


def _explainer(classifier: CatBoostClassifier) -> tuple[CatBoostClassifier, dict | None]:
    """`explainer`, and the JSON it was loaded from when it had to be made (None once read, or when it is the
    classifier itself): its SHAP tables are read from that JSON, not from another export of the model."""
    with _LOCK:
        found = _EXPLAINERS.get(id(classifier))
        if found is not None and found[0] is classifier:
            return found[1], found[2]
        made, spec = _weighted(classifier)
        if len(_EXPLAINERS) >= 4:
            _EXPLAINERS.pop(next(iter(_EXPLAINERS)))
        _EXPLAINERS[id(classifier)] = [classifier, made, spec]
        return made, spec


def leaf_shap(classifier: CatBoostClassifier) -> LeafShap | None:
    """The explainer's SHAP tables (training/leaf_shap.py), made once per classifier; None where they would not be
    exact (CatBoost's own SHAP serves then)."""
    with _LOCK:
        found = _TABLES.get(id(classifier))
        if found is not None and found[0] is classifier:
            return found[1]
    model, spec = _explainer(classifier)
    made = LeafShap.of(model, spec)
    if made is not None:  # the explainer's splits are the classifier's (only leaf weights differ), so the leaves
        made.model = classifier  # are read from the classifier: a model loaded from JSON costs more per call
    with _LOCK:
        if (entry := _EXPLAINERS.get(id(classifier))) is not None and entry[0] is classifier:
            entry[2] = None  # a model's whole JSON is large: not kept once its tables are made
        if len(_TABLES) >= 4:
            _TABLES.pop(next(iter(_TABLES)))
        _TABLES[id(classifier)] = (classifier, made)
    return made


def shap_values(classifier: CatBoostClassifier, pool: Pool) -> np.ndarray:
    """The classifier's SHAP values of a pool, CatBoost's layout (rows × (columns + 1), the base value last): from
    its leaf tables where they exist, so a declaration gets the same values alone (the API) or in a batch."""
    tables = leaf_shap(classifier)
    if tables is not None:
        return tables.values(pool)
    return explainer(classifier).get_feature_importance(pool, type="ShapValues")


def _weighted(classifier: CatBoostClassifier) -> tuple[CatBoostClassifier, dict | None]:
    weights = np.asarray(classifier.get_leaf_weights())
    dimension = np.asarray(classifier.get_leaf_values()).size // max(len(weights), 1)  # values per leaf
    values = np.abs(np.asarray(classifier.get_leaf_values())).reshape(len(weights), dimension).sum(axis=1)
    if not ((weights == 0) & (values >= ZERO_APPROX)).any():
        return classifier, None
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.json"
        classifier.save_model(str(path), format="json")
        model = json.loads(path.read_text())
        for tree in model["oblivious_trees"]:
            leaf_values = tree["leaf_values"]
            for leaf, weight in enumerate(tree["leaf_weights"]):
                if weight == 0 and sum(abs(v) for v in leaf_values[leaf * dimension:(leaf + 1) * dimension]) >= ZERO_APPROX:
                    tree["leaf_weights"][leaf] = 1.0
        path.write_text(json.dumps(model))
        return CatBoostClassifier().load_model(str(path), format="json"), model
