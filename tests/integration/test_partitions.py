"""Scoring in partitions (serving/partitions.py), each reading the scorer's history in pandas or the warehouse's
snapshot for its own declarations through DuckDB, gives what scoring the batch whole gives."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.context import BatchState
from features.intake.checked import read_checked
from serving.partitions import score_partitioned
from serving.scorer import DETAIL_COLUMNS, OUTPUT_COLUMNS, Scorer
from tests.conftest import write_csv

pytestmark = pytest.mark.integration


@pytest.fixture
def scorer(stored_scorer) -> Scorer:
    return stored_scorer


@pytest.fixture
def batch(world, tmp_path) -> pd.DataFrame:
    """3,500 canonical declarations: 500 already stored, 3,000 new, in the file's order (bills of lading and
    entities new to the warehouse span partition borders)."""
    rows = world.declarations.iloc[16_500:20_000].reset_index(drop=True)
    return read_checked(write_csv(tmp_path / "batch.csv", rows), "declarations").valid


def assert_same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == OUTPUT_COLUMNS + DETAIL_COLUMNS
    pd.testing.assert_frame_equal(got.drop(columns=["reason_list", "contributions"]),
                                  want.drop(columns=["reason_list", "contributions"]), check_exact=True)
    assert got["reason_list"].tolist() == want["reason_list"].tolist()
    assert got["contributions"].tolist() == want["contributions"].tolist()


@pytest.mark.parametrize("snapshot", [False, True], ids=["history-in-pandas", "snapshot-in-duckdb"])
def test_partitions_score_as_the_whole_batch(scorer, batch, tmp_path, snapshot):
    whole = scorer.score(batch)
    assert (whole["lane"] == "red").sum() == 175 and whole["reasons"].str.len().gt(0).sum() > 400
    parts = score_partitioned(batch, scorer, 700, tmp_path / "run", snapshot=snapshot)
    assert not (tmp_path / "run").exists()  # the run folder goes with the run
    assert_same(parts, whole)
    assert_same(score_partitioned(batch, scorer, 10_000, tmp_path / "run", snapshot=snapshot), whole)  # one partition


def test_a_partition_reads_its_whole_batch_across_rows(scorer, batch):
    """Without its batch's state a partition's features would be its own: the items of bills of lading that go on
    in later partitions, and the first filing of keys first filed before it in the batch."""
    batch = batch.reset_index(drop=True)
    batch.loc[1_999, "bill_of_lading"] = batch.loc[2_000, "bill_of_lading"]  # a bill across the partitions' border
    state = BatchState.of(batch, batch["declaration_id"].isin(scorer.context().known_ids).to_numpy())
    tail = batch.iloc[2_000:]
    frame_alone, alone, _ = scorer._scores(tail)
    frame_within, within, _ = scorer._scores(tail, batch=state)
    _, whole, _ = scorer._scores(batch)
    pd.testing.assert_frame_equal(within, whole.iloc[2_000:].reset_index(drop=True), check_exact=True)
    assert any(c.endswith("_days_known") and not alone[c].equals(within[c]) for c in whole.columns)
    assert frame_within["bl_items"].iloc[0] > frame_alone["bl_items"].iloc[0]  # the items before the border too


def test_a_rows_reasons_are_its_own_whatever_rows_are_explained_with_it(trained, world):
    """The explainer reads the model's leaf weights only: a row's SHAP values are the same alone and among others
    (CatBoost itself adds the explained rows' leaf counts where a leaf no training row reached has a value)."""
    from features.build import build_features, integrate
    from training.explainer import explainer

    model = trained.model
    X = build_features(integrate(world.declarations.head(400), world.manifests, world.traders)).X[model.columns]
    explaining = explainer(model.classifier)
    assert explaining is not model.classifier  # this model has such leaves (monotone constraints adjust them)
    together = explaining.get_feature_importance(model.pool(X), type="ShapValues")
    alone = explaining.get_feature_importance(model.pool(X.iloc[[123]]), type="ShapValues")
    np.testing.assert_array_equal(together[123], alone[0])
    logit = model.classifier.predict(model.pool(X), prediction_type="RawFormulaVal")
    np.testing.assert_allclose(together.sum(axis=1), logit, atol=1e-9)  # the same model: they add up to its log-odds


def test_a_file_read_a_chunk_at_a_time_gives_the_whole_files_output(scorer, world, tmp_path):
    """A file beyond the partition size is read straight into partitions: invalid rows in several of them, a bill
    of lading whose new items lie in three (its totals summed over all of them, in file order), the same output,
    quarantine, summary and output files as the file scored whole."""
    from serving.batch import BatchSummary, score_file, write_output
    from serving.partitions import ScoredParts, score_source

    rows = world.declarations.iloc[16_500:20_000].reset_index(drop=True)
    rows["declared_value"] = rows["declared_value"].astype(object)
    rows.loc[[5, 800, 2_100, 2_101], "declared_value"] = "not a number"
    spanning = [10, 1_500, 3_000]
    rows.loc[spanning, "bill_of_lading"] = "BL-SPANNING"
    rows.loc[spanning, "net_mass_kg"] = [0.1, 0.2, 0.3]
    path = write_csv(tmp_path / "batch.csv", rows)
    whole = score_file(path, scorer)
    parts = score_source(path, scorer, 700, tmp_path / "run")
    assert isinstance(parts, ScoredParts) and parts.run.partitions == 5 and parts.read == whole.read == 3_500
    got = pd.concat(list(parts.output_chunks()))
    assert got.index.tolist() == list(range(3_500))  # every row, in file order
    assert_same(got.reset_index(drop=True), whole.output)
    assert (got["selected_by"] == "validation").sum() == 4
    rejected = pd.concat(list(parts.rejected_chunks()), ignore_index=True)
    pd.testing.assert_frame_equal(rejected, whole.rejected.reset_index(drop=True), check_dtype=False)
    summary, want = parts.summary(), whole.summary()
    pd.testing.assert_frame_equal(summary.lanes, want.lanes, check_dtype=False)
    pd.testing.assert_frame_equal(summary.highest, want.highest)
    assert summary.histogram.equals(want.histogram) and summary.counts("lane") == BatchSummary.of(whole.output).counts("lane")
    for suffix in (".csv", ".parquet"):
        write_output(parts.output_chunks(), tmp_path / f"parts{suffix}")
        write_output(whole.output, tmp_path / f"whole{suffix}")
    assert (tmp_path / "parts.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "parts.parquet"), pd.read_parquet(tmp_path / "whole.parquet"))
    parts.remove()
    assert not (tmp_path / "run").exists()
    assert isinstance(score_source(path, scorer, 10_000, tmp_path / "run"), type(whole))  # one chunk: whole


def test_a_reader_given_its_batch_reads_the_batchs_share_of_the_snapshot_and_finds_the_same(scorer, batch, tmp_path):
    """Told the batch it will be asked about, the reader sets apart the snapshot's rows of the batch's ids, bills and
    importers once; each partition's context is then read from those, and is the context read from the whole
    snapshot."""
    from features.warehouse.partition_context import SnapshotReader

    snapshot = scorer.warehouse.export_tables(tmp_path / "snapshot")
    batch.iloc[:1_500].to_parquet(tmp_path / "part-0.parquet")
    batch.iloc[1_500:].to_parquet(tmp_path / "part-1.parquet")
    names = scorer.profiles_read()
    whole = SnapshotReader(snapshot, names=names)
    kept = SnapshotReader(snapshot, names=names, batch=[str(tmp_path / f"part-{i}.parquet") for i in (0, 1)])
    stored = whole.con.execute(f"SELECT count(*) FROM {whole.tables['declarations']}").fetchall()[0][0]
    assert set(kept.reads.values()) == {"run_ids", "run_bill_items", "run_manifests", "run_traders"}
    assert kept.con.execute("SELECT count(*) FROM run_ids").fetchall()[0][0] == 500  # the 500 stored, of 17,000
    assert 0 < kept.con.execute("SELECT count(*) FROM run_bill_items").fetchall()[0][0] < stored
    part = batch.iloc[200:1_200]  # 300 of them stored
    got, want = kept.context(part), whole.context(part)
    assert got.known_ids.sort_values().equals(want.known_ids.sort_values()) and len(want.known_ids)
    for table in ("manifests", "traders", "bill_totals"):
        pd.testing.assert_frame_equal(getattr(got, table).sort_index(), getattr(want, table).sort_index(),
                                      check_exact=True)
    whole.close()
    kept.close()
