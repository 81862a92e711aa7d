"""The bench's reference API: what a user would try first to serve the champion model, a plain FastAPI route around
CatBoost's own predict_proba, as a uvicorn app factory (`python -m uvicorn benchmarks.plain_api:app --factory`,
from the repository root) reading the pickled model (training/models.py `RiskModel`) from ADUANA_PLAIN_API_MODEL.

POST /v1/score takes the same JSON declaration as the real API and answers `{"risk_score": p}`: the body's values
in the model's column order, categoricals as text (the model's missing key when absent), numbers as floats (NaN
when absent or not a number). No features beyond the body, no lanes, reasons, checks or decision log: the floor
the real API is measured against. GET /readyz answers once the model is loaded."""
from __future__ import annotations

import math
import os
import pickle
from pathlib import Path

from fastapi import FastAPI

from features.entities import MISSING

SETTING = "ADUANA_PLAIN_API_MODEL"


def _number(value: object) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return math.nan


def app() -> FastAPI:
    model = pickle.loads(Path(os.environ[SETTING]).read_bytes())
    classifier, categorical, numeric = model.classifier, model.categorical, model.numeric
    api = FastAPI(title="plain FastAPI + CatBoost")

    @api.get("/readyz")
    def readyz() -> dict:
        return {"ready": True}

    @api.post("/v1/score")
    def score(declaration: dict) -> dict:
        row = [MISSING if declaration.get(c) is None else str(declaration[c]) for c in categorical] + \
              [_number(declaration.get(c)) for c in numeric]
        return {"risk_score": float(classifier.predict_proba([row])[0][1])}

    return api
