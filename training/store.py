"""The model store: a RiskModel as files (CatBoost's own format, a JSON spec, the price bands as Parquet, the
reasons' SHAP tables as NumPy arrays), logged to MLflow as a pyfunc model whose code is logged as code
(training/risk_pyfunc.py), never pickled, with a SHA-256 per file, so that loading refuses files changed in the
store."""
from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from catboost import CatBoostClassifier, CatBoostRegressor
from mlflow.models import infer_signature

from features.prices import PriceBands
from training.leaf_shap import LeafShap
from training.models import RiskModel

MODEL_URI_TAG = "aduana.model_uri"  # on the run: where its logged model is
PIP_REQUIREMENTS = ["catboost==1.2.10", "pandas", "numpy", "pyarrow"]
PYFUNC_CODE = Path(__file__).with_name("risk_pyfunc.py")  # logged as code, never pickled
CHECKSUM_TAG = "aduana.artifact_sha256"  # on the run, then on the registry version: JSON {file name: sha256}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_risk_model(model: RiskModel, directory: Path) -> dict[str, str]:
    """Write the model's parts; returns the pyfunc artifacts mapping."""
    directory.mkdir(parents=True, exist_ok=True)
    artifacts = {"classifier": str(directory / "classifier.cbm"), "spec": str(directory / "spec.json"),
                 "price_bands": str(directory / "price_bands.parquet")}
    model.classifier.save_model(artifacts["classifier"])
    if model.revenue_model is not None:
        artifacts["revenue"] = str(directory / "revenue.cbm")
        model.revenue_model.save_model(artifacts["revenue"])
    tables = model.shap_tables()
    if tables is not None:  # the reasons' SHAP tables, so that a server loading the model need not make them (~1 s)
        artifacts["shap_tables"] = str(directory / "shap_tables.npz")
        np.savez(artifacts["shap_tables"], **tables.arrays())
    spec = {"categorical": model.categorical, "numeric": model.numeric, "revenue_smearing": model.revenue_smearing}
    Path(artifacts["spec"]).write_text(json.dumps(spec, indent=2))
    model.price_bands.table.to_parquet(artifacts["price_bands"], index=False)
    return artifacts


def load_risk_model(artifacts: dict[str, str]) -> RiskModel:
    spec = json.loads(Path(artifacts["spec"]).read_text())
    classifier = CatBoostClassifier()
    classifier.load_model(artifacts["classifier"])
    revenue = None
    if "revenue" in artifacts:
        revenue = CatBoostRegressor()
        revenue.load_model(artifacts["revenue"])
    model = RiskModel(classifier=classifier, categorical=spec["categorical"], numeric=spec["numeric"],
                      revenue_model=revenue, revenue_smearing=spec["revenue_smearing"])
    model.price_bands = PriceBands(pd.read_parquet(artifacts["price_bands"]))
    if "shap_tables" in artifacts:  # plain arrays: nothing unpickled
        with np.load(artifacts["shap_tables"], allow_pickle=False) as tables:
            model.stored_tables = LeafShap.from_arrays(classifier, tables)
    return model


def log_model(model: RiskModel, X: pd.DataFrame) -> None:
    """Log the model to the active run (`X`: rows of its input, for the signature and the input example), and
    tag the run with the model's URI and its files' checksums (registry.register_challenger reads both)."""
    example = X[model.columns].head(5)
    signature = infer_signature(example, model.predict(example))
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = save_risk_model(model, Path(tmp) / "model")
        checksums = {Path(p).name: sha256(p) for p in artifacts.values()}
        info = mlflow.pyfunc.log_model(name="model", python_model=str(PYFUNC_CODE), artifacts=artifacts,
                                       signature=signature, input_example=example, pip_requirements=PIP_REQUIREMENTS)
    mlflow.set_tags({MODEL_URI_TAG: info.model_uri,  # MLflow 3 keeps models apart from run artifacts
                     CHECKSUM_TAG: json.dumps(checksums, sort_keys=True)})
