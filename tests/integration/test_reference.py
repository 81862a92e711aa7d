"""Dataset-level expectations judged against the dataset's own accepted history (the reference profile).

The ingest flow's tasks run here as plain functions (`task.fn`) against a real GX context, DuckDB warehouse
and reference folder under a temporary ADUANA_HOME; the `aduana warnings` command runs as a subprocess.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import flows.ingest
from expectations.checkpoint import check_batch, load_suite
from expectations.reference import (
    accept_pending,
    load_reference,
    pending_path,
    quantile,
)
from features.intake.mapping import ColumnMapping
from features.intake.prepared import prepare_batch
from features.warehouse import Warehouse
from flows.ingest import store_batch, validate_batch
from flows.orchestration import runtime
from flows.settings import Settings
from tests.conftest import foreign, write_csv

pytestmark = pytest.mark.integration

LABELS = ("inspected", "fraud", "revenue", "critical", "control_date")


def ingest(frame: pd.DataFrame, tmp_path: Path, name: str, mapping: ColumnMapping | None = None,
           quarantined: int = 0):
    """The ingest flow's validate and store tasks on one file: (report, summary)."""
    batch = prepare_batch(write_csv(tmp_path / f"{name}.csv", frame), mapping=mapping)
    assert len(batch.rejected) == quarantined, batch.rejected["message"].tolist()[:3]
    rt = runtime.current()
    report = validate_batch.fn(rt, batch)
    return report, store_batch.fn(rt, batch, report)


def reference(kind: str = "declarations") -> dict | None:
    return load_reference(Settings().reference_dir, kind)


def test_a_new_datasets_first_batch_sets_the_reference_instead_of_failing(home, tmp_path):
    # given a fresh home and a third-party export with codes and ranges the simulator never produces
    first = foreign(300, seed=1)
    assert first["net_mass_kg"].max() > 5_000_000 and first["inspected"].mean() == 1
    # when it is ingested
    report, summary = ingest(first, tmp_path, "declarations_2023a")
    # then only dataset-independent checks judged it, it passed, and it became the reference
    assert report.passed and not report.compared, report.failures
    assert any("no reference yet" in s for s in report.skipped)
    assert summary.stored == 300 and summary.expectations_passed
    ref = reference()
    assert ref["batches"] == [summary.batch_id] and ref["rows"] == 300
    assert set(ref["sections"]["all"]["columns"]["transport_mode"]["codes"]) == {"1", "2", "3", "4"}
    assert 3e6 < quantile(ref["sections"]["all"]["columns"]["net_mass_kg"], 0.5) < 3e7
    assert Warehouse(Settings().warehouse_path).validation_failures() == []


def test_a_second_batch_of_the_same_dataset_passes_against_its_reference(home, tmp_path):
    # given a dataset whose first batch set the reference
    ingest(foreign(300, seed=1), tmp_path, "declarations_a")
    # when a second batch of the same dataset arrives (fully inspected again)
    report, summary = ingest(foreign(300, seed=2), tmp_path, "declarations_b")
    # then it is compared with the reference, passes, and is merged into it
    assert report.compared and report.passed, report.failures
    assert not any(s.startswith("expect_column_mean_to_be_between on inspected") for s in report.skipped)
    assert reference()["batches"][-1] == summary.batch_id and reference()["rows"] == 600
    # and the relative bounds are real GX expectations, filled from the reference, in the context's suite
    suite = json.loads((Settings().gx_root / "gx" / "expectations" / "declarations.json").read_text())
    median = next(e for e in suite["expectations"] if e["type"] == "expect_column_median_to_be_between"
                  and e["kwargs"]["column"] == "net_mass_kg")
    assert 3e5 < median["kwargs"]["min_value"] < median["kwargs"]["max_value"] < 3e8


