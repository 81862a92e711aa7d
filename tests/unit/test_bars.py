"""The flows show a step's progress once (flows/bars.py): a Rich bar on an interactive terminal, a line now and
then elsewhere."""
from __future__ import annotations

import pytest

from flows import bars


def test_on_an_interactive_terminal_each_step_is_a_bar_until_it_ends(monkeypatch, capsys):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("TTY_INTERACTIVE", "1")
    with bars.showing():
        [progress] = bars._bars
        bars.advance("risk model", 120, 1000, unit="boosting rounds")
        bars.advance("features for 10 declarations", 3, 8, label="price bands")
        assert {t.description: (t.completed, t.total) for t in progress.tasks} == {
            "risk model": (120, 1000), "features for 10 declarations": (3, 8)}
        progress.refresh()
        err = capsys.readouterr().err
        assert "120/1,000 boosting rounds (" in err and "s elapsed, about " in err and " left)" in err
        assert "3/8: price bands (" in err
        bars.advance("risk model", 1000, 1000)
        assert [t.description for t in progress.tasks] == ["features for 10 declarations"]
    assert bars._bars == []


def test_without_a_terminal_a_long_step_writes_a_line_now_and_then_and_nothing_at_its_end(monkeypatch, capsys):
    monkeypatch.setattr(bars, "_lines", {})  # steps left unfinished here stay out of other tests
    monkeypatch.setenv("TTY_COMPATIBLE", "0")
    with bars.showing():
        assert bars._bars == []
        monkeypatch.setattr(bars, "LINE_EVERY_S", 0.0)
        bars.advance("reference", 10, 100, unit="boosting rounds")
        bars.advance("reference", 100, 100, unit="boosting rounds")
        monkeypatch.setattr(bars, "LINE_EVERY_S", 3600.0)
        bars.advance("risk model", 10, 100)
    err = capsys.readouterr().err
    assert "reference 10/100 boosting rounds (0 s elapsed" in err and "100/100" not in err and "risk model" not in err


@pytest.mark.parametrize(("done", "total", "unit", "label", "elapsed", "said"), [
    (118, 120, "boosting rounds", "", 15.2, "118/120 boosting rounds (15 s elapsed, about 0 s left)"),
    (2, 8, "", "price bands", 2.0, "2/8: price bands (2 s elapsed, about 6 s left)"),
    (0, 1000, "boosting rounds", "", 0.4, "0/1,000 boosting rounds (0 s elapsed)"),  # no guess before the first
    (100, 1000, "", "", 65, "100/1,000 (1 min 5 s elapsed, about 9 min 45 s left)"),
    (1, 2, "", "", 3700, "1/2 (1 h 1 min elapsed, about 1 h 1 min left)"),
])
def test_a_step_says_what_it_counts_what_it_did_and_which_time_is_which(done, total, unit, label, elapsed, said):
    assert bars.counted(done, total, unit, label, elapsed) == said
