"""Model fitting, metrics, the promotion gate, monitoring, and MLflow: the model store, the registry, the runs."""
