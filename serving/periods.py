"""The periods an audit list covers: parsed from what a user writes, or the data's latest complete month.

Plain datetime, without pandas: the CLI checks a --period with `parse_period` before anything heavy is imported.
"""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta

from features.errors import UserError

FORMS = "use START:END dates, a month (2024-11) or a year (2024)"


def parse_period(period: str) -> tuple[datetime, datetime]:
    """'2024-10-01:2024-12-31', or a month '2024-11', or a year '2024' (or one day) → its first and last day."""
    try:
        if ":" in period:
            start, end = (datetime.fromisoformat(p) for p in period.split(":", 1))
        elif re.fullmatch(r"\d{4}", period):
            start, end = datetime(int(period), 1, 1), datetime(int(period), 12, 31)
        elif re.fullmatch(r"\d{4}-\d{1,2}", period):
            start = datetime.strptime(period, "%Y-%m")
            end = _month_end(start)
        else:
            start = end = datetime.combine(date.fromisoformat(period), datetime.min.time())
    except ValueError as exc:
        raise UserError(f"--period {period!r}: {FORMS}") from exc
    if end < start:
        raise UserError(f"--period {period!r}: the end is before the start")
    return start, end


def latest_complete_month(newest: datetime) -> str:
    """The month of `newest` if it is that month's last day, else the month before (as '2024-11')."""
    day = datetime(newest.year, newest.month, newest.day)
    month = day if _month_end(day) == day else day.replace(day=1) - timedelta(days=1)
    return f"{month.year:04d}-{month.month:02d}"


def _month_end(day: datetime) -> datetime:
    """The last day of `day`'s month."""
    first_of_next = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return first_of_next - timedelta(days=1)
