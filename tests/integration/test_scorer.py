"""The scorer on a real warehouse: batch output contract, decisions log, reasons, real-time agreement, hot reload."""
from __future__ import annotations

import gc
import threading
import weakref
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prefect import flow

from features.contract import LABEL_FIELDS
from features.intake.checked import read_checked
from features.warehouse import Warehouse
from flows.orchestration import runtime
from flows.score import record_decisions
from flows.settings import Settings
from serving import scorer as scoring
from serving.batch import score_file
from serving.lanes import LanePolicy
from serving.model_source import FixedSource
from serving.reasons import TOP_CONTRIBUTIONS
from serving.scorer import OUTPUT_COLUMNS, Scorer, Thresholds
from tests.conftest import write_csv
from training.explainer import explainer

pytestmark = pytest.mark.integration


@flow(name="test-record-decisions")
def _record(*args, **kwargs) -> dict:
    """record_decisions inside a flow run, as in customs-score (artifacts need a run)."""
    return record_decisions.fn(runtime.current(), *args, **kwargs)


@pytest.fixture
def scorer(stored_scorer) -> Scorer:
    return stored_scorer


@pytest.fixture
def incoming(world, tmp_path):
    """The last 3,000 declarations, not yet in the warehouse, with one invalid row."""
    rows = world.declarations.tail(3000).reset_index(drop=True).astype({"declared_value": object})
    rows.loc[10, "declared_value"] = "twelve"
    return write_csv(tmp_path / "incoming.csv", rows)


def test_every_input_row_gets_an_output_row_in_order(scorer, incoming):
    told = []
    scored = score_file(incoming, scorer, advance=lambda what, done, total, **_: told.append((what, done, total)))
    assert [(done, total) for what, done, total in told if what == "scoring 2,999 declarations"] == [
        (0, 3), (1, 3), (2, 3), (3, 3)]  # the valid rows: features and scores, lanes, reasons
    assert ("features for 2,999 declarations", 8, 8) in told
    out = scored.output
    assert list(out.columns) == [*OUTPUT_COLUMNS, "reason_list", "contributions", "contribution_base",
                                 "inclusion_probability", "stratum"]
    assert OUTPUT_COLUMNS == ["declaration_id", "risk_score", "expected_revenue", "lane", "selected_by", "reasons",
                              "model_version"]  # the contract's; the others go to the decision log, not the file
    assert (out["reason_list"].map("; ".join) == out["reasons"]).all()
    assert out["declaration_id"].tolist() == pd.read_csv(incoming)["declaration_id"].tolist()
    bad = out.iloc[10]
    assert (bad["lane"], bad["selected_by"]) == ("yellow", "validation") and "declared_value" in bad["reasons"]
    assert bad["reason_list"] == [bad["reasons"]] and pd.isna(bad["contributions"])
    assert len(scored.rejected) == 1 and scored.rejected["reason"].item() == "invalid_type"
    assert (out["model_version"] == "7").all()
    valid = out.drop(index=10)
    assert (valid["lane"] == "red").sum() == 150
    assert (valid["selected_by"] == "exploration").sum() == 30
    assert (valid.loc[valid["lane"] != "green", "reasons"].str.len() > 0).all()
    assert valid.loc[valid["selected_by"] == "exploration", "reasons"].str.startswith("random exploration").all()


