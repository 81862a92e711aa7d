"""The scoring app on a fixed model file, as a uvicorn app factory, for tests and benchmarks: they run it in real
server processes (`python -m serving.api.workers serving.api.fixed:app PORT N`) as `aduana serve --workers N`
runs flows/orchestration/api_workers.py's app on the registry's champion.

ADUANA_FIXED_API (JSON) gives the pickled model's path, the warehouse's path, and the operational log's PostgreSQL
URL (none: the journal beside the warehouse); optionally `pinned`, a decision batch (Parquet) whose cut-offs the
real-time lanes use."""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pandas as pd
from fastapi import FastAPI

from features.warehouse import Warehouse, open_log
from serving.api import create_app
from serving.lanes import LanePolicy
from serving.model_source import FixedSource
from serving.scorer import Scorer
from serving.selection import Thresholds

SETTING = "ADUANA_FIXED_API"


def app() -> FastAPI:
    given = json.loads(os.environ[SETTING])
    model = pickle.loads(Path(given["model"]).read_bytes())
    warehouse = Warehouse(Path(given["warehouse"]))
    scorer = Scorer(warehouse, LanePolicy(), source=FixedSource({"3": model}, "3"), reload_seconds=3600)
    scorer.refresh_model(force=True)
    oplog = open_log(given.get("ops_url"), warehouse.path)
    app_ = create_app(scorer, api_key="", oplog=oplog)
    app_.state.service.refresh()
    if given.get("pinned"):
        batch = pd.read_parquet(given["pinned"])
        app_.state.service.pin(Thresholds.from_decisions(batch, "risk_score", scorer.policy.seed))
    return app_
