"""The backtest (BACUDA protocol): capacity, label revelation, refits, determinism and the metrics."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.errors import UserError
from features.prices import PriceBands
from features.profiles import ProfileIndex
from features.simulator import simulate
from serving.backtest import (
    BacktestConfig,
    BacktestData,
    Knowledge,
    from_labelled,
    from_world,
    label_free,
    revealed_profiles,
    run_backtest,
    shared_features,
    weekly_table,
    with_profiles,
)
from serving.selection import capacity, select, split_exploration, top_k
from tests.conftest import FAST

CONFIG = BacktestConfig(warmup_weeks=4, max_weeks=5, retrain_every=2, fit=FAST, seed=11)


@pytest.fixture(scope="module")
def data() -> BacktestData:
    """Ten weeks of about 2,000 declarations each; the drift date falls in week 7."""
    return from_world(simulate(20_000, seed=3, days=70))


@pytest.fixture(scope="module")
def replayed(data):
    return run_backtest(data, CONFIG)


def _picks(result, policy: str) -> list[list[str]]:
    chosen = result.selections[result.selections["policy"] == policy]
    return [sorted(g["declaration_id"]) for _, g in chosen.groupby("week")]


# ---------------------------------------------------------------- selection primitives


@pytest.mark.parametrize(("rows", "share", "expected"), [(100, 0.07, 7), (101, 0.05, 6), (100, 0.05, 5), (0, 0.05, 0),
                                                          (3, 1.0, 3), (19, 0.05, 1)])
def test_capacity_is_the_ceiling_of_the_share(rows, share, expected):
    assert capacity(rows, share) == expected


def test_top_k_breaks_ties_by_the_seeded_draw():
    scores = np.array([0.5, 0.9, 0.5, 0.5, 0.1])
    draw = np.array([3, 0, 1, 2, 0], dtype="uint64")
    assert top_k(scores, 3, draw).tolist() == [1, 2, 3]


def test_hybrid_keeps_the_capacity_and_explores_outside_the_top():
    assert split_exploration(10, 0.1) == (9, 1) and split_exploration(96, 0.1) == (86, 10)
    assert split_exploration(3, 0.0) == (3, 0)
    scores = np.linspace(1, 0, 50)
    draw = np.arange(50, dtype="uint64")[::-1].copy()  # the draw prefers the lowest scores
    exploit, explored = select(scores, 10, 0.2, draw)
    assert exploit.tolist() == list(range(8))
    assert explored.tolist() == [49, 48]


@pytest.mark.parametrize("change", [{"capacity": 0}, {"exploration": 1.5}, {"retrain_every": 0},
                                    {"policies": ("model", "oracle")}, {"policies": ()}, {"warmup_share": 1.0}])
def test_config_refuses_impossible_settings(change):
    with pytest.raises(UserError, match="backtest"):
        dataclasses.replace(CONFIG, **change)


# ---------------------------------------------------------------- metrics


def test_weekly_metrics_on_a_hand_made_case():
    records = pd.DataFrame({
        "week": [1, 2, 1, 2], "week_start": pd.to_datetime(["2024-01-01", "2024-01-08"] * 2),
        "policy": ["a", "a", "b", "b"], "declarations": 100, "selected": [5, 5, 5, 5],
        "frauds_found": [2.0, 4.0, 0.0, 1.0], "frauds_total": [8.0, 2 * 4.0, 8.0, 8.0],
        "revenue_found": [30.0, 0.0, 0.0, 10.0], "revenue_total": [100.0, 50.0, 100.0, 50.0],
        "explored": [0, 0, 1, 1], "explored_frauds": [0.0, 0.0, 0.0, 1.0], "retrained": False, "seconds": 0.0,
    })
    out = weekly_table(records, drift_date=pd.Timestamp("2024-01-08")).set_index(["policy", "week"])
    a1, a2 = out.loc[("a", 1)], out.loc[("a", 2)]
    assert (a1["precision"], a1["recall"], a1["revenue_share"]) == (0.4, 0.25, 0.3)
    assert (a2["precision"], a2["recall"], a2["revenue_share"]) == (0.8, 0.5, 0.0)
    assert (a2["cum_precision"], a2["cum_recall"], a2["cum_revenue_share"]) == (0.6, 6 / 16, 30 / 150)
    assert out.loc[("b", 2), "cum_explored_frauds"] == 1 and out.loc[("b", 2), "cum_precision"] == 0.1
    assert not a1["after_drift"] and a2["after_drift"]


# ---------------------------------------------------------------- features from revealed labels only


def test_shared_features_plus_policy_profiles_equal_build_features(data):
    rows = data.frame.iloc[6000:6400]
    labelled = data.history_labels.iloc[:6000]
    history = data.frame.iloc[:6000].assign(**{c: labelled[c].to_numpy() for c in labelled})
    bands = PriceBands.fit(data.frame.iloc[:6000])
    index = revealed_profiles(history[history["inspected"] == 1], ProfileIndex(label_free(data.frame)))
    expected = build_features(rows, bands=bands, profiles=index)
    got = with_profiles(shared_features(rows, bands), rows, index)
    pd.testing.assert_frame_equal(got.X, expected.X)
    assert got.numeric == expected.numeric and got.categorical == expected.categorical


def test_a_revealed_label_counts_from_the_next_week_not_the_same_week(data):
    keyed = label_free(data.frame)
    row = data.frame.iloc[[5000]]
    last_day = row["declaration_date"].iloc[0].normalize() + pd.Timedelta(days=3)
    known = Knowledge()
    known.add(np.array([5000]), np.array([1], dtype="int8"), np.array([10.0]),
              np.array([last_day.to_datetime64()], dtype="datetime64[us]"), pd.DataFrame(index=[0]))
    index = revealed_profiles(known.labels_frame(keyed), ProfileIndex(keyed))
    same_day = index.lookup(row.assign(declaration_date=last_day))
    next_day = index.lookup(row.assign(declaration_date=last_day + pd.Timedelta(days=1)))
    assert same_day["importer_inspections"].iloc[0] == 0
    assert next_day["importer_inspections"].iloc[0] == 1


# ---------------------------------------------------------------- the replay


def test_each_policy_selects_exactly_its_capacity_every_week(replayed):
    weekly = replayed.weekly
    assert set(weekly["policy"]) == {"model", "hybrid", "targeted", "random", "rules"} and weekly["week"].nunique() == 5
    expected = weekly["declarations"].map(lambda n: capacity(n, CONFIG.capacity))
    assert (weekly["selected"] == expected).all()
    counts = replayed.selections.groupby(["policy", "week"])["declaration_id"].nunique()
    assert (counts.to_numpy() == weekly.set_index(["policy", "week"]).loc[counts.index, "selected"].to_numpy()).all()
    hybrid = replayed.selections[replayed.selections["policy"] == "hybrid"]
    explored = hybrid.groupby("week")["stratum"].apply(lambda s: (s == "exploration").sum())
    model_weeks = weekly[weekly["policy"] == "hybrid"].set_index("week")["selected"]
    assert (explored == model_weeks.map(lambda k: split_exploration(k, CONFIG.exploration)[1])).all()


def test_models_refit_every_k_weeks_and_only_model_policies_fit(replayed):
    fitted = replayed.weekly.pivot(index="week", columns="policy", values="retrained")
    assert fitted["model"].tolist() == [True, False, True, False, True]
    assert fitted["hybrid"].tolist() == fitted["model"].tolist() == fitted["targeted"].tolist()
    assert not fitted["random"].any() and not fitted["rules"].any()


def test_models_train_only_on_their_own_selections_and_the_warmup_labels(replayed, data):
    warmup = set(replayed.warmup_labelled_ids)
    before = (data.frame["declaration_date"] < pd.Timestamp(replayed.summary.replay_start)).to_numpy()
    inspected = (data.history_labels["inspected"] == 1).to_numpy()
    assert warmup == set(data.frame["declaration_id"][before & inspected]) and len(warmup) > 100
    for policy in ("model", "hybrid", "targeted"):
        trained = set(replayed.training_ids[policy])
        own = set(replayed.selections.loc[replayed.selections["policy"] == policy, "declaration_id"])
        assert trained <= own | warmup
        weeks_before_last_fit = replayed.selections[(replayed.selections["policy"] == policy)
                                                    & (replayed.selections["week"] < 5)]
        assert set(weeks_before_last_fit["declaration_id"]) <= trained  # every earlier reveal is used at the refit
        revealed_after_the_fit = set(replayed.selections.loc[replayed.selections["week"] == 5, "declaration_id"])
        assert not trained & revealed_after_the_fit


def test_outcomes_of_unselected_rows_never_change_any_selection(replayed, data):
    """Scramble the oracle of every row no policy selected, and the historical labels after the warm-up."""
    selected = set(replayed.selections["declaration_id"])
    untouched = data.frame["declaration_id"].isin(selected).to_numpy()
    rng = np.random.default_rng(0)
    oracle = data.oracle.copy()
    oracle.loc[~untouched, "fraud"] = rng.integers(0, 2, (~untouched).sum()).astype("int8")
    oracle.loc[~untouched, "revenue"] = rng.uniform(0, 1e6, (~untouched).sum())
    labels = data.history_labels.copy()
    after_warmup = (data.frame["declaration_date"] >= pd.Timestamp(replayed.summary.replay_start)).to_numpy()
    labels.loc[after_warmup, "inspected"] = 1
    labels.loc[after_warmup, "fraud"] = 1
    poisoned = dataclasses.replace(data, oracle=oracle, history_labels=labels)
    again = run_backtest(poisoned, CONFIG)
    for policy in ("model", "hybrid", "targeted", "random", "rules"):
        assert _picks(again, policy) == _picks(replayed, policy), policy


def test_random_policy_is_reproducible_and_independent_of_the_others(replayed, data):
    alone = run_backtest(data, dataclasses.replace(CONFIG, policies=("random",)))
    assert _picks(alone, "random") == _picks(replayed, "random")
    other_seed = run_backtest(data, dataclasses.replace(CONFIG, policies=("random",), seed=12))
    assert _picks(other_seed, "random") != _picks(replayed, "random")


def test_summary_reports_pre_and_post_drift_per_policy(replayed, data):
    summary = replayed.summary
    assert summary.drift_date == str(data.drift_date.date())
    for policy in ("model", "hybrid", "random", "rules"):
        p = summary.policies[policy]
        assert p.pre_drift.weeks + p.post_drift.weeks == p.overall.weeks == 5
        assert p.pre_drift.frauds_found + p.post_drift.frauds_found == p.overall.frauds_found
    assert summary.policies["model"].overall.precision > 2 * summary.policies["random"].overall.precision
    assert 0 <= summary.policies["hybrid"].hit_rates.exploration <= 1
    assert summary.policies["model"].hit_rates is None
    assert any("collapse" in line for line in summary.findings)


def test_the_summary_dict_is_flat_per_policy_and_json_able(replayed):
    out = replayed.summary.to_dict()
    assert json.loads(json.dumps(out)) == out
    assert list(out)[:16] == ["source", "universe_rows", "unlabelled_rows_left_out", "weeks_total", "warmup_weeks",
                              "weeks", "replay_start", "replay_rows", "warmup_labelled", "drift_date", "capacity",
                              "exploration", "retrain_every", "iterations", "seed", "policies"]
    assert list(out)[16:] == ["rulebook", "frauds_by_typology", "scheme_at_random", "findings"]
    hybrid, model = out["policies"]["hybrid"], out["policies"]["model"]
    assert list(hybrid) == ["weeks", "selected", "frauds_found", "frauds_total", "precision", "recall", "revenue_share",
                            "pre_drift", "post_drift", "refits", "seconds_per_week", "revenue_found",
                            "new_scheme_frauds_found", "weeks_to_first_detection",
                            *(["detection_chance_at_random"] if hybrid["weeks_to_first_detection"] else []),
                            "exploration_hit_rate",
                            "exploitation_hit_rate", "found_by_typology", "alert_refits", "compliance_estimate"]
    assert set(out["policies"]["targeted"]) >= {"compliance_estimate", "strata", "bandit", "new_scheme_frauds_found"}
    assert {"estimate", "ci_low", "ci_high", "truth", "weekly_coverage"} <= set(hybrid["compliance_estimate"])
    assert "compliance_estimate" not in model
    assert "exploration_hit_rate" not in model and model["pre_drift"]["weeks"] + model["post_drift"]["weeks"] == 5
    assert out["policies"]["random"]["precision"] == replayed.summary.policies["random"].overall.precision


def test_a_users_file_replays_its_labelled_rows_only():
    world = simulate(3_000, seed=5, days=70)
    declarations = world.declarations.drop(columns=["inspected", "critical", "control_date", "revenue"])
    data = from_labelled(declarations, "export.csv")
    labelled = int(world.declarations["fraud"].notna().sum())
    assert len(data.frame) == labelled and data.left_out == len(declarations) - labelled
    assert data.oracle["fraud"].sum() == world.declarations["fraud"].sum()
    assert data.oracle["revenue"].isna().all()  # no revenue column: revenue metrics are absent, not zero
    assert "fraud" not in data.frame and data.drift_date is None
    with pytest.raises(UserError, match="fraud label"):
        from_labelled(declarations.drop(columns="fraud"), "export.csv")


def test_the_replayed_declarations_carry_no_label(data):
    assert not {"inspected", "fraud", "revenue", "critical", "control_date"} & set(data.frame.columns)
    assert len(data.oracle) == len(data.history_labels) == len(data.frame)


def test_a_backtest_replays_the_lane_policys_capacity_exploration_and_rules():
    from serving.lanes import LanePolicy
    from serving.selection import Rules

    lanes = LanePolicy(red_share=0.07, exploration_share=0.2, rules=Rules(watchlist_importers=["IMP1"]))
    config = BacktestConfig.from_lanes(lanes, warmup_weeks=3)
    assert (config.capacity, config.exploration, config.rules, config.warmup_weeks) == (0.07, 0.2, lanes.rules, 3)
    assert BacktestConfig.from_lanes(lanes, capacity=0.03).capacity == 0.03
    with pytest.raises(UserError, match="red_per_office_day"):
        BacktestConfig.from_lanes(LanePolicy(red_per_office_day=4))
    assert BacktestConfig.from_lanes(LanePolicy(red_per_office_day=4), capacity=0.05).capacity == 0.05


# ---------------------------------------------------------------- what the replay builds once a week and shares


def test_a_weeks_queries_asked_of_an_index_give_that_index_lookup(data):
    from serving.backtest.policies import Queries

    rows, keyed = data.frame.iloc[6000:6400], label_free(data.frame)
    labelled = data.history_labels.iloc[:6000]
    history = keyed.iloc[:6000].assign(**{c: labelled[c].to_numpy() for c in labelled})
    index = revealed_profiles(history[history["inspected"] == 1], ProfileIndex(keyed))
    shared = shared_features(rows, PriceBands.fit(data.frame.iloc[:6000]))
    once = with_profiles(shared, rows, index, Queries.of(rows))
    pd.testing.assert_frame_equal(once.X, with_profiles(shared, rows, index).X)
    looked_up = index.lookup(rows.reset_index(drop=True)).astype("float64")
    pd.testing.assert_frame_equal(once.X[looked_up.columns], looked_up)


def test_a_policys_profile_index_is_shared_by_its_copies_until_its_next_reveal(data):
    keyed = label_free(data.frame)
    filings = ProfileIndex(keyed)
    day = data.frame["declaration_date"].iloc[5000].normalize()
    control = np.array([day.to_datetime64()], dtype="datetime64[us]")
    known = Knowledge()
    known.add(np.array([100]), np.array([0], dtype="int8"), np.array([0.0]), control, pd.DataFrame(index=[0]))
    built = known.profiles(keyed, filings)
    twin = known.copy()  # as the warm-up's knowledge is copied to each model policy
    assert twin.profiles(keyed, filings) is built and known.profiles(keyed, filings) is built
    known.add(np.array([5000]), np.array([1], dtype="int8"), np.array([5.0]), control, pd.DataFrame(index=[0]))
    query = data.frame.iloc[[5000]].assign(declaration_date=day + pd.Timedelta(days=1))
    after = known.profiles(keyed, filings).lookup(query)
    pd.testing.assert_frame_equal(after, revealed_profiles(known.labels_frame(keyed), filings).lookup(query))
    before = twin.profiles(keyed, filings).lookup(query)
    assert after["importer_inspections"].iloc[0] == before["importer_inspections"].iloc[0] + 1


def test_progress_after_each_week_is_the_weekly_tables_cumulative_precision(data, replayed):
    progress = []
    result = run_backtest(data, CONFIG, on_week=progress.append)
    pd.testing.assert_frame_equal(result.selections, replayed.selections)
    assert [p["week"] for p in progress] == sorted(result.weekly["week"].unique())
    for p in progress:
        week = result.weekly[result.weekly["week"] == p["week"]].set_index("policy")
        assert p["retrained"] == bool(week["retrained"].any())
        expected = week["cum_precision"].to_dict()
        assert p["precision"].keys() == expected.keys()
        assert all(p["precision"][k] == v or (np.isnan(p["precision"][k]) and np.isnan(v)) for k, v in expected.items())


def test_a_history_whose_first_replayed_week_is_empty_still_fits_before_it_selects(data):
    """A sparse history (a user's few labelled rows) can leave the first week after the warm-up without a
    declaration: the model policies fit with the first week that has some, not only at the refit cadence."""
    week = ((data.frame["declaration_date"] - data.frame["declaration_date"].min()).dt.days // 7).to_numpy()
    keep = week != CONFIG.warmup_weeks
    sparse = dataclasses.replace(data, frame=data.frame[keep].reset_index(drop=True),
                                 history_labels=data.history_labels[keep].reset_index(drop=True),
                                 oracle=data.oracle[keep].reset_index(drop=True))
    result = run_backtest(sparse, dataclasses.replace(CONFIG, retrain_every=50, policies=("model", "hybrid")))
    assert result.weekly["week"].min() == 2  # week 1 had nothing to select
    assert result.summary.to_dict()["policies"]["model"]["refits"] == 1


def test_the_targeted_policy_keeps_its_strata_disjoint_and_within_the_capacity(replayed):
    picks = replayed.selections[replayed.selections["policy"] == "targeted"]
    assert not picks.duplicated(["week", "declaration_id"]).any()  # model, sources and random never overlap
    per_week = picks.groupby("week")["stratum"].value_counts().unstack(fill_value=0)
    bounds = CONFIG.targeting
    weekly = replayed.weekly[replayed.weekly["policy"] == "targeted"].set_index("week")
    k = weekly["selected"]
    sources = per_week[[c for c in per_week.columns if c not in ("model", "random")]].sum(axis=1)
    assert (per_week["random"] >= 1).all() and (per_week.sum(axis=1) == k).all()
    assert (sources <= (bounds.max_share * k).round()).all()
    assert weekly["ci_low"].notna().all()  # every week has a random stratum, so an estimate


def test_the_weekly_estimate_reads_only_the_policys_own_reveals(replayed, data):
    """Scrambling the oracle of rows the targeted policy did not pick leaves its estimates unchanged (the truth,
    for coverage, is the only other reader)."""
    mine = set(replayed.selections.loc[replayed.selections["policy"] == "targeted", "declaration_id"])
    others = ~data.frame["declaration_id"].isin(mine).to_numpy()
    oracle = data.oracle.copy()
    oracle.loc[others, "fraud"] = np.random.default_rng(1).integers(0, 2, others.sum()).astype("int8")
    again = run_backtest(dataclasses.replace(data, oracle=oracle), dataclasses.replace(CONFIG, policies=("targeted",)))
    before = replayed.weekly[replayed.weekly["policy"] == "targeted"][["estimate", "ci_low", "ci_high"]]
    after = again.weekly[["estimate", "ci_low", "ci_high"]]
    assert np.allclose(before.to_numpy(), after.to_numpy(), equal_nan=True)


def test_the_chance_that_random_selection_finds_the_scheme_by_each_week_is_the_hypergeometric_miss_compounded():
    from serving.backtest.report import at_random

    weekly = pd.DataFrame({"week": [1, 1, 2, 3, 5, 6], "policy": ["model", "random", "model", "model", "model", "model"],
                           "declarations": [100, 100, 100, 40, 60, 30],
                           "new_scheme_total": [0, 0, 3, 0, 2, 29]})
    chance = at_random(weekly, 0.05)  # 5 picks of 100, 2 of 40, 3 of 60, 2 of 30
    miss2 = (97 * 96 * 95 * 94 * 93) / (100 * 99 * 98 * 97 * 96)  # 5 draws of 100 miss all 3
    miss5 = (58 * 57 * 56) / (60 * 59 * 58)
    assert chance[:4] == pytest.approx([1 - miss2, 1 - miss2, 1 - miss2, 1 - miss2 * miss5])  # week 4 has no row
    assert chance[4] == 1.0  # 2 draws of 30 cannot both miss 29 of them
    rng = np.random.default_rng(0)  # and by simulation: the first week's draws
    hits = [(rng.permutation(100)[:5] < 3).any() for _ in range(20_000)]
    assert np.mean(hits) == pytest.approx(chance[0], abs=0.01)
    assert at_random(weekly.assign(new_scheme_total=0), 0.05) is None


def test_a_simulated_scheme_reports_each_policys_detection_week_and_its_chance_at_random(replayed):
    out = replayed.summary.to_dict()
    chance = out["scheme_at_random"]["chance_by_week"]
    assert chance == sorted(chance) and all(0 <= c <= 1 for c in chance)
    for name, policy in out["policies"].items():
        week = policy["weeks_to_first_detection"]
        assert (week is None) == ("detection_chance_at_random" not in policy), name
        if week is not None and week <= len(chance):
            assert policy["detection_chance_at_random"] == chance[week - 1]
    from flows.render import backtest_markdown

    said = backtest_markdown(out)
    for name, policy in out["policies"].items():
        week = policy["weeks_to_first_detection"]
        found = policy["new_scheme_frauds_found"]
        assert (f"{name} {found} (never)" if week is None else
                f"{name} {found} (week {week}: {policy['detection_chance_at_random']:.0%} at random)") in said
    assert f"would have found one by the scheme's week 1{', 2' if len(chance) > 1 else ''}" in said
    assert f": {', '.join(f'{c:.0%}' for c in chance)}." in said