@pytest.mark.parametrize(("change", "column"), [
    (lambda d: d.assign(net_mass_kg=d["net_mass_kg"] * 1000), "net_mass_kg"),  # grams declared as kilograms
    (lambda d: d.assign(transport_mode=d["transport_mode"].map({"1": "SEA", "2": "AIR", "3": "ROAD", "4": "RAIL"})),
     "transport_mode"),  # a recoded export: codes this dataset never used
])
def test_a_later_batch_with_a_unit_error_or_unseen_codes_fails_a_warning_that_is_recorded(home, tmp_path, change,
                                                                                         column):
    # given a dataset with a reference
    ingest(foreign(300, seed=1), tmp_path, "declarations_a")
    # when a later batch carries a unit error or codes never seen
    report, summary = ingest(change(foreign(300, seed=3)), tmp_path, "declarations_c")
    # then a warning fails, naming the column and the reference it was judged against
    assert not report.passed and not report.rejected
    failed = [f for f in report.failures if f.startswith("warning") and f" on {column} " in f]
    assert failed and all("reference" in f for f in failed), report.failures
    # and it is recorded on the batch, stored, listed for the gate, and kept out of the reference until acknowledged
    assert summary.stored == 300 and not summary.expectations_passed
    failures = Warehouse(Settings().warehouse_path).validation_failures()
    assert len(failures) == 1 and failures[0].startswith(f"{summary.batch_id}: ")
    assert json.loads(failures[0].split(": ", 1)[1]) == report.failures
    assert len(reference()["batches"]) == 1
    assert pending_path(Settings().reference_dir, summary.batch_id).exists()


class Killed(BaseException):
    """The process dies (kill -9): nothing after this point runs, and no handler sees it."""


def test_a_batch_stored_by_a_run_killed_before_the_reference_update_joins_it_on_the_next_run(home, tmp_path,
                                                                                              monkeypatch):
    # given a dataset with a reference, and a run killed after its store committed, before the reference took the
    # batch's profile
    said = []
    monkeypatch.setattr(flows.ingest, "progress", said.append)
    ingest(foreign(300, seed=1), tmp_path, "declarations_a")

    def killed(*args, **kwargs):
        raise Killed

    warehouse = Warehouse(Settings().warehouse_path)
    batches = lambda: warehouse.read("SELECT batch_id FROM ingest_batches ORDER BY started_at")["batch_id"].tolist()  # noqa: E731
    with monkeypatch.context() as m:
        m.setattr(flows.ingest, "record_batch", killed)
        with pytest.raises(Killed):
            ingest(foreign(300, seed=2), tmp_path, "declarations_b")
        lost = batches()[-1]
        assert warehouse.counts()["declarations"] == 600 and lost not in reference()["batches"]
        # when the next run comes (a batch that warns, killed too: its pending profile is never written)
        with pytest.raises(Killed):
            ingest(foreign(300, seed=3).assign(net_mass_kg=lambda d: d["net_mass_kg"] * 1000), tmp_path,
                   "declarations_c")
    # then it folded the lost batch into the reference before judging, and said so (the only run that had to)
    warned = batches()[-1]
    assert reference()["batches"][1:] == [lost]
    assert [line for line in said if "folded in" in line] == [
        "the declarations reference profile lacked 1 stored batch(es) that passed or were acknowledged (an earlier "
        f"run stopped before updating it): folded in {lost}"]
    # and once the warned batch is acknowledged (nothing pending to accept: its run died), the next run folds it in
    warehouse.acknowledge(warned, "bulk ore: the masses are right", "tester")
    assert not accept_pending(Settings().reference_dir, warned)
    report, summary = ingest(foreign(300, seed=4), tmp_path, "declarations_d")
    ref = reference()
    assert ref["batches"][1:] == [lost, warned, summary.batch_id] and ref["rows"] == 1200
    assert [line for line in said if "folded in" in line][1:] == [
        "the declarations reference profile lacked 1 stored batch(es) that passed or were acknowledged (an earlier "
        f"run stopped before updating it): folded in {warned}"]
    assert report.compared and report.passed, report.failures


def test_an_unlabelled_batch_with_empty_label_columns_passes(world, home, tmp_path):
    # given a demo-like reference set by a first labelled batch of simulated declarations
    report, _ = ingest(world.declarations.head(300), tmp_path, "declarations_labelled")
    assert report.passed, report.failures
    # when three valid declarations arrive with their label columns present but empty
    unlabelled = world.declarations.iloc[300:303].assign(**{c: None for c in LABELS})
    report, summary = ingest(unlabelled, tmp_path, "declarations_new")
    # then it passes: expectations on the empty label columns are skipped, not failed
    assert report.compared and report.passed, report.failures
    assert any(s.startswith("expect_column_mean_to_be_between on inspected") and "no values" in s
               for s in report.skipped)
    assert any("fraud" in s and "labelled rows" in s for s in report.skipped)
    assert summary.stored == 3 and summary.expectations_passed
    assert Warehouse(Settings().warehouse_path).validation_failures() == []


