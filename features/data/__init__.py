"""Data in: the canonical contract, column mapping, quality checks, the warehouse and the simulator."""
