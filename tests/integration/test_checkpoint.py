"""Dataset-level checks with a real Great Expectations file context and Data Docs under ADUANA_HOME."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from expectations.checkpoint import check_batch, load_suite
from expectations.reference import merge
from features.contract import KINDS
from features.intake.prepared import prepare_batch
from tests.conftest import write_csv

DISTRIBUTION_TYPES = {"expect_column_median_to_be_between", "expect_column_mean_to_be_between",
                      "expect_column_quantile_values_to_be_between", "expect_column_values_to_be_in_set",
                      "expect_column_proportion_of_non_null_values_to_be_between",
                      "expect_column_values_to_not_be_null"}


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


def test_the_simulator_is_judged_against_its_own_reference_like_any_dataset(world, tmp_path):
    first = prepare_batch(write_csv(tmp_path / "declarations_1.csv", world.declarations.head(1000)))
    report = check_batch(first.valid, "declarations", tmp_path / "home")
    assert report.passed and not report.compared
    reference = merge(None, report.profile, "first")
    later = prepare_batch(write_csv(tmp_path / "declarations_2.csv", world.declarations.iloc[1000:1500]))
    report = check_batch(later.valid, "declarations", tmp_path / "home", reference=reference)
    assert report.compared and report.passed, report.failures
    assert not any(s.startswith("expect_column_median_to_be_between on declared_value") for s in report.skipped)


def test_an_all_null_column_is_skipped_not_failed(world, tmp_path):
    rows = world.declarations.head(300)
    reference = merge(None, check_batch(prepare_batch(write_csv(tmp_path / "declarations_1.csv", rows)).valid,
                                        "declarations", tmp_path / "home").profile, "first")
    batch = prepare_batch(write_csv(tmp_path / "declarations_2.csv",
                                    world.declarations.iloc[300:600].assign(office_id=None)))
    report = check_batch(batch.valid, "declarations", tmp_path / "home", reference=reference)
    assert report.passed, report.failures
    assert any("on office_id" in s and "no values" in s for s in report.skipped)


@pytest.mark.parametrize("kind", KINDS)
def test_no_distribution_bound_is_a_constant_in_the_suites(kind):
    """Ranges, code sets, shares and medians come from the dataset's reference profile, never from the suite."""
    for e in load_suite(kind)["expectations"]:
        if e["type"] in DISTRIBUTION_TYPES or ("relative" not in e and e["type"] == "expect_column_values_to_be_between"
                                               and "max_value" in e["kwargs"]):
            assert "relative" in e, e
            assert not {"min_value", "max_value", "value_set"} & set(e["kwargs"]), e
