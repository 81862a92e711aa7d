"""The scoring app on a fixed model, as a uvicorn app factory: what the crash and many-worker tests run in real
server processes (`python -m uvicorn tests.fixed_api:app --factory --workers N`), as `aduana serve --workers N`
runs flows/orchestration/api_workers.py's, without a registry.

The test gives, in ADUANA_TEST_API (JSON): the pickled model's path, the warehouse's path and the operational log's
PostgreSQL URL (none: the journal beside the warehouse)."""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

from fastapi import FastAPI

from features.warehouse import Warehouse, open_log
from serving.api import create_app
from serving.lanes import LanePolicy
from serving.model_source import FixedSource
from serving.scorer import Scorer

SETTING = "ADUANA_TEST_API"


def app() -> FastAPI:
    given = json.loads(os.environ[SETTING])
    model = pickle.loads(Path(given["model"]).read_bytes())
    warehouse = Warehouse(Path(given["warehouse"]))
    scorer = Scorer(warehouse, LanePolicy(), source=FixedSource({"3": model}, "3"), reload_seconds=3600)
    scorer.refresh_model(force=True)
    oplog = open_log(given.get("ops_url"), warehouse.path.with_name("decision-journal"))
    app_ = create_app(scorer, api_key="", oplog=oplog)
    app_.state.service.refresh()
    return app_
