"""Scoring, lanes, the API and audit selection (built in the scoring issue)."""
