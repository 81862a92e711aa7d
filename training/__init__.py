"""Model fitting, metrics, evaluation and the MLflow registry (built in the models issue)."""
