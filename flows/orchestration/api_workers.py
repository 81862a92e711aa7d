"""`aduana serve`: the app each API process builds, alone or as one of uvicorn's N workers.

With `--workers N`, uvicorn starts N fresh processes that import the app factory `app` by name; the command's own
options reach them in the environment (ADUANA_SERVE, JSON), and its settings as every process gets them (ADUANA_HOME
and ADUANA_*). Every worker makes each answer durable in the one operational log before it leaves (a journal segment
of its own beside the others', or the shared PostgreSQL database of ADUANA_OPS_URL: features/warehouse/oplog.py),
and each reloads the champion and the thresholds on the same schedule from the same registry and warehouse.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from fastapi import FastAPI

from flows.orchestration import runtime

OPTIONS = "ADUANA_SERVE"


def build(rt: runtime.Runtime, policy: str | None = None, max_items: int = 100,
          mapping: str | None = None) -> FastAPI:
    """The scoring app on this home's warehouse, champion and operational log, its snapshot read once."""
    from features.intake.mapping import load_mapping
    from serving.api import create_app

    scorer = rt.scorer(policy)
    app_ = create_app(scorer, max_items=max_items, mapping=load_mapping(Path(mapping)) if mapping else None,
                      api_key=rt.settings.api_key, secure_cookie=rt.settings.ui_secure_cookie, oplog=rt.oplog)
    app_.state.service.refresh()
    return app_


def hand_over(settings_home: Path, **options: object) -> None:
    """Put the command's options and home where the worker processes read them."""
    os.environ[OPTIONS] = json.dumps(options)
    os.environ["ADUANA_HOME"] = str(settings_home)


def app() -> FastAPI:
    """The app of one worker process (uvicorn's factory)."""
    return build(runtime.current(), **json.loads(os.environ.get(OPTIONS, "{}")))
