"""customs-risk as an MLflow pyfunc, logged as code (MLflow's "models from code"): loading it unpickles nothing.

MLflow stores this file with the model and runs it when a consumer calls `mlflow.pyfunc.load_model`. Aduana's own
serving never does: it reads the CatBoost files directly, after checking their registered checksums
(training/registry.py `load_version`).
"""
import mlflow
import pandas as pd


class RiskPyfunc(mlflow.pyfunc.PythonModel):
    """Returns probabilities (and expected revenue), not the class labels CatBoost's own flavour gives."""

    def load_context(self, context) -> None:  # noqa: ANN001 - MLflow's signature
        from training.store import load_risk_model

        self.model = load_risk_model(context.artifacts)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:  # noqa: ANN001
        return self.model.predict(model_input)


mlflow.models.set_model(RiskPyfunc())
