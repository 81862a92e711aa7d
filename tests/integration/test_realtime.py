"""serving/realtime.py as the app uses it.

The decision log of real-time answers (`DecisionLog`): every answer logged with its provenance, durable in the
journal before it is given and copied to the warehouse once it is free, and no answer given when the log cannot
take it. Crashes and many workers: tests/integration/test_decision_durability.py.

Real-time thresholds come from enough evidence: a scoring batch smaller than the lane policy's
`threshold_min_rows`, or one made under another lane policy, does not set them (issue 19, finding 3).
"""
from __future__ import annotations

import os
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from features.intake.prepared import prepare_batch
from features.warehouse import Warehouse
from serving.api import create_app
from serving.lanes import LanePolicy
from serving.model_source import FixedSource
from serving.realtime import ServiceState
from serving.scorer import Scorer
from tests.conftest import write_csv
from tests.integration.test_api import _declaration, api_scorer  # noqa: F401 - a module-scoped fixture
from tests.integration.test_api_app import write_locked

pytestmark = pytest.mark.integration


def _realtime_decisions(scorer: Scorer) -> pd.DataFrame:
    with scorer.warehouse.process_lock():
        return scorer.warehouse.read("SELECT * FROM decisions WHERE request_id IS NOT NULL ORDER BY decided_at, position")


def test_every_realtime_answer_is_logged_with_its_provenance(api_scorer, world):  # noqa: F811
    with TestClient(create_app(api_scorer, api_key="")) as c:  # the lifespan: the log flushes on shutdown
        state = c.app.state.service
        answers = [c.post("/v1/score", json=_declaration(world, -i)) for i in range(1, 4)]
        answers.append(c.post("/v1/score", json=[_declaration(world, -4), _declaration(world, -5)],
                              headers={"X-Request-ID": "client-req-42"}))
        assert all(a.status_code == 200 for a in answers)
        thresholds_from = state.thresholds.batch_id if state.thresholds else None
    ids = [a.headers["x-request-id"] for a in answers]
    log = _realtime_decisions(api_scorer)
    log = log[log["request_id"].isin(ids)]  # other tests' clients log too
    assert len(log) == 5
    assert log["request_id"].nunique() == 4 and (log["request_id"] == "client-req-42").sum() == 2
    assert log["batch_id"].nunique() == 4 and log["batch_id"].str.startswith("rt-").all()
    assert answers[-1].headers["x-request-id"] == "client-req-42"
    assert set(log["model_version"]) == {"3"} and set(log["policy_hash"]) == {api_scorer.policy.digest()}
    assert log["thresholds_batch_id"].isna().all() if thresholds_from is None else \
        (log["thresholds_batch_id"] == thresholds_from).all()
    assert log["declaration_id"].tolist() == [_declaration(world, -i)["declaration_id"] for i in range(1, 6)]
    assert log[log["request_id"] == "client-req-42"]["position"].tolist() == [0, 1]
    assert log["lane"].tolist() == [a.json()["lane"] for a in answers[:3]] + [r["lane"] for r in answers[3].json()]


def test_an_answer_is_durable_in_the_journal_before_the_warehouse_has_it(api_scorer, world):  # noqa: F811
    """While another process holds the warehouse the answer is still given: the journal holds it, and the copy
    to the warehouse waits for the next sync, which adds it once."""
    api_scorer.context()  # the snapshot, read before the other process takes the file (whatever ran before)
    with TestClient(create_app(api_scorer, api_key="")) as c:
        log = c.app.state.decision_log
        with write_locked(api_scorer.warehouse.path):
            answer = c.post("/v1/score", json=_declaration(world))
            assert answer.status_code == 200
            journalled = [r for change in log.oplog.changes({}) for r in change.rows]
            assert answer.headers["x-request-id"] in {r["request_id"] for r in journalled}
            assert log.sync() == 0 and "busy" in log.last_error
        assert log.sync() >= 1 and log.sync() == 0
    logged = _realtime_decisions(api_scorer)
    assert (logged["request_id"] == answer.headers["x-request-id"]).sum() == 1


