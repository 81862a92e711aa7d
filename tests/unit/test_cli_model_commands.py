"""flows/cli/model_commands.py: the model commands' own argument types."""
from __future__ import annotations

import pytest
import typer

from flows.cli.model_commands import duration


@pytest.mark.parametrize(("text", "seconds"), [("10m", 600), ("90s", 90), ("1h", 3600), ("45", 45), ("1.5m", 90)])
def test_budgets_read_as_people_write_them(text, seconds):
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "0s", "-5m", "5d"])
def test_a_budget_that_is_no_duration_is_refused(text):
    with pytest.raises(typer.BadParameter, match="give a duration"):
        duration(text)
