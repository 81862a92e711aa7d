"""LeafShap gives CatBoost's own SHAP values from per-leaf tables: on classifiers with float splits (NaN included),
one-hot splits, CTRs of one categorical feature and of combinations (with float parts), a monotone constraint, a
regressor, a weighted blend and a model with a bias, every row explained (unseen categories, missing values) matches
`get_feature_importance(type="ShapValues")`; models it cannot reproduce exactly give None."""
from __future__ import annotations

import json
import pickle
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from catboost import CatBoostClassifier, CatBoostRegressor, Pool, sum_models

from features.prices import PriceBands
from training import explainer as explainer_module
from training.explainer import ZERO_APPROX, explainer, shap_values
from training.leaf_shap import LeafShap
from training.models import RiskModel
from training.store import load_risk_model, save_risk_model

CATS = ["hi", "lo", "mid", "tiny"]
FIT = dict(thread_count=1, verbose=0, random_seed=0, one_hot_max_size=4, max_ctr_complexity=3)
TOLERANCE = 1e-9


def _frame(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    hi, mid = rng.integers(0, 40, rows), rng.integers(0, 10, rows)
    frame = pd.DataFrame({
        "x": rng.normal(size=rows), "hi": hi.astype(str), "gap": rng.normal(size=rows),
        "lo": rng.integers(0, 3, rows).astype(str), "mono": rng.normal(size=rows),
        "mid": mid.astype(str), "tiny": rng.integers(0, 2, rows).astype(str)})
    frame.loc[rng.random(rows) < 0.15, "gap"] = np.nan
    score = (np.sin(hi) + 1.5 * np.cos(1.3 * hi + 2.1 * mid) + frame.x + np.nan_to_num(frame.gap, nan=1.0)
             + 0.8 * frame.mono + (frame.lo == "1") - 0.5 * (frame.tiny == "1"))
    label = (rng.random(rows) < 1 / (1 + np.exp(-score))).astype(int)
    return frame, label, score.to_numpy()


@pytest.fixture(scope="module")
def data():
    frame, label, score = _frame(2000, 1)
    explained, _, _ = _frame(300, 2)
    explained.loc[:40, "hi"] = "never-seen"
    explained.loc[30:60, "mid"] = "new"
    explained.loc[50:80, "x"] = np.nan
    explained.loc[70:90, "gap"] = np.nan
    return frame, label, score, Pool(explained, cat_features=CATS)


@pytest.fixture(scope="module")
def classifier(data):
    frame, label, _, _ = data
    return CatBoostClassifier(iterations=60, depth=6, monotone_constraints={"mono": 1}, **FIT).fit(
        frame, label, cat_features=CATS)


def _spec(model) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.json"
        model.save_model(str(path), format="json")
        return json.loads(path.read_text())


def _zero_weight_values(model) -> bool:
    return any(weight == 0 and abs(value) >= ZERO_APPROX for tree in _spec(model)["oblivious_trees"]
               for weight, value in zip(tree["leaf_weights"], tree["leaf_values"], strict=True))


def _assert_catboosts(model, pool: Pool) -> LeafShap:
    shap = LeafShap.of(model)
    assert shap is not None
    want = model.get_feature_importance(pool, type="ShapValues")
    got = shap.values(pool)
    assert got.shape == want.shape
    assert np.abs(want[:, :-1]).max() > 0.1  # the comparison is of real contributions
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE)
    return shap


def test_classifier_splits_of_every_kind_match_catboost(classifier, data):
    spec = _spec(classifier)
    kinds = {split["split_type"] for tree in spec["oblivious_trees"] for split in tree["splits"] or []}
    assert kinds == {"FloatFeature", "OneHotFeature", "OnlineCtr"}
    ctr_cats = [sum(e["combination_element"] == "cat_feature_value" for e in ctr["elements"])
                for ctr in spec["features_info"]["ctrs"]]
    assert max(ctr_cats) >= 2 and min(ctr_cats) == 1  # CTRs of one feature and of combinations are split on
    assert any(e["combination_element"] == "float_feature" for ctr in spec["features_info"]["ctrs"]
               for e in ctr["elements"])
    model = explainer(classifier)
    assert not _zero_weight_values(model)
    _assert_catboosts(model, data[3])


def test_zero_weight_leaves_with_values_give_none(classifier):
    assert (LeafShap.of(classifier) is None) == _zero_weight_values(classifier)
    if _zero_weight_values(classifier):
        assert LeafShap.of(explainer(classifier)) is not None


