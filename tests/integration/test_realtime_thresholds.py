"""Real-time thresholds come from enough evidence: a scoring batch smaller than the lane policy's
`threshold_min_rows`, or one made under another lane policy, does not set them (issue 19, finding 3)."""
from __future__ import annotations

import shutil
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
    state._refreshed_at = -float("inf")
    state.refresh()
    assert state.thresholds.batch_id == "full-day"



def test_thresholds_of_another_lane_policy_do_not_outlive_it(scorer, world):
    """A new capacity with only a small source: the held thresholds (another capacity's cut-offs) are replaced."""
    _log_batch(scorer, world.declarations.iloc[:1_000], "full-day", minutes=0)
    state = _refreshed(scorer)
    scorer.policy = scorer.policy.model_copy(update={"red_share": 0.2, "threshold_min_rows": 10 * len(world.declarations)})
    state._refreshed_at = -float("inf")
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
