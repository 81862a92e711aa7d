"""Targeted exploration in batch scoring: the lanes, the decision log's strata and probabilities, the reasons, and the
bandit's evidence read back from the log once the controls report."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from prefect import flow

from features.intake.prepared import prepare_batch
from features.leads import lead_keys, lead_scores
from flows.orchestration import runtime
from flows.score import record_decisions
from serving.batch import score_file
from serving.reasons import entity_named
from serving.targeting import MARGIN, MODEL, SOURCE_WORDS, SOURCES, Targeting, bandit_from_evidence
from tests.conftest import write_csv
from training.anomaly import fit_anomaly

pytestmark = pytest.mark.integration

TARGETING = Targeting(random_share=0.1, min_share=0.2, max_share=0.4, sources=list(SOURCES))


@flow(name="test-record-targeted")
def _record(*args, **kwargs) -> dict:
    return record_decisions.fn(runtime.current(), *args, **kwargs)


@pytest.fixture
def targeted(stored_scorer, trained):
    scorer = stored_scorer
    scorer.policy = scorer.policy.model_copy(update={"targeting": TARGETING})
    scorer.anomaly = fit_anomaly(trained.features)  # as customs-anomaly@champion would give it
    return scorer


def test_a_batch_spends_its_red_capacity_on_the_model_the_sources_and_a_random_stratum(prefect_api, targeted, world,
                                                                                      tmp_path):
    rows = world.declarations.tail(3000).reset_index(drop=True)
    incoming = write_csv(tmp_path / "incoming.csv", rows.drop(columns=["inspected", "fraud", "revenue", "critical",
                                                                       "control_date"]))
    out = score_file(incoming, targeted).output
    red = out[out["lane"] == "red"]
    assert len(red) == 150  # 5 % of 3,000: the capacity is unchanged
    explored = red[red["selected_by"] == "exploration"]
    assert set(explored["stratum"]) <= {*SOURCES, "random"} and (explored["stratum"] == "random").sum() == 15
    targeted_picks = explored[explored["stratum"] != "random"]
    assert 30 <= len(targeted_picks) <= 60  # min_share and max_share of the capacity
    assert targeted_picks["reasons"].str.startswith("selected to explore: ").all()
    assert (out.loc[out["stratum"] == MARGIN, "selected_by"] == MODEL).all()
    p = out["inclusion_probability"]
    certain = (out["lane"].eq("red") & out["selected_by"].isin(["model", "rule"])) | out.index.isin(targeted_picks.index)
    assert (p[certain] == 1).all() and p.sum() == pytest.approx(150)
    drawn = explored[explored["stratum"] == "random"]
    assert (p[drawn.index] < 1).all() and p[drawn.index].nunique() == 1

    # The batch is logged; its controls report (the labelled rows are stored); the next batch's bandit reads them.
    _record(score_file(incoming, targeted), targeted, str(incoming), str(tmp_path / "out.csv"))
    log = targeted.warehouse.read("SELECT stratum, inclusion_probability FROM decisions")
    assert len(log) == 3000 and set(log["stratum"].dropna()) >= {"random", MARGIN} and log["inclusion_probability"].sum() == pytest.approx(150)
    targeted.warehouse.store(prepare_batch(write_csv(tmp_path / "declarations-tail.csv", rows)))
    evidence = targeted.warehouse.decisions.targeting_evidence()
    inspected = rows.set_index("declaration_id")["inspected"].eq(1)
    picked = out[out["stratum"].isin([*SOURCES, MARGIN])]
    assert len(evidence) == int(inspected.reindex(picked["declaration_id"]).sum())
    bandit = bandit_from_evidence(evidence, TARGETING, pd.Timestamp.now())
    assert sum(bandit.trials.values()) == pytest.approx(len(evidence))
    assert np.isclose(sum(bandit.hits.values()), evidence["fraud"].sum())

    # Leads: the relationships where the exploration picks' controls found fraud the model did not expect; the next
    # batch's declarations that share one.
    leads = targeted.lead_residuals()
    reported = explored[explored["declaration_id"].isin(rows.loc[rows["inspected"] == 1, "declaration_id"])]
    unexpected = rows.set_index("declaration_id").loc[reported["declaration_id"], "fraud"].to_numpy() \
        - reported["risk_score"].to_numpy()
    assert leads and (unexpected > 0).any()
    exporters = rows.set_index("declaration_id").loc[reported["declaration_id"], "exporter_id"].to_numpy()
    assert set(leads["exporter"].index) <= set(exporters[unexpected > 0])
    assert (leads["exporter"] > 0).all()
    score = lead_scores(leads, lead_keys(rows), len(rows))
    assert np.isfinite(score).any() and np.isnan(score).any()

    # A leads pick's reason names the relationship its lead follows most: the lead entity of largest residual.
    targeted.policy = targeted.policy.model_copy(update={"targeting": TARGETING.model_copy(update={"sources": ["leads"]})})
    again = score_file(incoming, targeted).output
    picks = again[again["stratum"] == "leads"]
    assert len(picks)
    keys = lead_keys(rows)
    for i, reasons in zip(picks.index, picks["reasons"], strict=True):
        found = {name: leads[name].get(keys[name][i], 0.0) for name in leads}
        strongest = max(found, key=found.get)
        assert found[strongest] > 0
        assert reasons.startswith(f"selected to explore: {SOURCE_WORDS['leads']}: "
                                  f"{entity_named(strongest, rows.loc[i].to_dict())} (score ")

    # Scored in partitions, the leads (carried in the run folder) name the same relationships.
    from features.intake.checked import read_checked
    from serving.partitions import score_partitioned

    batch = read_checked(incoming, "declarations").valid
    parts = score_partitioned(batch, targeted, 700, tmp_path / "run")
    assert (parts["stratum"] == "leads").sum() == len(picks)
    pd.testing.assert_series_equal(parts["reasons"], targeted.score(batch)["reasons"], check_exact=True)


@pytest.mark.parametrize("snapshot", [False, True], ids=["history-in-pandas", "snapshot-in-duckdb"])
def test_a_batch_scored_in_partitions_targets_as_it_does_whole(targeted, world, tmp_path, snapshot):
    """Each partition reads the novelty of its declarations from the history in pandas or the snapshot in DuckDB
    (and there the anomaly model from the run folder): the sources, and so the lanes, strata and probabilities, are
    those of the batch scored whole."""
    from features.intake.checked import read_checked
    from serving.partitions import score_partitioned

    rows = world.declarations.tail(3000).reset_index(drop=True)
    batch = read_checked(write_csv(tmp_path / "batch.csv", rows), "declarations").valid
    whole = targeted.score(batch)
    parts = score_partitioned(batch, targeted, 700, tmp_path / "run", snapshot=snapshot)
    novelty = {"new_pairs", "importer_mix_shift", "heading_origin_shift"}
    assert novelty & set(whole["stratum"]) and "anomaly" in set(whole["stratum"])
    columns = ["declaration_id", "risk_score", "lane", "selected_by", "stratum", "inclusion_probability", "reasons"]
    pd.testing.assert_frame_equal(parts[columns], whole[columns], check_exact=True)


def test_a_combined_pick_says_which_signals_ranked_it_high_whole_or_in_partitions(targeted, world, tmp_path):
    from features.intake.checked import read_checked
    from serving.partitions import score_partitioned

    combined_only = TARGETING.model_copy(update={"sources": ["combined"]})
    targeted.policy = targeted.policy.model_copy(update={"targeting": combined_only})
    rows = world.declarations.tail(3000).reset_index(drop=True)
    batch = read_checked(write_csv(tmp_path / "batch.csv", rows), "declarations").valid
    whole = targeted.score(batch)
    picks = whole[whole["stratum"] == "combined"]
    explored = set(whole.loc[whole["selected_by"] == "exploration", "stratum"])
    assert 30 <= len(picks) <= 60 and explored == {"combined", "random"}
    assert picks["reasons"].str.startswith(f"selected to explore: {SOURCE_WORDS['combined']}").all()
    told = picks["reasons"].str.extract(r"at once: (.*) \(score")[0].dropna()
    words = [SOURCE_WORDS[s] for s in TARGETING.combined_of]
    assert len(told) and told.map(lambda t: all(any(part.startswith(w) for w in words) and "(top " in part
                                                   for part in t.split("; "))).all()
    parts = score_partitioned(batch, targeted, 700, tmp_path / "run")
    columns = ["declaration_id", "lane", "stratum", "inclusion_probability", "reasons"]
    pd.testing.assert_frame_equal(parts[columns], whole[columns], check_exact=True)
