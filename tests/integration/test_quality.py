"""Dataset-level checks with a real Great Expectations file context and Data Docs under ADUANA_HOME."""
from __future__ import annotations

import json

import pandas as pd

from features.data.ingest import prepare_batch
from features.data.quality import check_batch, load_suite
from tests.conftest import write_csv


def test_simulated_declarations_pass_the_suite_and_build_data_docs(world, tmp_path):
    batch = prepare_batch(write_csv(tmp_path / "declarations.csv", world.declarations.head(3000)))
    report = check_batch(batch.valid, "declarations", tmp_path / "home")
    assert report.passed and not report.rejected, report.failures
    assert report.evaluated_rows == 3000
    assert report.docs_index is not None and report.docs_index.exists()
    assert str(report.docs_index).startswith(str(tmp_path / "home"))


def test_a_warning_expectation_flags_without_rejecting(world, tmp_path):
    rows = world.declarations.head(500).assign(declared_value=0.0)  # an export that lost its values
    batch = prepare_batch(write_csv(tmp_path / "declarations.csv", rows))
    report = check_batch(batch.valid, "declarations", tmp_path / "home")
    assert not report.passed and not report.rejected
    assert any("declared_value" in f and f.startswith("warning") for f in report.failures)


def test_a_critical_expectation_rejects_the_batch(world, tmp_path):
    suites = tmp_path / "suites"
    suites.mkdir()
    suite = load_suite("declarations")
    suite["expectations"].append({
        "type": "expect_column_max_to_be_between", "kwargs": {"column": "declared_value", "max_value": 1.0},
        "severity": "critical"})
    (suites / "declarations.json").write_text(json.dumps(suite))
    batch = prepare_batch(write_csv(tmp_path / "declarations.csv", world.declarations.head(200)))
    report = check_batch(batch.valid, "declarations", tmp_path / "home", suites_dir=suites)
    assert report.rejected
    assert any(f.startswith("critical: expect_column_max_to_be_between") for f in report.failures)


def test_expectations_on_absent_optional_columns_are_skipped_not_failed(tmp_path):
    frame = pd.DataFrame({"declaration_id": ["a", "b"], "declared_value": [10.0, 20.0]})
    report = check_batch(frame, "declarations", tmp_path / "home")
    assert report.passed
    assert any("office_id" in s for s in report.skipped)


def test_a_large_batch_is_checked_on_a_seeded_sample(world, tmp_path):
    batch = prepare_batch(write_csv(tmp_path / "declarations.csv", world.declarations.head(2000)))
    report = check_batch(batch.valid, "declarations", tmp_path / "home", sample_rows=500)
    assert report.evaluated_rows == 500
