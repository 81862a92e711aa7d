"""Scoring: the scorer, lane selection, reasons, batch and real-time serving, the backtest and audit selection."""
