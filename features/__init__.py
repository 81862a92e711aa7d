"""The data side of Aduana: the contract, intake (read → map → check), the warehouse, the embedded simulator,
the feature catalogue and feature building.

Plain pandas/DuckDB: nothing here imports Prefect or MLflow, or reads settings.
"""
