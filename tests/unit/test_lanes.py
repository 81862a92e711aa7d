"""Lane allocation: capacity and exploration respected exactly, rules first, the same lanes on a re-score."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from serving.lanes import LanePolicy, Rules, allocate, load_policy
from serving.selection import Thresholds, capacity, draw_one, exploration_draw, lowest_draws, rule_hits, top_k


def _batch(n: int = 1000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "declaration_id": [f"D{i:05d}" for i in range(n)],
        "risk_score": rng.random(n),
        "expected_revenue": rng.random(n) * 1000,
        "importer_id": [f"I{i % 50}" for i in range(n)],
        "hs_code": ["870323"] * (n - 3) + ["930190", "300490", "870323"],
        "origin_country": ["JP"] * (n - 1) + ["KP"],
        "office_id": np.where(np.arange(n) % 2 == 0, "CO-CTG", "CO-BOG"),
        "declaration_date": pd.Timestamp("2024-05-01") + pd.to_timedelta(np.arange(n) % 3, unit="D"),
    })


POLICY = LanePolicy(red_share=0.05, exploration_share=0.2, yellow_share=0.1, seed=7)


def test_capacity_exploration_and_yellow_are_exact():
    lanes = allocate(_batch(), POLICY)
    assert (lanes["selected_by"] == "rule").sum() == 0
    red = lanes["lane"] == "red"
    assert red.sum() == 50
    assert ((lanes["selected_by"] == "exploration") & red).sum() == 10
    assert ((lanes["selected_by"] == "model") & red).sum() == 40
    assert (lanes["lane"] == "yellow").sum() == 100


def test_model_selections_are_the_highest_ranked():
    batch = _batch()
    lanes = allocate(batch, POLICY)
    model_red = batch["risk_score"][(lanes["selected_by"] == "model") & (lanes["lane"] == "red")]
    others = batch["risk_score"][lanes["selected_by"] != "model"]
    assert model_red.min() > others[lanes["lane"] != "red"].max()
    yellow = batch["risk_score"][lanes["lane"] == "yellow"]
    assert yellow.min() >= batch["risk_score"][lanes["lane"] == "green"].max()


def test_ranking_by_expected_revenue():
    batch = _batch()
    lanes = allocate(batch, POLICY.model_copy(update={"rank_by": "expected_revenue"}))
    model_red = batch["expected_revenue"][(lanes["selected_by"] == "model") & (lanes["lane"] == "red")]
    assert len(model_red) == 40 and model_red.min() >= batch["expected_revenue"].nlargest(40).min()


def test_rule_hits_always_go_red_outside_capacity():
    policy = POLICY.model_copy(update={"rules": Rules(watchlist_importers=["I3"], prohibited_hs_prefixes=["9301"],
                                                      licensed_hs_prefixes=["3004"], embargoed_origins=["KP"])})
    batch = _batch()
    lanes = allocate(batch, policy)
    ruled = lanes["selected_by"] == "rule"
    expected = batch["importer_id"].eq("I3") | batch["hs_code"].isin(["930190", "300490"]) | batch["origin_country"].eq("KP")
    assert ruled.equals(expected)
    assert (lanes.loc[ruled, "lane"] == "red").all()
    assert ((lanes["lane"] == "red") & ~ruled).sum() == 50  # capacity untouched by rule hits
    assert lanes.loc[batch["origin_country"] == "KP", "rule"].item() == "origin KP is under embargo"


def test_a_rescore_gives_the_same_lanes_whatever_the_row_order():
    batch = _batch()
    first = allocate(batch, POLICY).set_index(batch["declaration_id"])
    shuffled = batch.sample(frac=1, random_state=3)
    second = allocate(shuffled, POLICY).set_index(shuffled["declaration_id"])
    pd.testing.assert_frame_equal(first.sort_index(), second.sort_index())


def test_another_seed_draws_other_explorations():
    batch = _batch()
    a = allocate(batch, POLICY)["selected_by"] == "exploration"
    b = allocate(batch, POLICY.model_copy(update={"seed": 8}))["selected_by"] == "exploration"
    assert a.sum() == b.sum() and not a.equals(b)


def test_capacity_per_office_per_day():
    batch = _batch(600)
    policy = POLICY.model_copy(update={"red_per_office_day": 7, "exploration_share": 2 / 7})
    lanes = allocate(batch, policy)
    red = batch[lanes["lane"] == "red"]
    per_group = red.groupby(["office_id", "declaration_date"]).size()
    assert len(per_group) == 6 and (per_group == 7).all()
    explored = batch[lanes["selected_by"] == "exploration"].groupby(["office_id", "declaration_date"]).size()
    assert (explored == 2).all()


@pytest.mark.parametrize("n", [3, 7, 19, 101])
def test_small_batches_round_capacity_up(n):
    lanes = allocate(_batch(n).assign(origin_country="JP"), POLICY)
    assert (lanes["lane"] == "red").sum() == math.ceil(0.05 * n)


def test_seven_percent_of_a_hundred_is_seven_in_batch_real_time_and_backtest():
    """One capacity for all three: 0.07·100 is 7.000000000000001 in floating point, and ⌈·⌉ of it must still be 7."""
    from types import SimpleNamespace

    from serving.backtest import BacktestConfig
    from serving.backtest.policies import _select

    batch = _batch(100).assign(origin_country="JP")
    policy = POLICY.model_copy(update={"red_share": 0.07, "exploration_share": 0.2})
    assert capacity(100, 0.07) == 7
    lanes = allocate(batch, policy)
    assert (lanes["lane"] == "red").sum() == 7 and (lanes["selected_by"] == "exploration").sum() == 1
    # Real time: thresholds learned from that batch, then each declaration alone.
    decisions = pd.concat([batch[["declaration_id", "risk_score", "expected_revenue"]], lanes], axis=1)
    thresholds = Thresholds.from_decisions(decisions.assign(batch_id="b"), "risk_score", policy.seed)
    realtime = pd.concat([
        thresholds.lanes(np.array([""], dtype=object), batch["risk_score"].iloc[[i]].to_numpy(),
                         exploration_draw(batch["declaration_id"].iloc[[i]], policy.seed))
        for i in range(len(batch))], ignore_index=True)
    assert (realtime["lane"] == "red").sum() == 7
    assert realtime[["lane", "selected_by"]].equals(lanes[["lane", "selected_by"]].reset_index(drop=True))
    # The backtest: a week of 100 declarations at a 7 % capacity, under every policy that needs no model.
    replay = SimpleNamespace(config=BacktestConfig(capacity=0.07, seed=3), rulebook=None)
    chosen = _select(replay, "random", batch, None).chosen
    assert len(chosen) == 7


def test_ties_are_broken_by_the_seeded_draw_not_the_row_order():
    batch = _batch(200).assign(risk_score=0.5, origin_country="JP")  # every score equal
    first = allocate(batch, POLICY).set_index(batch["declaration_id"])
    shuffled = batch.iloc[::-1]
    second = allocate(shuffled, POLICY).set_index(shuffled["declaration_id"])
    pd.testing.assert_frame_equal(first.sort_index(), second.sort_index())
    draw = exploration_draw(batch["declaration_id"], POLICY.seed)
    model = first["selected_by"].eq("model") & first["lane"].eq("red")
    expected = batch["declaration_id"].iloc[top_k(batch["risk_score"].to_numpy(), int(model.sum()), draw)]
    assert set(first.index[model.to_numpy()]) == set(expected)


def test_missing_scores_rank_last():
    assert top_k(np.array([np.nan, 0.2, 0.9, np.nan]), 3, np.zeros(4, dtype="uint64")).tolist() == [2, 1, 0]


def _full_sort_top_k(scores: np.ndarray, k: int, tiebreak: np.ndarray) -> np.ndarray:
    """top_k as a full sort of every row states it: missing last, highest score first, lowest draw, position."""
    return np.lexsort((tiebreak, -np.nan_to_num(scores, nan=0.0), np.isnan(scores)))[:max(k, 0)]


@pytest.mark.parametrize("seed", range(40))
def test_the_partial_sorts_pick_what_a_full_sort_picks_ties_and_missing_scores_included(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    scores = rng.choice(np.r_[rng.random(5), 0.0, -0.0, np.nan], size=n)  # few distinct values: ties at every cut
    draw = rng.integers(0, 6, size=n).astype("uint64")  # equal draws too: then the position decides
    for k in (0, 1, int(rng.integers(0, n + 1)), n - 1, n, n + 3):
        assert top_k(scores, k, draw).tolist() == _full_sort_top_k(scores, k, draw).tolist(), k
        assert lowest_draws(draw, k).tolist() == np.argsort(draw, kind="stable")[:max(k, 0)].tolist(), k


def test_rule_hits_name_the_rule():
    batch = _batch(10)
    hits = rule_hits(batch, Rules(embargoed_origins=["KP"]))
    assert hits.iloc[-1] == "origin KP is under embargo" and (hits.iloc[:-1] == "").all()


def test_the_policy_hash_changes_with_the_policy():
    assert POLICY.digest() != POLICY.model_copy(update={"red_share": 0.06}).digest()
    assert POLICY.digest() == LanePolicy(red_share=0.05, exploration_share=0.2, yellow_share=0.1, seed=7).digest()


def test_a_bad_policy_file_is_explained(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("red_share: 2\n")
    from features.errors import UserError

    with pytest.raises(UserError, match="red_share"):
        load_policy(path)


@pytest.mark.parametrize("policy", [POLICY, LanePolicy(red_per_office_day=9, exploration_share=0.3, seed=2)])
def test_inclusion_probabilities_sum_to_the_red_capacity_and_are_certain_for_rule_and_model_picks(policy):
    batch = _batch()
    lanes = allocate(batch, policy.model_copy(update={"rules": Rules(prohibited_hs_prefixes=["9301"])}))
    p = lanes["inclusion_probability"]
    certain = lanes["selected_by"].isin(["rule", "model"]) & lanes["lane"].eq("red")
    assert (p[certain] == 1).all() and (p[~certain] < 1).all() and (p > 0).all()
    assert p.sum() == pytest.approx((lanes["lane"] == "red").sum())  # the draws' probabilities add up to the draws
    explored = lanes["selected_by"] == "exploration"
    assert p[explored].nunique() <= (1 if policy.red_per_office_day is None else batch["office_id"].nunique() * 3)


def test_real_time_exploration_has_the_batchs_sampling_rate():
    batch = _batch(5000)
    lanes = allocate(batch, POLICY)
    thresholds = Thresholds.from_decisions(batch.assign(**lanes, batch_id="b"), "risk_score", POLICY.seed)
    rate = lanes.loc[lanes["selected_by"] == "exploration", "inclusion_probability"].iloc[0]
    assert thresholds.exploration_rate == pytest.approx(rate, rel=0.25)  # the draw's cut-off, as a probability


def test_a_batchs_draws_hashed_a_part_at_a_time_are_each_declarations_own(monkeypatch):
    from serving import selection

    ids = pd.Series([f"D{i}" for i in range(10)] + ["é-ü", ""])
    whole = exploration_draw(ids, POLICY.seed)
    monkeypatch.setattr(selection, "DRAW_ROWS", 3)
    parts = exploration_draw(ids, POLICY.seed)
    assert parts.tolist() == whole.tolist() == [draw_one(i, POLICY.seed) for i in ids]
    assert parts.dtype == np.uint64 and exploration_draw(ids.iloc[:0], POLICY.seed).dtype == np.uint64