def test_the_copy_to_the_warehouse_runs_in_a_process_of_its_own_and_stops_with_the_app(api_scorer, world):  # noqa: F811
    """The copier is not a thread of the API's process (its parsing would hold the GIL the requests need): a child
    process copies the answers on its own every few seconds, with no sync called, leaves the warehouse alone while
    nothing is new, and ends with the app."""
    app = create_app(api_scorer, api_key="")
    app.state.decision_log.sync_seconds = 0.2
    with TestClient(app) as c:
        copier = app.state.decision_log._copier
        assert copier.pid != os.getpid() and copier.poll() is None
        answer = c.post("/v1/score", json=_declaration(world, -7))
        assert answer.status_code == 200, answer.text
        deadline = time.monotonic() + 60
        while (_realtime_decisions(api_scorer)["request_id"] == answer.headers["x-request-id"]).sum() == 0:
            assert time.monotonic() < deadline, "the copier did not copy the answer"
            time.sleep(0.2)
        assert app.state.decision_log.last_error is None
        time.sleep(0.6)  # a copy whose fingerprint predates the answer it took copies once more, before the lock
        with write_locked(api_scorer.warehouse.path):  # another process holds the warehouse
            time.sleep(1.5)  # seven copies' turns with nothing new: the copier does not open it, so finds it not busy
            assert app.state.decision_log.last_error is None
            late = c.post("/v1/score", json=_declaration(world, -8))
            assert late.status_code == 200, late.text
            while app.state.decision_log.last_error is None:  # something new: it tries, and reports it busy
                assert time.monotonic() < deadline + 60, "the copier did not try the new answer"
                time.sleep(0.1)
        while (_realtime_decisions(api_scorer)["request_id"] == late.headers["x-request-id"]).sum() == 0:
            assert time.monotonic() < deadline + 120, "the copier did not copy once the warehouse was free"
            time.sleep(0.2)
    assert copier.poll() is not None  # stopped with the app's shutdown
    assert (_realtime_decisions(api_scorer)["request_id"] == answer.headers["x-request-id"]).sum() == 1


def test_a_shutdown_while_the_warehouse_is_busy_keeps_the_answers_for_the_next_sync(api_scorer, world,  # noqa: F811
                                                                                      monkeypatch):
    api_scorer.context()  # the snapshot, read before the other process takes the file (whatever ran before)
    monkeypatch.setattr(api_scorer.warehouse, "busy_wait", 0.5)  # the start's first thresholds read gives up soon
    app = create_app(api_scorer, api_key="")
    with write_locked(api_scorer.warehouse.path), TestClient(app) as client:
        client.app.state.decision_log.warehouse.busy_wait = 0.2
        answer = client.post("/v1/score", json=_declaration(world, -6))
        assert answer.status_code == 200, answer.text
    # shut down while the warehouse was busy: nothing copied, nothing lost
    assert (_realtime_decisions(api_scorer)["request_id"] == answer.headers["x-request-id"]).sum() == 0
    again = create_app(api_scorer, api_key="")
    with TestClient(again):
        again.state.decision_log.sync()
    logged = _realtime_decisions(api_scorer)
    assert (logged["request_id"] == answer.headers["x-request-id"]).sum() == 1


def test_a_log_that_cannot_be_written_gives_no_answer(api_scorer, world):  # noqa: F811
    """The operational store is down (a PostgreSQL URL nobody listens on): 503 with Retry-After, no lane given,
    and nothing of it reaches the warehouse."""
    from features.warehouse import open_log
    from tests.conftest import free_port

    down = open_log(f"postgresql://aduana@127.0.0.1:{free_port()}/ops", api_scorer.warehouse.path)
    with TestClient(create_app(api_scorer, api_key="", oplog=down)) as c:
        refused = c.post("/v1/score", json=_declaration(world), headers={"X-Request-ID": "never-given"})
        assert refused.status_code == 503 and "retry-after" in refused.headers
        assert "decision log" in refused.json()["detail"] and "lane" not in refused.text
    assert (_realtime_decisions(api_scorer)["request_id"] == "never-given").sum() == 0


def test_two_clients_with_the_same_request_id_are_both_logged(api_scorer, world):  # noqa: F811
    with TestClient(create_app(api_scorer, api_key="")) as c:
        for i in (1, 2):
            assert c.post("/v1/score", json=_declaration(world, -i), headers={"X-Request-ID": "dup-7"}).status_code == 200
        c.app.state.decision_log.sync()
    logged = _realtime_decisions(api_scorer)
    assert (logged["request_id"] == "dup-7").sum() == 2


def test_realtime_rows_do_not_move_the_thresholds(api_scorer, world):  # noqa: F811
    from serving.scorer import Thresholds

    batch = api_scorer.score(world.declarations.iloc[-200:].reset_index(drop=True))
    with TestClient(create_app(api_scorer, api_key="")) as c:
        state = c.app.state.service
        state.pin(Thresholds.from_decisions(batch.assign(batch_id="pinned"), "risk_score", api_scorer.policy.seed))
        for i in range(1, 4):
            assert c.post("/v1/score", json=_declaration(world, -i)).status_code == 200
        c.app.state.decision_log.sync()
        state._slot = None
        state.refresh()
        assert state.thresholds.batch_id == "pinned"


pytestmark = pytest.mark.integration
MIN_ROWS = 400


@pytest.fixture(scope="module")
def stored_world(world, tmp_path_factory) -> Path:
    """A warehouse holding the small world and no decision yet, stored once: each test works on its own copy."""
    tmp = tmp_path_factory.mktemp("thresholds")
    warehouse = Warehouse(tmp / "warehouse.duckdb")
    for kind in ("traders", "manifests", "declarations"):
        warehouse.store(prepare_batch(write_csv(tmp / f"{kind}.csv", getattr(world, kind))))
    return warehouse.path