def test_decisions_are_appended_never_rewritten(prefect_api, scorer, incoming, tmp_path):
    warehouse = scorer.warehouse
    first = _record(score_file(incoming, scorer), scorer, str(incoming), str(tmp_path / "a.csv"))
    log = warehouse.read("SELECT * FROM decisions ORDER BY batch_id, position")
    assert len(log) == 3000 and (log["policy_hash"] == scorer.policy.digest()).all()
    assert first["quarantined"] == 1
    second = _record(score_file(incoming, scorer), scorer, str(incoming), str(tmp_path / "b.csv"))
    assert second["quarantined"] == 0  # the same bad row is already in quarantine
    both = warehouse.read("SELECT * FROM decisions ORDER BY batch_id, position")
    assert len(both) == 6000
    before = both[both["batch_id"] == first["batch_id"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(before, log.reset_index(drop=True))
    again = both[both["batch_id"] == second["batch_id"]].reset_index(drop=True)
    assert again["lane"].tolist() == before["lane"].tolist()  # a re-score gives the same lanes
    assert pd.read_csv(tmp_path / "a.csv")["lane"].tolist() == before["lane"].tolist()
    assert (Settings().reports_dir / f"{first['batch_id']}.md").exists()
    assert list(pd.read_csv(tmp_path / "a.csv").columns) == OUTPUT_COLUMNS  # the file keeps the contract


def test_a_batchs_decisions_keep_the_reasons_as_a_list_and_the_contributions_it_was_explained_with(
        prefect_api, scorer, incoming, tmp_path):
    scored = score_file(incoming, scorer)
    recorded = _record(scored, scorer, str(incoming), str(tmp_path / "a.csv"))
    log = scorer.warehouse.read("SELECT * FROM decisions WHERE batch_id = ? ORDER BY position", [recorded["batch_id"]])
    explained = log["lane"].isin(["red", "yellow"]) & (log["selected_by"] != "validation")
    assert explained.sum() > 100
    assert log.loc[explained, "contributions"].map(len).eq(TOP_CONTRIBUTIONS).all()
    assert log.loc[~explained, "contributions"].isna().all()  # green releases and the invalid row: none stored
    assert (log["reason_list"].map("; ".join) == log["reasons"]).all()
    # What is stored is what the batch's own SHAP pass gave (the one its reasons come from): the classifier's values
    # on the batch feature path of the explained rows, each row's strongest by size.
    model, valid = scorer.model, read_checked(incoming, "declarations", every_row=True).valid
    _, X, _ = scorer._scores(valid)
    chosen = log.drop(index=10)["lane"].isin(["red", "yellow"]).to_numpy()
    shap = explainer(model.classifier).get_feature_importance(model.pool(X[chosen]), type="ShapValues")
    column = {c: j for j, c in enumerate(model.columns)}
    for row, kept in zip(shap, log.loc[explained, "contributions"], strict=True):
        kept = list(kept)
        np.testing.assert_allclose([c["contribution"] for c in kept], row[[column[c["feature"]] for c in kept]],
                                   atol=1e-9)
        np.testing.assert_allclose(np.abs([c["contribution"] for c in kept]),
                                   np.sort(np.abs(row[:-1]))[::-1][:TOP_CONTRIBUTIONS], atol=1e-9)
    np.testing.assert_allclose(log.loc[explained, "contribution_base"], shap[0, -1], atol=1e-9)


def test_reasons_name_what_drives_the_score(scorer, world):
    base = world.declarations.tail(40).reset_index(drop=True)
    cheap = base.assign(declared_value=base["declared_value"] * 0.05,
                        declaration_id=base["declaration_id"] + "-cheap")
    out = scorer.score(cheap, explain_lanes=("red", "yellow", "green"))
    price_reasons = out["reasons"].str.split("; ").str[0].str.contains("unit price .* below the HS", regex=True)
    assert price_reasons.mean() > 0.5
    assert out["risk_score"].mean() > scorer.score(base)["risk_score"].mean()


def test_realtime_lanes_agree_with_the_batch(scorer, world):
    """Declarations already ingested (their bills of lading complete in the warehouse), scored both ways."""
    batch = world.declarations.iloc[16_400:17_000].reset_index(drop=True)
    out = scorer.score(batch)
    thresholds = Thresholds.from_decisions(out.assign(batch_id="b1"), "risk_score", scorer.policy.seed)
    picks = list(out.index[out["lane"] == "red"][:5]) + list(out.index[out["lane"] == "yellow"][:5]) + \
        list(out.index[out["lane"] == "green"][:5])
    realtime = pd.DataFrame([a for i in picks for a in scorer.score_realtime(batch.iloc[[i]], thresholds)])
    expected = out.loc[picks].reset_index(drop=True)
    assert realtime["lane"].tolist() == expected["lane"].tolist()
    assert realtime["selected_by"].tolist() == expected["selected_by"].tolist()
    np.testing.assert_allclose(realtime["risk_score"], expected["risk_score"], rtol=1e-9)


def test_seven_percent_of_a_hundred_declarations_is_seven_in_batch_and_in_real_time(scorer, world):
    """0.07·100 is 7.000000000000001 in floating point: both sides inspect 7, as the backtest does."""
    scorer.policy = LanePolicy(red_share=0.07, exploration_share=0.2, yellow_share=0.1)
    batch = world.declarations.iloc[16_900:17_000].reset_index(drop=True)
    out = scorer.score(batch)
    assert (out["lane"] == "red").sum() == 7 and (out["selected_by"] == "exploration").sum() == 1
    thresholds = Thresholds.from_decisions(out.assign(batch_id="b7"), "risk_score", scorer.policy.seed)
    realtime = pd.DataFrame([a for i in range(len(batch)) for a in scorer.score_realtime(batch.iloc[[i]], thresholds)])
    assert (realtime["lane"] == "red").sum() == 7
    assert realtime["selected_by"].tolist() == out["selected_by"].tolist()


def test_the_one_declaration_path_gives_build_features_values(scorer, world):
    """The API's pandas-free path for one declaration (features/row.py) against integrate + build_features, on
    stored and new declarations, with fields missing, unknown importers and HS codes, and shared bills of lading."""
    from serving.api.schemas import Declaration
    from tests.unit.test_cell import canonical_frame

    rows = pd.concat([world.declarations.iloc[16_800:16_900], world.declarations.tail(100)], ignore_index=True)
    fields = list(Declaration.model_fields)
    checked = 0
    for i, r in enumerate(rows.to_dict("records")):
        record = {k: (None if pd.isna(r[k]) else r[k]) for k in fields if k in r}
        record["declaration_date"] = r["declaration_date"].date()
        if i % 5 == 0:
            record.update(net_mass_kg=None, office_id=None, declarant_id=None, departure_country=None)
        if i % 7 == 0:
            record.update(bill_of_lading=None)
        if i % 11 == 0:
            record.update(importer_id="NEVER-SEEN", hs_code="979797")  # a goods chapter, no history
        item = Declaration.model_validate(record)
        frame, X, scores = scorer._scores(canonical_frame([item]))
        one_frame, one_X, one_scores = scorer.scores_rows([item.model_dump()])
        expected, got = X.iloc[0], one_X.iloc[0]
        for column in X.columns:
            if isinstance(expected[column], str):
                assert got[column] == expected[column], (i, column)
            else:
                np.testing.assert_allclose(float(got[column]), float(expected[column]), rtol=1e-12, err_msg=f"{i} {column}")
        assert one_frame["price_reference_log"].iloc[0] == pytest.approx(frame["price_reference_log"].iloc[0], nan_ok=True)
        np.testing.assert_allclose(one_scores.to_numpy(), scores.to_numpy(), rtol=1e-12)
        checked += 1
    assert checked == 200


def test_scoring_looks_up_only_the_profiles_its_model_reads_and_gets_the_same_inputs(scorer, world):
    """Scoring builds the entity profiles of its model's columns only: the model's inputs are those of every
    feature built, value for value, and the other entities' profile columns are not computed at all."""
    from features.build import build_features, integrate
    from features.profiles import PROFILE_COLUMNS, profile_columns

    model, context = scorer.model, scorer.context()
    frame = integrate(world.declarations.tail(500).reset_index(drop=True), context=context)
    everything = build_features(frame, bands=model.price_bands, profiles=context.profiles).X
    # a model that reads the importer's profile and no other entity's
    columns = [c for c in model.columns if c not in PROFILE_COLUMNS or c.startswith("importer_hit")]
    read = build_features(frame, bands=model.price_bands, profiles=context.profiles, columns=columns).X
    assert set(read.columns) & set(PROFILE_COLUMNS) == set(profile_columns(("importer",)))
    pd.testing.assert_frame_equal(read[columns], everything[columns], check_exact=True)
    _, X, _ = scorer._scores(world.declarations.tail(500))  # the scorer's own model's inputs
    pd.testing.assert_frame_equal(X, everything[model.columns], check_exact=True)


EDGE_AMOUNTS = [0.0, 5e-324, 2.2250738585072014e-308, 1e-300, 1.0, 2.0, 1e300, 1e308, 1.7976931348623157e308]


def test_numeric_edge_values_give_the_same_features_on_both_paths(scorer, world):
    """Zeros, subnormals, 1e308 and ratios that underflow or overflow: the one-row path and the frame path give
    the same features (NaN where the other gives NaN), and a non-finite or non-positive unit price is missing."""
    from hypothesis import HealthCheck, example, given, settings
    from hypothesis import strategies as st

    from features.build import build_features, integrate
    from features.row import integrate_row, row_features
    from serving.api.schemas import Declaration
    from tests.unit.test_cell import canonical_frame

    rows = world.declarations.iloc[16_800:17_000].reset_index(drop=True)
    fields = list(Declaration.model_fields)
    context = scorer.context()
    bands = scorer._bands(context)
    amount = st.one_of(st.sampled_from(EDGE_AMOUNTS), st.floats(0, 1e308, allow_nan=False, allow_infinity=False))

    @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.integers(0, len(rows) - 1), amount, st.one_of(st.none(), amount), st.one_of(st.none(), amount),
           st.one_of(st.none(), amount), st.sampled_from(["stored", "new", "new-bill"]))
    @example(0, 5e-324, 2.0, None, None, "new")
    @example(1, 1e308, 5e-324, 1e308, 1e308, "new")
    @example(2, 0.0, 0.0, 0.0, 0.0, "stored")
    def check(i, value, mass, quantity, duty, kind):
        r = rows.iloc[i]
        record = {k: (None if pd.isna(r[k]) else r[k]) for k in fields if k in r}
        record.update(declaration_date=r["declaration_date"].date(), declared_value=value, net_mass_kg=mass,
                      quantity=quantity, duty_paid=duty)
        if kind != "stored":
            record["declaration_id"] += "-new"
        if kind == "new-bill":
            record["bill_of_lading"] = "BL-NEVER-SEEN"
        item = Declaration.model_validate(record)
        full = build_features(integrate(canonical_frame([item]), context=context), bands=bands,
                              profiles=context.profiles)
        one = row_features(integrate_row(item.model_dump(), context), bands, context)
        expected = full.X.iloc[0]
        for column in full.X.columns:  # every feature, not only those the model kept
            if isinstance(expected[column], str):
                assert one[column] == expected[column], column
            else:
                np.testing.assert_allclose(float(one[column]), float(expected[column]), rtol=1e-12, err_msg=column)
        ratio = value / mass if mass else float("nan")
        if not (np.isfinite(ratio) and ratio > 0):
            assert np.isnan(expected["log_unit_price"]) and np.isnan(one["log_unit_price"])
        assert one["price_reference_log"] == pytest.approx(full.price_reference_log.iloc[0], nan_ok=True)
        scores = scorer._scores(canonical_frame([item]))[2]
        np.testing.assert_allclose(scorer.scores_rows([item.model_dump()])[2].to_numpy(), scores.to_numpy(), rtol=1e-12)

    check()


def test_a_new_champion_is_picked_up_and_a_broken_registry_keeps_the_last_one(scorer, trained, world):
    rows = world.declarations.tail(20)
    assert scorer.score(rows)["model_version"].eq("7").all()
    scorer.source.models["8"] = trained.model
    scorer.source.champion = "8"
    scorer.refresh_model()
    assert scorer.version == "8"
    scorer.source.broken = True
    scorer.refresh_model()
    assert scorer.version == "8" and scorer.ready
    assert "registry unreachable" in scorer.registry_error
    scorer.source.broken = False
    scorer.refresh_model()
    assert scorer.registry_error is None


def _counting_reads(scorer: Scorer, fail: bool = False) -> list[str]:
    """The threads the scorer's snapshot reads ran on, as they run (each read fails, `fail`)."""
    threads, read = [], scorer._snapshot.read

    def counted(warehouse):  # noqa: ANN001, ANN202
        threads.append(threading.current_thread().name)
        if fail:
            raise RuntimeError("the snapshot could not be built")
        return read(warehouse)

    scorer._snapshot.read = counted
    return threads


def test_a_first_batch_reads_the_snapshot_ahead_once_and_scores_as_a_read_in_turn(scorer, incoming):
    fresh = Scorer(scorer.warehouse, scorer.policy, scorer.source, reload_seconds=3600)
    fresh.refresh_model(force=True)
    threads = _counting_reads(fresh)
    ahead = score_file(incoming, fresh).output
    assert threads == ["aduana-snapshot"]  # read on its own thread while the file was read, and only there
    fresh.read_ahead()  # a held snapshot is refreshed when a batch asks, not ahead of it
    assert threads == ["aduana-snapshot"]
    in_turn = Scorer(scorer.warehouse, scorer.policy, scorer.source, reload_seconds=3600)
    in_turn.refresh_model(force=True)
    in_turn.context()  # the snapshot read before the batch, on this thread
    pd.testing.assert_frame_equal(ahead, score_file(incoming, in_turn).output)


def test_a_read_ahead_that_fails_is_read_again_and_raised_by_the_batch(scorer, incoming):
    fresh = Scorer(scorer.warehouse, scorer.policy, scorer.source, reload_seconds=3600)
    fresh.refresh_model(force=True)
    threads = _counting_reads(fresh, fail=True)
    with pytest.raises(RuntimeError, match="the snapshot could not be built"):
        score_file(incoming, fresh)
    assert threads == ["aduana-snapshot", "MainThread"]
    assert not fresh.has_snapshot


def _recording_pools(monkeypatch, model_type: type) -> list[tuple[int, weakref.ref, int]]:
    """Each pool the model builds from here on: (its rows, a weak reference to it, how many of the pools built
    before it were still alive as it was built)."""
    pool, built = model_type.pool, []

    def recording(model, X):
        gc.collect()
        alive = sum(made() is not None for _, made, _ in built)
        made = pool(model, X)
        built.append((len(X), weakref.ref(made), alive))
        return made

    monkeypatch.setattr(model_type, "pool", recording)
    return built


def test_a_batch_lets_go_of_its_pool_before_its_rows_are_explained(scorer, incoming, monkeypatch):
    """The batch's pool (at a million rows, about 280 MB) goes once both models have read it: its explained rows are
    read from a pool of their own. The revenue model predicted before the lanes (ranked by it), so that no thread
    still reads the batch's pool when the reasons start."""
    by_revenue = Scorer(scorer.warehouse, LanePolicy(rank_by="expected_revenue"), scorer.source, reload_seconds=3600)
    by_revenue.refresh_model(force=True)
    built, alive, explain = _recording_pools(monkeypatch, type(by_revenue.model)), [], scoring.explanations

    def explaining(model, X, context, *args, **kwargs):
        gc.collect()
        alive.extend(rows for rows, made, _ in built if made() is not None)
        return explain(model, X, context, *args, **kwargs)

    monkeypatch.setattr(scoring, "explanations", explaining)
    out = score_file(incoming, by_revenue).output
    explained = (out["lane"].isin(["red", "yellow"]) & (out["selected_by"] != "validation")).sum()
    assert [rows for rows, _, _ in built] == [2999, explained]  # the batch's, then the explained rows' own
    assert alive == []  # none left when the reasons started
    assert out.loc[out["lane"] == "red", "reasons"].str.len().gt(0).all()


@pytest.mark.parametrize("rank_by", ["risk_score", "expected_revenue"], ids=["revenue-meanwhile", "revenue-first"])
def test_a_batch_predicted_a_part_at_a_time_gives_the_bytes_of_one_pool(scorer, incoming, monkeypatch, rank_by):
    """Both models read a batch's input a part of POOL_ROWS at a time (the revenue model on its own thread a part
    behind, when the lanes do not rank by it), each part's pool gone once both have: the same output as from one
    pool, and never more than three parts' pools alive."""
    ranked = Scorer(scorer.warehouse, LanePolicy(rank_by=rank_by), scorer.source, reload_seconds=3600)
    ranked.refresh_model(force=True)
    whole = score_file(incoming, ranked).output
    built = _recording_pools(monkeypatch, type(ranked.model))
    monkeypatch.setattr(scoring, "POOL_ROWS", 700)
    parts = score_file(incoming, ranked).output
    pd.testing.assert_frame_equal(parts, whole, check_exact=True)
    alive = [before for _, _, before in built]
    assert len(built) == 5 + 1  # 2,999 valid rows in parts of 700, then the explained rows' own
    assert max(alive) <= 3 and alive[-1] == 0  # none left when the reasons started


def test_a_revenue_model_that_fails_on_its_thread_fails_the_batch_without_waiting(scorer, incoming, monkeypatch):
    """The risk scores' loop hands each part to the revenue thread; when that thread has died, nothing waits for it
    to take the next part, and the batch raises its error."""
    model_type = type(scorer.model)

    def failing(model, pool, risk, thread_count=-1):
        raise MemoryError("the revenue model ran out of memory")

    monkeypatch.setattr(model_type, "expected_revenue", failing)
    monkeypatch.setattr(scoring, "POOL_ROWS", 500)
    done = threading.Event()
    failure = []

    def run() -> None:
        try:
            score_file(incoming, scorer)
        except MemoryError as exc:
            failure.append(str(exc))
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(120), "the batch waited on a revenue thread that had ended"
    assert failure == ["the revenue model ran out of memory"]


def test_without_a_champion_scoring_says_so(home):
    s = Scorer(Warehouse(Settings().warehouse_path), LanePolicy(), source=FixedSource({}, None))
    s.refresh_model(force=True)
    assert not s.ready
    with pytest.raises(RuntimeError, match="no champion"):
        s.score(pd.DataFrame({"declaration_id": ["x"]}))


def test_a_retried_decision_write_appends_nothing(prefect_api, scorer, incoming, tmp_path):
    scored = score_file(incoming, scorer)
    first = _record(scored, scorer, str(incoming), str(tmp_path / "a.csv"), batch_id="score-retry-1")
    again = _record(scored, scorer, str(incoming), str(tmp_path / "a.csv"), batch_id="score-retry-1")
    assert first["batch_id"] == again["batch_id"] == "score-retry-1"
    assert len(scorer.warehouse.read("SELECT * FROM decisions")) == 3000


def test_no_lanes_file_or_report_appears_before_its_decisions_are_logged(prefect_api, scorer, incoming, tmp_path,
                                                                         monkeypatch):
    from features.warehouse import WarehouseBusy
    from features.warehouse.decisions import Decisions

    def busy(*args, **kwargs):
        raise WarehouseBusy(scorer.warehouse.path, 95.0, "4242")

    scored = score_file(incoming, scorer)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "previous.csv").write_text("declaration_id,lane\nD1,green\n")
    with monkeypatch.context() as patched:  # the warehouse is busy when the decisions are written
        patched.setattr(Decisions, "append_batch", busy)
        for name in ("lanes.csv", "previous.csv", "lanes.parquet"):
            with pytest.raises(WarehouseBusy):
                _record(scored, scorer, str(incoming), str(out_dir / name), batch_id=f"score-busy-{name}")
    assert sorted(p.name for p in out_dir.iterdir()) == ["previous.csv"]  # no lanes, no temporary left behind
    assert (out_dir / "previous.csv").read_text() == "declaration_id,lane\nD1,green\n"  # the last good file kept
    reports = Settings().reports_dir
    assert not reports.exists() or not list(reports.iterdir())  # nor a report of a batch that was not logged

    recorded = _record(scored, scorer, str(incoming), str(out_dir / "previous.csv"), batch_id="score-busy-done")
    written = pd.read_csv(out_dir / "previous.csv")
    logged = scorer.warehouse.read("SELECT lane FROM decisions WHERE batch_id = 'score-busy-done' ORDER BY position")
    assert len(written) == 3000 and written["lane"].tolist() == logged["lane"].tolist()
    assert sorted(p.name for p in out_dir.iterdir()) == ["previous.csv"]
    assert sorted(p.name for p in reports.iterdir()) == ["score-busy-done.md"] == [Path(recorded["report"]).name]