def test_one_row_and_leaf_indexes_give_the_same_values(classifier, data):
    model = explainer(classifier)
    shap = LeafShap.of(model)
    pool = data[3]
    leaves = model.calc_leaf_indexes(pool)
    np.testing.assert_array_equal(shap.from_leaves(leaves), shap.values(pool))
    one = pool.slice([57])
    np.testing.assert_allclose(shap.values(one), model.get_feature_importance(one, type="ShapValues"),
                               rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(shap.from_leaves(leaves[57]), shap.values(one), rtol=0, atol=1e-12)


def test_rows_in_parts_and_threads_get_the_bits_they_get_in_one_part(classifier, data):
    """More rows than a part (`_ROWS`) are summed a part at a time on several threads: each row's values are
    those it gets among a few rows, bit for bit, wherever the parts cut."""
    from training.leaf_shap import _ROWS

    model = explainer(classifier)
    shap = LeafShap.of(model)
    leaves = model.calc_leaf_indexes(data[3])
    many = np.tile(leaves, (2 * _ROWS // len(leaves) + 2, 1))[:2 * _ROWS + 37]
    assert len(many) > 2 * _ROWS
    np.testing.assert_array_equal(shap.from_leaves(many), np.tile(shap.from_leaves(leaves), (len(many) // len(leaves) + 1, 1))[:len(many)])


def test_a_pool_beyond_a_part_reads_its_leaves_a_part_at_a_time_with_the_same_bits(classifier, data, monkeypatch):
    from training import leaf_shap

    monkeypatch.setattr(leaf_shap, "_ROWS", 64)  # parts of 64 rows, the last one short
    model = explainer(classifier)
    shap = LeafShap.of(model)
    pool = data[3]
    assert pool.num_row() > 2 * 64 and pool.num_row() % 64
    np.testing.assert_array_equal(shap.values(pool), shap.from_leaves(model.calc_leaf_indexes(pool)))


def test_regressor_matches_catboost(data):
    frame, _, score, pool = data
    regressor = CatBoostRegressor(iterations=40, depth=5, **FIT).fit(frame, score, cat_features=CATS)
    _assert_catboosts(explainer(regressor), pool)


def test_weighted_blend_matches_catboost(classifier, data):
    frame, label, _, pool = data
    other = CatBoostClassifier(iterations=30, depth=4, **{**FIT, "random_seed": 7}).fit(frame, label, cat_features=CATS)
    blend = sum_models([classifier, other], weights=[0.7, 0.4])
    _assert_catboosts(explainer(blend), pool)


def test_bias_goes_to_the_base_value_and_a_scale_gives_none(classifier, data):
    model = explainer(classifier).copy()
    before = LeafShap.of(model).values(data[3])
    model.set_scale_and_bias(1.0, 0.75)
    after = _assert_catboosts(model, data[3]).values(data[3])
    np.testing.assert_allclose(after[:, -1] - before[:, -1], 0.75, rtol=0, atol=1e-12)
    model.set_scale_and_bias(2.0, 0.75)  # CatBoost refuses SHAP values for it
    assert LeafShap.of(model) is None


def test_non_symmetric_and_multiclass_models_give_none(data):
    frame, label, _, _ = data
    for policy in ("Depthwise", "Lossguide"):
        tree = CatBoostClassifier(iterations=5, depth=4, grow_policy=policy, **FIT).fit(frame, label, cat_features=CATS)
        assert LeafShap.of(tree) is None
    classes = label + (frame.x > 1).to_numpy()
    multi = CatBoostClassifier(iterations=5, depth=4, loss_function="MultiClass", **FIT).fit(
        frame, classes, cat_features=CATS)
    assert LeafShap.of(multi) is None


def test_a_model_pickled_or_stored_carries_its_tables_and_explains_alike_without_making_them(classifier, data,
                                                                                               monkeypatch, tmp_path):
    """A RiskModel's SHAP tables travel with it (in its pickle, beside its files in the store): the copy explains
    each row with the same bits, and never exports its classifier to make them again."""
    explained = data[3]
    model = RiskModel(classifier=classifier, categorical=CATS, numeric=["x", "gap", "mono"], price_bands=PriceBands())
    expected = shap_values(classifier, explained)
    copies = [pickle.loads(pickle.dumps(model)), load_risk_model(save_risk_model(model, tmp_path / "stored"))]
    monkeypatch.setattr(explainer_module, "_weighted", lambda _: pytest.fail("the tables were made again"))
    for copy in copies:
        assert copy.classifier is not classifier and copy.stored_tables is not None
        assert copy.shap_tables().model is copy.classifier
        assert np.array_equal(shap_values(copy.classifier, explained), expected)