def test_an_unlabelled_first_batch_passes_too(world, home, tmp_path):
    unlabelled = world.declarations.head(3).assign(**{c: None for c in LABELS})
    report, summary = ingest(unlabelled, tmp_path, "declarations_new")
    assert report.passed and summary.expectations_passed, report.failures


def test_a_failed_critical_expectation_still_rejects_the_batch(home, tmp_path):
    # given a dataset with a reference, and a suite where the relative mass median is critical
    ingest(foreign(300, seed=1), tmp_path, "declarations_a")
    suites = tmp_path / "suites"
    suites.mkdir()
    suite = load_suite("declarations")
    for e in suite["expectations"]:
        if e["type"] == "expect_column_median_to_be_between" and e["kwargs"]["column"] == "net_mass_kg":
            e["severity"] = "critical"
    (suites / "declarations.json").write_text(json.dumps(suite))
    # when a batch with a unit error is checked and stored
    batch = prepare_batch(write_csv(tmp_path / "declarations_c.csv",
                                    foreign(200, seed=3).assign(net_mass_kg=lambda d: d["net_mass_kg"] * 1000)))
    settings = Settings()
    report = check_batch(batch.valid, "declarations", settings.gx_root, suites_dir=suites, reference=reference())
    summary = store_batch.fn(runtime.current(), batch, report)
    # then the batch is rejected: every row quarantined, nothing stored, the reference untouched
    assert report.rejected
    assert any(f.startswith("critical: expect_column_median_to_be_between on net_mass_kg") for f in report.failures)
    assert (summary.stored, summary.quarantined) == (0, 200) and summary.reasons == {"batch_rejected": 200}
    assert len(reference()["batches"]) == 1
    assert not pending_path(settings.reference_dir, summary.batch_id).exists()
    assert Warehouse(settings.warehouse_path).validation_failures() == []  # nothing stored: nothing to train on


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "ADUANA_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_acknowledging_a_warned_batch_clears_it_for_the_gate_and_shows_in_aduana_warnings(home, tmp_path):
    # given a stored batch whose unit error failed a warning
    ingest(foreign(300, seed=1), tmp_path, "declarations_a")
    _, warned = ingest(foreign(300, seed=3).assign(net_mass_kg=lambda d: d["net_mass_kg"] * 1000), tmp_path,
                       "declarations_c")
    warehouse = Warehouse(Settings().warehouse_path)
    assert len(warehouse.validation_failures()) == 1
    listed = json.loads(_cli("warnings", "--json", home=home).stdout)
    assert [(r["batch_id"], r["file"], r["acknowledged"]) for r in listed] == \
        [(warned.batch_id, "declarations_c.csv", False)]
    # when someone acknowledges it with a reason
    result = _cli("warnings", "--ack", warned.batch_id, "--reason", "bulk ore: the masses are right", "--json",
                  home=home)
    # then it no longer counts for the gate, and `aduana warnings` shows who accepted it and why
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["reference_updated"] is True
    assert warehouse.validation_failures() == []
    listed = json.loads(_cli("warnings", "--json", home=home).stdout)
    assert listed[0]["acknowledged"] and listed[0]["ack_reason"] == "bulk ore: the masses are right"
    assert listed[0]["acknowledged_by"]
    assert any("net_mass_kg" in f for f in listed[0]["failures"])
    text = _cli("warnings", home=home)
    assert text.returncode == 0 and warned.batch_id in text.stdout and "acknowledged" in text.stdout
    # and its profile joined the reference, so the next batch like it is expected
    assert reference()["batches"][-1] == warned.batch_id
    assert not pending_path(Settings().reference_dir, warned.batch_id).exists()
    # an acknowledgement table is append-only: a second one adds a row, the latest is shown
    assert _cli("warnings", "--ack", warned.batch_id, "--reason", "checked again", home=home).returncode == 0
    assert len(warehouse.read("SELECT * FROM batch_acknowledgements")) == 2
    assert json.loads(_cli("warnings", "--json", home=home).stdout)[0]["ack_reason"] == "checked again"


def test_acknowledging_an_unknown_batch_is_a_one_line_error(home, tmp_path):
    ingest(foreign(50, seed=1), tmp_path, "declarations_a")
    result = _cli("warnings", "--ack", "decl-nope", "--reason", "x", home=home)
    assert result.returncode == 2
    assert [line for line in result.stderr.splitlines() if line.startswith("aduana: error:")] == \
        ["aduana: error: unknown batch id 'decl-nope' (see 'aduana warnings')"]
    assert "Traceback" not in result.stderr
    assert _cli("warnings", "--ack", "decl-nope", home=home).returncode == 2  # no reason: refused too