def test_the_inbox_flow_scores_waiting_files_and_passes_them_to_ingest(prefect_api, scorer, world, monkeypatch):
    from flows import score as score_flow

    monkeypatch.setattr(score_flow, "make_scorer", lambda rt, policy=None: scorer)
    settings = Settings()
    inbox = settings.landing_dir / "to-score"
    inbox.mkdir(parents=True)
    write_csv(inbox / "arrivals.csv", world.declarations.tail(40).drop(columns=list(LABEL_FIELDS)))
    (inbox / "empty.csv").write_text("")
    result = score_flow.customs_score_inbox()
    assert [b["read"] for b in result["batches"]] == [40]
    assert list(result["refused"]) == ["empty.csv"]
    scores = pd.read_csv(settings.reports_dir / "scores" / "arrivals-scores.csv")
    assert len(scores) == 40 and set(scores["lane"]) <= {"red", "yellow", "green"}
    assert (settings.landing_dir / "arrivals.csv").exists()  # handed on to the daily ingest
    assert Warehouse(settings.warehouse_path).read("SELECT count(*) AS n FROM decisions")["n"].iloc[0] == 40


def test_a_categorical_gap_is_stored_as_missing_not_as_the_models_placeholder():
    from features.entities import MISSING
    from serving.reasons import feature_value_text

    assert feature_value_text(MISSING) is None and feature_value_text("CN") == "CN"
    assert feature_value_text(float("nan")) is None and feature_value_text(0.125) == "0.125"
