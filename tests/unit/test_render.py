"""What flows/render.py writes: the scoring report's table survives what cells hold; what a data scientist reads:
the monitor's verdict and its features in order, the promote printout with the gate's decision and whole reasons,
the training table on data without revenue."""
from __future__ import annotations

import pandas as pd

from flows.render import NO_REVENUE, metrics_text, monitor_markdown, promote_text
from tests.unit.test_batch import _output
from training.monitoring import MonitorReport
from training.registry import clip


def test_the_report_table_survives_pipes_and_newlines_in_cells():
    import re

    from flows.render import score_markdown
    from serving.batch import BatchSummary

    report = score_markdown(BatchSummary.of(_output(["a|b", "c\nd", "e"]), top=3), "b1", "3", "hash").splitlines()
    start = report.index("| declaration | risk | expected revenue | lane |") + 2
    rows = report[start:start + 3]
    assert len(rows) == 3 and all(r.startswith("| ") for r in rows), report
    for row in rows:
        assert len(re.split(r"(?<!\\)\|", row)[1:-1]) == 4, row
    assert rows[0].startswith("| a\\|b |")
    # The reasons in a list under the table, whole (a table cell clips them in Prefect's view), one item per row.
    reasons = report[report.index("Their reasons:") + 2:][:3]
    assert len(reasons) == 3 and all(r.startswith("- **") for r in reasons), reasons


def _report() -> MonitorReport:
    features = pd.DataFrame({
        "feature": ["log_declared_value", "hs_chapter", "importer_days_known", "company_age_days"],
        "psi": [0.12, 0.03, 8.3, 2.1], "test": ["ks"] * 4, "statistic": [0.1] * 4,
        "missing_reference": [0.0] * 4, "missing_current": [0.0] * 4, "alerting": [True, True, False, False]})
    return MonitorReport(model_version="3", window=(pd.Timestamp("2024-05-01"), pd.Timestamp("2024-05-30")),
                         rows=5000, reference_rows=20000, features=features, score={"psi": 0.02},
                         outcomes={})


def test_no_drift_says_why_and_the_features_that_can_alert_come_first():
    report = _report()
    assert report.verdict() == ("no drift: the largest PSI among the 2 features that can alert is 0.120 (threshold "
                                "0.25); 2 features that move by construction (trends with time, new traders' ids) are "
                                "reported, not alerted on")
    text = monitor_markdown(report)
    assert text.splitlines()[0] == f"## customs-risk v3: {report.verdict()}"
    first, reported = text.index("### Features that can alert (2"), text.index("### Reported, not alerted on (2")
    assert first < text.index("| log_declared_value |") < text.index("| hs_chapter |") < reported
    assert reported < text.index("| importer_days_known |")


def test_promote_shows_the_gate_beside_the_challenger_reasons_whole_and_no_checksums():
    reason = ("the challenger does not beat the reference on PR-AUC (0.412 vs 0.418, paired bootstrap p = 0.31) "
              "— the model stays as it was")
    result = {"champion": "1", "challenger": "2",
              "versions": {"challenger": {"version": "2", "gate": "refused", "gate_reasons": [reason],
                                          "tags": {"candidate": "model", "gate_reference": "reference"}}},
              "promotions": [{"at": "2026-12-04T10:00:00+00:00", "action": "promote", "version": "1", "by": "gate",
                              "reason": reason}]}
    text = promote_text(result, None)
    lines = text.splitlines()
    assert lines[0] == "@champion: v1" and lines[1] == "@challenger: v2 (gate: refused)"
    words = " ".join(line.strip().removeprefix("- ") for line in lines if line.startswith("    ")).split()
    assert " ".join(reason.split()) in " ".join(words)  # every word, none cut
    assert all(len(line) <= 110 for line in lines) and "sha256" not in text
    assert text.index("candidate=model") < text.index("promotions")
    assert "— the model stays as it was" in " ".join(line.strip() for line in lines[lines.index("promotions (latest last):"):])


def test_a_cut_reason_ends_at_a_word():
    assert clip("the gate refused the challenger", 20) == "the gate refused…"
    assert clip("short", 20) == "short"


def test_training_without_revenue_says_so_once_and_why_a_group_was_left_out():
    metrics = {f"{m}_at_{n}pct": (None if m == "revenue" else 0.5) for m in ("precision", "recall", "revenue")
               for n in (1, 2, 5, 10)} | {"pr_auc": 0.4, "positive_share": 0.5}
    groups = [{"group": "registry", "kept": False, "delta": None,
               "note": "no data: its columns are constant on the training rows"},
              {"group": "price", "kept": True, "delta": 0.0123, "note": "helps on validation"}]
    text = metrics_text({"metrics": metrics, "reference_metrics": metrics, "feature_groups": groups})
    assert "revenue@" not in text and text.count(NO_REVENUE) == 1
    assert "registry left out (no data: its columns are constant on the training rows)" in text
    assert "price kept (+0.0123)" in text
