"""Progress lines appear once: on a worker (Prefect's console handler on) as the run log's line only; under the
CLI, which silences that handler, as the printed line."""
from __future__ import annotations

import pytest
from prefect import flow

from flows.orchestration.runtime import progress

pytestmark = pytest.mark.integration


@flow(name="test-progress")
def _say(message: str) -> None:
    progress(message)


def test_a_progress_line_on_a_worker_is_shown_once(prefect_api, capfd):
    """The tests' process logs to the console as a worker does (the CLI's own path is covered by its tests)."""
    message = "progress-line-once"
    _say(message)
    out, err = capfd.readouterr()
    assert (out + err).count(message) == 1, out + err
