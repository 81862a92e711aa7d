"""Targeted exploration: the bandit's bounds, its learning, and the inclusion probabilities of a selection."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from serving.targeting import (
    MODEL,
    RANDOM,
    SOURCE_WORDS,
    SOURCES,
    Bandit,
    Targeting,
    allocation,
    combined,
    outcomes,
    select_targeted,
    source_columns,
    strongest,
    upper_p,
)


def _bandit(hits: list[float], trials: list[float]) -> Bandit:
    arms = (MODEL, *SOURCES)
    return Bandit(arms, 0.9, dict(zip(arms, hits, strict=True)), dict(zip(arms, trials, strict=True)))


@settings(max_examples=60, deadline=None)
@given(k=st.integers(0, 400), random_share=st.floats(0, 0.2), low=st.floats(0, 0.3), width=st.floats(0, 0.3),
       seed=st.integers(0, 10**6), rates=st.lists(st.floats(0, 1), min_size=len(SOURCES) + 1, max_size=len(SOURCES) + 1))
def test_the_allocation_stays_within_the_policys_bounds(k, random_share, low, width, seed, rates):
    policy = Targeting(random_share=random_share, min_share=low, max_share=min(low + width, 1 - random_share))
    trials = [50.0] * (len(SOURCES) + 1)
    slots = allocation(k, policy, _bandit([r * 50 for r in rates], trials), np.random.default_rng(seed))
    targeted = sum(slots[s] for s in policy.sources)
    assert sum(slots.values()) == k and min(slots.values()) >= 0
    assert targeted <= round(policy.max_share * k)
    assert targeted >= min(round(policy.min_share * k), k - slots[RANDOM], round(policy.max_share * k))
    if k and random_share > 0:
        assert slots[RANDOM] >= 1


def test_thompson_sampling_gives_most_flexible_slots_to_the_arm_that_hits():
    bandit = _bandit([5, *(18 if s == "importer_mix_shift" else 1 for s in SOURCES)],  # importer_mix_shift hits 90 %
                     [20] * (len(SOURCES) + 1))
    policy = Targeting(sources=[s for s in SOURCES if s != "combined"], max_share=0.2, random_share=0.03)
    slots = allocation(100, policy, bandit, np.random.default_rng(0))
    assert slots["importer_mix_shift"] >= 15 and slots[MODEL] >= 100 - 3 - 20


def test_the_bandit_forgets_at_its_discount():
    bandit = _bandit([0] * (len(SOURCES) + 1), [0] * (len(SOURCES) + 1))
    bandit.update({"anomaly": (10, 10, 2.0)})
    assert bandit.mean("anomaly") == pytest.approx(11 / 12)
    for _ in range(60):
        bandit.update({})
    assert bandit.trials["anomaly"] == pytest.approx(10 * 0.9**60)
    assert bandit.expected["anomaly"] == pytest.approx(2 * 0.9**60) and bandit.lift("anomaly") == pytest.approx(1, abs=0.05)
    assert abs(bandit.mean("anomaly") - 0.5) < 0.05  # back near the prior


def test_a_policy_outside_its_bounds_is_refused():
    with pytest.raises(ValidationError, match="min_share"):
        Targeting(min_share=0.3, max_share=0.1)
    with pytest.raises(ValidationError, match="unknown sources"):
        Targeting(sources=["anomaly", "gossip"])


@pytest.mark.parametrize("missing", [0.0, 0.1])  # the share of rows each source has no score for
@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 500), seed=st.integers(0, 10**6), share=st.floats(0.01, 1))
def test_inclusion_probabilities_sum_to_the_capacity_and_strata_are_disjoint(missing, n, seed, share):
    rng = np.random.default_rng(seed)
    k = max(1, round(share * n))
    policy = Targeting(random_share=0.1, max_share=0.3)
    bandit = _bandit(list(rng.uniform(0, 20, len(SOURCES) + 1)), [20.0] * (len(SOURCES) + 1))
    slots = allocation(k, policy, bandit, rng)
    scores = {s: np.where(rng.random(n) < missing, np.nan, rng.random(n)) for s in SOURCES}
    flexible = min(k - slots[RANDOM], round(policy.max_share * k))
    chosen = select_targeted(rng.random(n), scores, slots, rng.integers(0, 2**63, n).astype("uint64"), flexible)
    assert len(chosen.positions) == len(set(chosen.positions.tolist())) == k
    assert chosen.probability.sum() == pytest.approx(k)
    assert (chosen.probability[chosen.positions[chosen.stratum != RANDOM]] == 1).all()
    random = chosen.positions[chosen.stratum == RANDOM]
    assert ((chosen.probability[random] < 1) | (len(random) == n - (k - len(random)))).all()
    risk = rng.random(n)
    found = outcomes(chosen, rng.integers(0, 2, k).astype(float), risk)
    if not missing:  # every row scored: each source fills its slots
        assert found[MODEL][1] == len(chosen.margin) <= slots[MODEL]
        assert all(found[s][1] == slots[s] for s in SOURCES if s in found)
    spare = sum(slots[s] - found[s][1] for s in SOURCES if s in found)  # a source takes only rows it scored
    assert all(found[s][1] <= slots[s] for s in SOURCES if s in found)
    assert found[MODEL][1] == len(chosen.margin) <= slots[MODEL] + spare
    for source, positions in chosen.by_stratum().items():
        if source in SOURCES:
            assert np.isfinite(scores[source][positions]).all()
    assert found[MODEL][2] == pytest.approx(risk[chosen.margin].sum())


def test_a_source_that_finds_what_the_model_does_not_expect_wins_the_mix_not_one_that_hits_as_expected():
    arms = (MODEL, "uncertainty", "importer_mix_shift")
    bandit = Bandit(arms, 0.9, {MODEL: 40, "uncertainty": 4, "importer_mix_shift": 5},
                    {MODEL: 100, "uncertainty": 20, "importer_mix_shift": 20},
                    {MODEL: 40, "uncertainty": 4, "importer_mix_shift": 0.5})  # the model expected 4 of 4, 0.5 of 5
    mix = bandit.mix(100, ["uncertainty", "importer_mix_shift"], np.random.default_rng(0))
    assert mix["importer_mix_shift"] > 90
    share = bandit.draw(100, ["uncertainty", "importer_mix_shift"], np.random.default_rng(0))
    assert share[MODEL] > 70  # at 20-25 % against the margin's 40 %, the sources win few flexible slots


def test_the_combined_source_ranks_rows_by_fishers_combination_of_their_ranks_under_each_signal():
    rng = np.random.default_rng(3)
    signals = {"anomaly": rng.random(1000), "leads": np.where(rng.random(1000) < 0.7, np.nan, rng.random(1000)),
               "importer_mix_shift": rng.integers(0, 3, 1000).astype(float)}
    p = {name: upper_p(score) for name, score in signals.items()}
    for name, score in signals.items():  # the share of the batch (n + 1) scored at least as high; 1 with no score
        finite = np.isfinite(score)
        by_hand = [(score[finite] >= v).sum() / 1001 for v in score[finite]]
        assert np.allclose(p[name][finite], by_hand) and (p[name][~finite] == 1).all()
    score = combined(signals.values())
    assert np.allclose(score, -sum(np.log(q) for q in p.values()), equal_nan=True)
    # a row at least as high under every signal, and higher under one, comes first
    a, b = 0, 1
    for name in signals:
        signals[name][[a, b]] = [0.99, 0.5] if name == "anomaly" else [2.0, 2.0]
    score = combined(signals.values())
    assert score[a] > score[b]
    assert np.isnan(combined([np.full(5, np.nan)])).all()  # no signal: no evidence, never a combined pick


def test_a_combined_pick_is_told_by_the_signals_that_ranked_it_in_the_top_of_its_batch():
    anomaly = np.arange(100, dtype=float)  # row 99 is the most unusual
    leads = np.full(100, np.nan)
    leads[99] = leads[98] = 1.0
    said = strongest({"anomaly": anomaly, "leads": leads}, np.array([99, 50]))
    assert said[0] == (f"{SOURCE_WORDS['anomaly']} (top 0.99 %); {SOURCE_WORDS['leads']} (top 2 %)")
    assert said[1] == ""  # in no signal's top 5 %


def test_a_combined_source_needs_known_signals():
    assert Targeting().sources == ["combined", "leads"] and "leads" in Targeting().combined_of
    with pytest.raises(ValidationError, match="combined_of"):
        Targeting(combined_of=["anomaly", "gossip"])
    with pytest.raises(ValidationError, match="combined_of"):
        Targeting(combined_of=["combined"])
    with pytest.raises(ValidationError, match="combined_of"):
        Targeting(combined_of=[])
    assert source_columns(Targeting(combined_of=["anomaly", "uncertainty"])) == ["source_leads", "source_anomaly"]
