"""How a long step's progress is shown: `advance(what, done, total, unit=, label=)` (features.progress) drawn as a
Rich bar while a CLI command runs on a terminal, and elsewhere (a worker, a pipe, a log file) as a progress line now
and then. Both read the same: "risk model 118/1,000 boosting rounds (15 s elapsed, about 2 min 5 s left)", or
"features for 6,000 declarations 2/8: price bands (…)".

The CLI opens `showing()` around each command. Each `what` is one bar; it goes when its step ends, so the
terminal keeps only the one-line results the flows print (Rich draws them above the bars).
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from flows.orchestration import runtime

LINE_EVERY_S = 15.0  # without a terminal: a step's progress line at most this often, the first after this long

_bars: list = []  # the Rich Progress of the command being run, while it draws bars (at most one)
_lines: dict[str, tuple[float, float]] = {}  # what → (started, last line) for steps reported as lines


@contextlib.contextmanager
def showing() -> Iterator[None]:
    """Draw bars while inside, when stderr is an interactive terminal (Rich's test; TTY_INTERACTIVE=1 forces it)."""
    from rich.console import Console

    # The flows' lines pass through as written: no markup, colouring or wrapping of their text.
    console = Console(stderr=True, markup=False, emoji=False, highlight=False, soft_wrap=True)
    if not console.is_interactive:
        yield
        return
    from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn
    from rich.text import Text

    class Counted(ProgressColumn):
        """ "118/1,000 boosting rounds (15 s elapsed, about 2 min 5 s left)": the step's words, as its lines say."""

        def render(self, task) -> Text:  # noqa: ANN001 - a rich.progress.Task
            return Text(counted(int(task.completed), int(task.total or 0), task.fields.get("unit", ""),
                                task.fields.get("label", ""), task.elapsed or 0.0))

    bars = Progress(TextColumn("{task.description}"), BarColumn(), Counted(), console=console, transient=True,
                    redirect_stdout=False)  # results on stdout stay byte for byte what the command prints
    with bars:
        _bars.append(bars)
        try:
            yield
        finally:
            finish()


def finish() -> None:
    """Take the bars off the screen before the command prints its result (they are done by then); what is told
    afterwards goes out as lines."""
    while _bars:
        _bars.pop().stop()


def duration(seconds: float) -> str:
    """A duration as people say it: "4 s", "2 min 5 s", "1 h 3 min"."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min" + (f" {seconds % 60} s" if seconds % 60 else "")
    return f"{seconds // 3600} h" + (f" {seconds % 3600 // 60} min" if seconds % 3600 // 60 else "")


def counted(done: int, total: int, unit: str, label: str, elapsed: float) -> str:
    """ "118/1,000 boosting rounds (15 s elapsed, about 2 min 5 s left)" or "2/8: price bands (3 s elapsed, …)": the
    time left is the time so far per unit done, for the units still to do (none is said before the first is done)."""
    times = f"{duration(elapsed)} elapsed"
    if 0 < done < total:
        times += f", about {duration(elapsed * (total - done) / done)} left"
    return f"{done:,}/{total:,}" + (f" {unit}" if unit else "") + (f": {label}" if label else "") + f" ({times})"


def advance(what: str, done: int, total: int, *, unit: str = "", label: str = "") -> None:
    """Tell of a step's progress: its bar moves, or a line goes out if the step has run a while since the last."""
    if _bars:
        _draw(_bars[-1], what, done, total, unit, label)
        return
    now = time.monotonic()
    started, last = _lines.setdefault(what, (now, now))
    if done >= total:
        _lines.pop(what, None)
    elif now - last >= LINE_EVERY_S:
        _lines[what] = (started, now)
        runtime.progress(f"{what} {counted(done, total, unit, label, now - started)}")


def _draw(bars, what: str, done: int, total: int, unit: str, label: str) -> None:  # noqa: ANN001 - a rich Progress
    task = next((t for t in bars.tasks if t.description == what), None)
    if done >= total:
        if task is not None:
            bars.remove_task(task.id)
    elif task is None:
        bars.add_task(what, total=total, completed=done, unit=unit, label=label)
    else:
        bars.update(task.id, completed=done, total=total, unit=unit, label=label)
