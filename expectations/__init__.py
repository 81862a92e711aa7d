"""The Great Expectations project: suites as JSON beside this file, the checkpoint that runs them
(checkpoint.py) and each dataset's reference profile that their relative checks are judged against (reference.py)."""
from pathlib import Path

SUITES_DIR = Path(__file__).parent / "suites"
