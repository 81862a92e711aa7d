"""Great Expectations suites, kept as JSON beside this file."""
from pathlib import Path

SUITES_DIR = Path(__file__).parent / "suites"
