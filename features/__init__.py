"""The data side of Aduana: the data contract, the embedded simulator and feature building.

Plain pandas/DuckDB: nothing here imports Prefect or MLflow.
"""