@pytest.fixture
def scorer(trained, stored_world, tmp_path) -> Scorer:
    warehouse = Warehouse(Path(shutil.copy(stored_world, tmp_path / "warehouse.duckdb")))
    s = Scorer(warehouse, LanePolicy(threshold_min_rows=MIN_ROWS), source=FixedSource({"3": trained.model}, "3"),
               reload_seconds=0)
    s.refresh_model(force=True)
    return s


def _log_batch(scorer: Scorer, rows: pd.DataFrame, batch_id: str, minutes: int, policy: LanePolicy | None = None) -> None:
    """Score `rows` as one batch under `policy` and append it to the decision log, `minutes` after a fixed time."""
    policy = policy or scorer.policy
    keep, scorer.policy = scorer.policy, policy
    try:
        out = scorer.score(rows.reset_index(drop=True), explain_lanes=())
    finally:
        scorer.policy = keep
    decided_at = datetime(2026, 1, 1, tzinfo=UTC).replace(tzinfo=None) + timedelta(minutes=minutes)
    decisions = out.assign(position=range(len(out)), policy_hash=policy.digest())
    scorer.warehouse.decisions.append_batch(decisions, pd.DataFrame(), batch_id, "test", decided_at)


def _refreshed(scorer: Scorer) -> ServiceState:
    state = ServiceState(scorer)
    state.refresh()
    return state


def test_a_batch_under_the_minimum_does_not_set_the_thresholds(scorer, world):
    declarations = world.declarations
    _log_batch(scorer, declarations.iloc[:1_000], "full-day", minutes=0)
    _log_batch(scorer, declarations.iloc[1_000:1_008], "eight-rows", minutes=5)  # the latest batch, but 8 rows
    state = _refreshed(scorer)
    assert state.thresholds.batch_id == "full-day"
    assert state.thresholds_source == {"from": "scoring batch", "batch_id": "full-day", "rows": 1_000,
                                       "min_rows": MIN_ROWS, "enough": True, "model_version": "3",
                                       "policy_hash": scorer.policy.digest()}


def test_a_batch_of_another_lane_policy_does_not_set_the_thresholds(scorer, world):
    declarations = world.declarations
    _log_batch(scorer, declarations.iloc[:1_000], "this-policy", minutes=0)
    other = scorer.policy.model_copy(update={"red_share": 0.2})
    _log_batch(scorer, declarations.iloc[1_000:2_000], "other-policy", minutes=5, policy=other)
    assert _refreshed(scorer).thresholds.batch_id == "this-policy"


def test_without_a_large_enough_batch_the_recent_declarations_set_them(scorer, world):
    _log_batch(scorer, world.declarations.iloc[:8], "eight-rows", minutes=0)
    state = _refreshed(scorer)
    assert state.thresholds.batch_id == "recent-declarations"
    assert state.thresholds_source["from"] == "recent declarations"
    assert state.thresholds_source["rows"] >= MIN_ROWS and state.thresholds_source["enough"]


def test_thresholds_learned_stay_when_only_a_small_source_is_left(scorer, world):
    """Thresholds from a full batch are kept when the next learning could only use fewer rows than the minimum."""
    _log_batch(scorer, world.declarations.iloc[:1_000], "full-day", minutes=0)
    state = _refreshed(scorer)
    policy = scorer.policy.model_copy(update={"threshold_min_rows": 10 * len(world.declarations)})
    scorer.policy = policy  # a new policy: no batch of it yet, and fewer recent declarations than it asks for
    state._slot = None
    state.refresh()
    assert state.thresholds.batch_id == "full-day"



def test_thresholds_of_another_lane_policy_do_not_outlive_it(scorer, world):
    """A new capacity with only a small source: the held thresholds (another capacity's cut-offs) are replaced."""
    _log_batch(scorer, world.declarations.iloc[:1_000], "full-day", minutes=0)
    state = _refreshed(scorer)
    scorer.policy = scorer.policy.model_copy(update={"red_share": 0.2, "threshold_min_rows": 10 * len(world.declarations)})
    state._slot = None
    state.refresh()
    assert state.thresholds.batch_id == "recent-declarations" and not state.thresholds_source["enough"]


def test_the_minimum_does_not_change_the_policy_digest():
    """Decisions stay traceable to the same policy hash across a setting that only picks real time's source."""
    assert LanePolicy(threshold_min_rows=5).digest() == LanePolicy().digest()
    assert LanePolicy(red_share=0.06).digest() != LanePolicy().digest()


def test_readyz_says_where_the_thresholds_came_from(scorer, world):
    _log_batch(scorer, world.declarations.iloc[:1_000], "full-day", minutes=0)
    with TestClient(create_app(scorer, api_key="", decision_log=False)) as client:
        body = client.get("/readyz").json()
    assert body["thresholds_from"] == "full-day"
    assert body["thresholds_source"]["from"] == "scoring batch" and body["thresholds_source"]["rows"] == 1_000
