"""Prefect flows and the `aduana` CLI. Flows are thin: they sequence tasks over the pure functions below them."""