# --- implausible, not impossible: stored, and warned about against the dataset's own history ----------------------

def with_rates(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Duty rates as fractions, up to 35 % (a tariff's usual range)."""
    return frame.assign(tax_rate=np.random.default_rng(seed).choice([0.0, 0.05, 0.1, 0.15, 0.35], len(frame)))


def _failed_on(report, column: str) -> list[str]:
    return [f for f in report.failures if f.startswith("warning") and f" on {column} " in f]


def test_a_754_percent_duty_is_stored_with_a_warning_while_the_impossible_is_quarantined(home, tmp_path):
    # given a new dataset's first file: rates up to 35 %, one goods item at 754 %, and four impossible rows
    frame = with_rates(foreign(300, seed=1), seed=1).astype(
        {"tax_rate": "object", "declared_value": "object", "declaration_date": "object"})
    frame.loc[7, "tax_rate"] = 7.54
    frame.loc[10, "declared_value"] = -5.0
    frame.loc[11, "declared_value"] = "inf"
    frame.loc[12, "tax_rate"] = "7.54 %"
    frame.loc[13, "declaration_date"] = "2024-02-30"
    # when it is ingested
    report, summary = ingest(frame, tmp_path, "declarations_a", quarantined=4)
    # then the 754 % row is stored, the impossible ones quarantined with their reasons, and the counts reconcile
    assert (summary.read, summary.stored, summary.quarantined, summary.duplicates) == (300, 296, 4, 0)
    assert summary.reconciles
    assert summary.reasons == {"negative_value": 1, "non_finite": 1, "invalid_type": 1, "invalid_date": 1}
    warehouse = Warehouse(Settings().warehouse_path)
    assert warehouse.read("SELECT tax_rate FROM declarations WHERE declaration_id = 'F1-00007'")["tax_rate"].tolist() \
        == [7.54]
    # and the batch warns about the rate, judged against the batch's own rates (the dataset has no reference yet)
    (failed,) = _failed_on(report, "tax_rate")
    assert "1 unexpected row" in failed and "e.g. 7.54" in failed and "this batch's own 0.99 quantile" in failed
    assert not report.compared and not report.rejected
    # recorded on the batch, as `aduana warnings` lists it, and kept out of the reference until acknowledged
    (listed,) = warehouse.failed_batches("declarations")
    assert listed["batch_id"] == summary.batch_id and listed["failures"] == report.failures
    assert reference() is None


def test_a_754_percent_duty_in_a_percent_mapping_warns_against_the_reference_once_until_acknowledged(home, tmp_path):
    # given a dataset whose accepted history has rates up to 35 %, and a later export with rates in percent
    ingest(with_rates(foreign(300, seed=1), seed=1), tmp_path, "declarations_a")
    later = with_rates(foreign(300, seed=2), seed=2)
    later = later.assign(tax_rate=later["tax_rate"] * 100).astype({"tax_rate": "object"})
    later.loc[3, "tax_rate"] = "754"
    percent = ColumnMapping(units={"tax_rate": "percent"})
    # when it is ingested
    report, summary = ingest(later, tmp_path, "declarations_b", mapping=percent)
    # then every row is stored (7.54 as a fraction) and the rate warns against the dataset's own history
    assert (summary.stored, summary.quarantined) == (300, 0) and summary.reconciles
    (failed,) = _failed_on(report, "tax_rate")
    assert report.compared and "e.g. 7.54" in failed and "reference 0.99 quantile" in failed
    # and once someone acknowledges it, the rate is part of the history: the next batch with it passes
    assert accept_pending(Settings().reference_dir, summary.batch_id)
    again, _ = ingest(later.assign(declaration_id=lambda d: d["declaration_id"] + "-2"), tmp_path, "declarations_c",
                      mapping=percent)
    assert _failed_on(again, "tax_rate") == [], again.failures


@pytest.mark.parametrize("first", [True, False], ids=["first-batch", "against-reference"])
def test_a_value_a_million_times_the_median_warns_with_its_count_and_examples(home, tmp_path, first):
    # given a dataset (or none yet), and a batch where two goods items are declared at ten million times the median
    if not first:
        ingest(foreign(300, seed=1), tmp_path, "declarations_a")
    batch = foreign(300, seed=4)
    batch.loc[[5, 6], "declared_value"] = batch["declared_value"].median() * 1e7
    # when it is ingested
    report, summary = ingest(batch, tmp_path, "declarations_b")
    # then both rows are stored, and a warning says how many and shows them
    assert summary.stored == 300 and summary.quarantined == 0 and summary.reconciles
    (failed,) = [f for f in _failed_on(report, "declared_value") if "× 1e+06" in f]
    assert "2 unexpected rows" in failed and "e.g. " in failed
    assert ("this batch's own 0.5 quantile" if first else "reference 0.5 quantile") in failed
    # and it is recorded on the batch, as the promotion gate and `aduana warnings` read it
    (warned,) = Warehouse(Settings().warehouse_path).validation_failures()
    batch_id, recorded = warned.split(": ", 1)
    assert batch_id == summary.batch_id and failed in json.loads(recorded)


def test_a_placeholder_date_is_stored_with_a_warning(home, tmp_path):
    # given a dataset of 2023 declarations, and a later batch where one date is 1900-01-01 (the old 1990 floor's case)
    ingest(foreign(300, seed=1), tmp_path, "declarations_a")
    batch = foreign(300, seed=5)
    batch.loc[0, "declaration_date"] = pd.Timestamp("1900-01-01")
    # when it is ingested, the row is stored and the date warns against the dataset's own period
    report, summary = ingest(batch, tmp_path, "declarations_b")
    assert summary.stored == 300 and summary.reconciles
    (failed,) = _failed_on(report, "declaration_date")
    assert "1 unexpected row" in failed and "e.g. 1900-01-01" in failed and "reference dates' middle half" in failed


@pytest.mark.parametrize("first", [True, False], ids=["first-batch", "against-reference"])
def test_ceilings_and_date_fences_see_every_row_of_a_batch_larger_than_the_gx_sample(home, tmp_path, monkeypatch,
                                                                                      first):
    # given a dataset with rates up to 35 % (or none yet), and GX's seeded sample far smaller than the next batch
    if not first:
        ingest(with_rates(foreign(300, seed=1), seed=1), tmp_path, "declarations_a")
    monkeypatch.setenv("ADUANA_GX_SAMPLE_ROWS", "50")

    def with_outliers(seed: int) -> pd.DataFrame:
        # one 754 % rate and one placeholder date, in rows the seeded sample of 50 does not draw
        frame = with_rates(foreign(300, seed=seed), seed=seed)
        frame.loc[123, "tax_rate"] = 7.54
        frame.loc[200, "declaration_date"] = pd.Timestamp("1900-01-01")
        return frame

    # when a batch of 300 rows is ingested
    report, summary = ingest(with_outliers(6), tmp_path, "declarations_b")
    # then both rows are stored, and each warns with the whole batch's count and the row's value
    assert summary.stored == 300 and summary.reconciles and not report.rejected
    assert 50 <= report.evaluated_rows < 300
    (rate,) = _failed_on(report, "tax_rate")
    assert "1 unexpected row " in rate and "e.g. 7.54" in rate, rate
    (date,) = _failed_on(report, "declaration_date")
    assert "1 unexpected row " in date and "e.g. 1900-01-01" in date, date
    # and the only other failures are none: the sample's other checks judged the sample alone
    assert sorted(report.failures) == sorted([rate, date])
    # recorded on the batch, as `aduana warnings` lists it
    warehouse = Warehouse(Settings().warehouse_path)
    (listed,) = warehouse.failed_batches("declarations")
    assert listed["batch_id"] == summary.batch_id and listed["failures"] == report.failures
    if first:
        return
    # and once acknowledged, both values are part of the history, though the sample never drew them
    assert accept_pending(Settings().reference_dir, summary.batch_id)
    again, _ = ingest(with_outliers(7), tmp_path, "declarations_c")
    assert _failed_on(again, "tax_rate") == [] and _failed_on(again, "declaration_date") == [], again.failures


def test_simulated_data_raises_none_of_these_warnings(world, home, tmp_path):
    for kind, frame in (("traders", world.traders), ("manifests", world.manifests),
                        ("declarations", world.declarations.head(2000))):
        report, _ = ingest(frame, tmp_path, kind)
        assert report.passed, (kind, report.failures)
