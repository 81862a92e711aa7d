"""Batch scoring's output files (serving/batch.py `write_output`): opened in a spreadsheet, a CSV runs no formula."""
from __future__ import annotations

import csv

import pandas as pd


def _output(ids: list[str]) -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame({"declaration_id": ids, "risk_score": [0.9 - i / 100 for i in range(n)],
                         "expected_revenue": [-5.0] * n, "lane": ["red"] * n, "selected_by": ["model"] * n,
                         "reasons": ["=HYPERLINK(\"http://x\")", "a | b\nc", *["ok"] * (n - 2)],
                         "model_version": ["3"] * n})


def test_csv_outputs_neutralise_formulas_and_parquet_stays_verbatim(tmp_path):
    from serving.batch import write_output

    ids = ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\rx", "plain", "a|b"]
    out = _output(ids)
    write_output(out, tmp_path / "s.csv")
    with (tmp_path / "s.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["declaration_id"] for r in rows] == ["'=1+1", "'+SUM(A1)", "'-2+3", "'@cmd", "'\tx", "'\rx", "plain", "a|b"]
    assert rows[0]["reasons"].startswith("'=") and rows[0]["expected_revenue"] == "-5.0"  # numbers stay numbers
    write_output(out, tmp_path / "s.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "s.parquet"), out)
