"""Every answered decision is in the log, in real server processes: `kill -9` at random moments loses none, and
four uvicorn workers under concurrent load write one log with every answer once (the journal, and PostgreSQL).

The API runs as `python -m serving.api.workers serving.api.fixed:app PORT N` (serving/api/fixed.py: the scoring app
on the session's fixed model, served by N worker processes as `aduana serve --workers N` serves the registry's
champion), in its own process group, killed however the test ends."""
from __future__ import annotations

import contextlib
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from features.warehouse import open_log
from tests.conftest import free_port
from tests.integration.test_api import _declaration, api_scorer  # noqa: F401 - a module-scoped fixture

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CLIENTS = 4


@contextlib.contextmanager
def serving(api_scorer, trained, tmp_path: Path, workers: int = 1,  # noqa: F811
            ops_url: str | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """The API in its own process group, ready (/readyz 200); killed (the whole group) however the block ends."""
    model = tmp_path / "model.pickle"
    if not model.exists():
        model.write_bytes(pickle.dumps(trained.model))
    port = free_port()
    env = {**os.environ, "ADUANA_FIXED_API": json.dumps(
        {"model": str(model), "warehouse": str(api_scorer.warehouse.path), "ops_url": ops_url})}
    log = (tmp_path / f"api-{port}.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "serving.api.workers", "serving.api.fixed:app", str(port),
                             str(workers)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            assert proc.poll() is None, (tmp_path / f"api-{port}.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the API did not get ready"
            time.sleep(0.2)
        yield url, proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()


def _load(url: str, tag: str, world, answered: list, stop: threading.Event, limit: int | None = None) -> None:
    """One client: requests one after another, each with its own X-Request-ID, until stopped or refused; the ids
    (and items) of the 200 answers are appended to `answered`."""
    with httpx.Client(base_url=url, timeout=30) as client:
        i = 0
        while not stop.is_set() and (limit is None or i < limit):
            request_id = f"{tag}-{i}"
            body = [_declaration(world, -1 - (i % 50)), _declaration(world, -60 - (i % 50))] if i % 3 == 0 else \
                _declaration(world, -1 - (i % 50))
            try:
                answer = client.post("/v1/score", json=body, headers={"X-Request-ID": request_id})
            except httpx.HTTPError:
                return  # the server is gone
            if answer.status_code == 200:
                answered.append((request_id, len(body) if isinstance(body, list) else 1))
            i += 1


def _logged(api_scorer, prefix: str):  # noqa: F811
    with api_scorer.warehouse.process_lock():
        return api_scorer.warehouse.read("SELECT request_id, batch_id, position FROM decisions "
                                         "WHERE starts_with(request_id, ?)", [prefix])


def test_kill_9_at_random_moments_loses_no_answered_decision(api_scorer, trained, world, tmp_path):  # noqa: F811
    rng = random.Random(20261204)
    prefix = f"kill-{uuid.uuid4().hex[:6]}"
    answered: list = []
    per_round = []
    for round_ in range(3):
        with serving(api_scorer, trained, tmp_path) as (url, proc):
            stop = threading.Event()
            clients = [threading.Thread(target=_load, args=(url, f"{prefix}-{round_}-{c}", world, answered, stop))
                       for c in range(CLIENTS)]
            before = len(answered)
            for client in clients:
                client.start()
            deadline = time.monotonic() + 60  # the round's first answer (a loaded machine is slow to give it), then
            while len(answered) == before and time.monotonic() < deadline:  # a random moment of the load after it
                time.sleep(0.01)
            time.sleep(rng.uniform(0.5, 2.0))
            os.killpg(proc.pid, signal.SIGKILL)  # mid-load: requests in flight, commits under way
            proc.wait()
            stop.set()
            for client in clients:
                client.join()
            per_round.append(len(answered) - before)
    assert all(n > 0 for n in per_round), per_round  # every round answered before it was killed
    journal = open_log(None, api_scorer.warehouse.path)
    with api_scorer.warehouse.process_lock():
        api_scorer.warehouse.decisions.sync(journal)  # what the next start (or any sync) copies
    logged = _logged(api_scorer, prefix)
    given = {request_id for request_id, _ in answered}
    assert given <= set(logged["request_id"]), f"lost: {sorted(given - set(logged['request_id']))[:5]}"
    items = logged.groupby("request_id").size()
    assert all(items[request_id] == n for request_id, n in answered)  # every item of every answer
    assert not logged.duplicated(["batch_id", "position"]).any()
    # Logged but never given: at most the requests that were being committed when the process died.
    assert len(set(logged["request_id"]) - given) <= CLIENTS * len(per_round)
    assert not list(Path(journal.where).glob("*.jsonl"))  # the dead writers' segments, copied, are gone


@pytest.mark.parametrize("store", ["journal", "postgres"])
def test_four_workers_under_load_log_every_answer_once(store, request, api_scorer, trained, world,  # noqa: F811
                                                       tmp_path):
    ops_url = request.getfixturevalue("pg_url") if store == "postgres" else None
    prefix = f"workers-{store}-{uuid.uuid4().hex[:6]}"
    answered: list = []
    with serving(api_scorer, trained, tmp_path, workers=4, ops_url=ops_url) as (url, _):
        stop = threading.Event()
        clients = [threading.Thread(target=_load, args=(url, f"{prefix}-{c}", world, answered, stop, 20))
                   for c in range(8)]
        for client in clients:
            client.start()
        for client in clients:
            client.join()
    assert len(answered) == 8 * 20  # none refused
    oplog = open_log(ops_url, api_scorer.warehouse.path)
    with api_scorer.warehouse.process_lock():
        api_scorer.warehouse.decisions.sync(oplog)
    logged = _logged(api_scorer, prefix)
    assert len(logged) == sum(n for _, n in answered)  # answers = log rows
    assert not logged.duplicated(["batch_id", "position"]).any()
    assert set(logged["request_id"]) == {request_id for request_id, _ in answered}
    if store == "postgres":
        import psycopg

        with psycopg.connect(ops_url) as con:
            rows, distinct = con.execute("SELECT count(*), count(DISTINCT (batch_id, position)) FROM decisions "
                                         "WHERE starts_with(request_id, %s)", [prefix]).fetchone()
        assert rows == distinct == len(logged)
