"""Which declarations carry a label: the one definition of "a controlled row with a known outcome".

Training fits on these rows, the entity profiles and ratings count them as controls, the reference statistics of
label expectations are drawn from them and the backtest replays them.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def labelled(frame: pd.DataFrame) -> np.ndarray:
    """Rows controlled (`inspected == 1`) with a known outcome (`fraud` given), as a boolean array. A file
    without the `inspected` column labels a row by its `fraud` alone."""
    known = frame["fraud"].notna().to_numpy() if "fraud" in frame else np.zeros(len(frame), dtype=bool)
    if "inspected" not in frame:
        return known
    return (frame["inspected"] == 1).fillna(False).to_numpy(dtype=bool) & known
