"""Audit periods (serving/periods.py)."""
from __future__ import annotations

import pandas as pd
import pytest

from serving.periods import latest_complete_month, parse_period


@pytest.mark.parametrize(("period", "start", "end"), [
    ("2024-11", "2024-11-01", "2024-11-30"), ("2024", "2024-01-01", "2024-12-31"),
    ("2024-10-05:2024-10-20", "2024-10-05", "2024-10-20"), ("2024-02", "2024-02-01", "2024-02-29"),
    ("2024-11-05", "2024-11-05", "2024-11-05")])
def test_periods(period, start, end):
    assert parse_period(period) == (pd.Timestamp(start), pd.Timestamp(end))


def test_a_bad_period_is_explained():
    from features.errors import UserError

    with pytest.raises(UserError, match="period"):
        parse_period("2024-12-01:2024-01-01")
    with pytest.raises(UserError, match="period"):
        parse_period("last week")
    with pytest.raises(UserError, match="a month"):
        parse_period("2024-13")


def test_the_default_audit_period_is_the_datas_latest_complete_month():
    assert latest_complete_month(pd.Timestamp("2025-01-02")) == "2024-12"  # the demo's data: January has begun
    assert latest_complete_month(pd.Timestamp("2024-12-31")) == "2024-12"
    assert latest_complete_month(pd.Timestamp("2024-03-01 00:00")) == "2024-02"
