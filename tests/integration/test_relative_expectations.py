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

from expectations.checkpoint import check_batch, load_suite, plan_expectations
from expectations.reference import (
    accept_pending,
    load_reference,
    merge,
    pending_path,
    profile_frame,
    quantile,
    reference_path,
)
from features.intake.batch import prepare_batch
from features.warehouse import Warehouse
from flows import runtime
from flows.ingest import store_batch, validate_batch
from flows.settings import get_settings
from tests.conftest import write_csv

pytestmark = pytest.mark.integration

LABELS = ("inspected", "fraud", "revenue", "critical", "control_date")


def foreign(n: int, seed: int, modes: tuple[str, ...] = ("1", "2", "3", "4")) -> pd.DataFrame:
    """A third-party export unlike the simulator: numeric transport codes, bulk cargo around 10,000 t a goods
    item, values in another currency, and every declaration inspected."""
    rng = np.random.default_rng(seed)
    weights = np.array([0.55, 0.25, 0.15, 0.05][: len(modes)])
    return pd.DataFrame({
        "declaration_id": [f"F{seed}-{i:05d}" for i in range(n)],
        "declaration_date": pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D"),
        "importer_id": [f"IMP{k:03d}" for k in rng.integers(0, 40, n)],
        "hs_code": rng.choice(["270900", "100199", "260111", "310230"], n),
        "origin_country": rng.choice(["BR", "AU", "NO", "ZZ"], n),
        "declared_value": rng.lognormal(np.log(2e6), 1.0, n),
        "office_id": rng.choice(["A01", "A02", "B05"], n),
        "transport_mode": rng.choice(list(modes), n, p=weights / weights.sum()),
        "net_mass_kg": rng.lognormal(np.log(1e7), 0.5, n),
        "inspected": 1,
        "fraud": (rng.random(n) < 0.3).astype(int),
    })


def ingest(frame: pd.DataFrame, tmp_path: Path, name: str):
    """The ingest flow's validate and store tasks on one file: (report, summary)."""
    batch = prepare_batch(write_csv(tmp_path / f"{name}.csv", frame))
    assert batch.rejected.empty, batch.rejected["message"].tolist()[:3]
    rt = runtime.current()
    report = validate_batch.fn(rt, batch)
    return report, store_batch.fn(rt, batch, report)


def reference(kind: str = "declarations") -> dict | None:
    return load_reference(get_settings().reference_dir, kind)


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
    assert Warehouse(get_settings().warehouse_path).validation_failures() == []


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
    suite = json.loads((get_settings().gx_root / "gx" / "expectations" / "declarations.json").read_text())
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
    failures = Warehouse(get_settings().warehouse_path).validation_failures()
    assert len(failures) == 1 and failures[0].startswith(f"{summary.batch_id}: ")
    assert json.loads(failures[0].split(": ", 1)[1]) == report.failures
    assert len(reference()["batches"]) == 1
    assert pending_path(get_settings().reference_dir, summary.batch_id).exists()


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
    assert Warehouse(get_settings().warehouse_path).validation_failures() == []


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
    settings = get_settings()
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
    warehouse = Warehouse(get_settings().warehouse_path)
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
    assert not pending_path(get_settings().reference_dir, warned.batch_id).exists()
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


# --- the reference profile itself (no GX) --------------------------------------------------------------------

def test_the_profile_merges_once_per_batch_and_reads_quantiles_within_its_resolution():
    suite = load_suite("declarations")
    frame = foreign(2000, seed=5)
    profile = profile_frame(frame, suite, "declarations")
    ref = merge(merge(None, profile, "b1"), profile, "b1")
    assert ref["batches"] == ["b1"] and ref["rows"] == 2000
    ref = merge(ref, profile, "b2")
    entry = ref["sections"]["all"]["columns"]["net_mass_kg"]
    assert entry["rows"] == 4000 and entry["nulls"] == 0
    assert quantile(entry, 0.5) == pytest.approx(frame["net_mass_kg"].median(), rel=0.07)
    assert quantile(entry, 0.99) == pytest.approx(frame["net_mass_kg"].quantile(0.99), rel=0.07)
    assert ref["sections"]["labelled"]["columns"]["fraud"]["count"] == 4000


def test_label_expectations_apply_to_labelled_rows_only():
    suite = load_suite("declarations")
    frame = foreign(300, seed=1).assign(inspected=lambda d: (np.arange(len(d)) % 2).astype(float),
                                        fraud=lambda d: d["fraud"].where(d["inspected"] == 1))
    ref = merge(None, profile_frame(frame, suite, "declarations"), "b1")
    planned, _ = plan_expectations(frame, suite, ref)
    fraud = next(p for p in planned if p["kwargs"].get("column") == "fraud")
    assert fraud["kwargs"]["row_condition"]["column"] == {"name": "inspected"}
    assert ref["sections"]["labelled"]["columns"]["fraud"]["count"] == 150


def test_a_pending_profile_merges_once_and_the_reference_is_replaced_atomically(tmp_path):
    from expectations.reference import record_batch

    suite = load_suite("declarations")
    profile = profile_frame(foreign(100, seed=1), suite, "declarations")
    record_batch(tmp_path, "b1", profile, accepted=True)
    record_batch(tmp_path, "b2", profile, accepted=False)
    assert load_reference(tmp_path, "declarations")["batches"] == ["b1"]
    assert accept_pending(tmp_path, "b2") and not accept_pending(tmp_path, "b2")
    assert load_reference(tmp_path, "declarations")["batches"] == ["b1", "b2"]
    assert sorted(p.name for p in reference_path(tmp_path, "declarations").parent.glob("*.tmp")) == []
