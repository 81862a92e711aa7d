"""Leads: follow up on the controls that found fraud the model did not expect.

When a control finds fraud where the model saw little risk, customs does not wait for the next retraining: it
targets the same trade relationship for a while (a local risk profile raised after a seizure). A model refitted
on thousands of labels barely moves for a handful of new ones, and its cut-off sits far above the hit rate of a
scheme it has only just met; a lead follows the handful at once.

The evidence is every exploration pick (the random stratum's and the targeted sources') whose control reported in
the recent past (`RECENT_DAYS`): its entity keys, its outcome and the risk the model gave it when it was selected.
The model's own picks are left out: what they find, the model's next refit learns. Per lead entity (a seller, an
importer with a heading, a seller from an origin, a broker at an office), the residual is the mean of
(outcome − risk) over its controls, shrunk by one pseudo-control that found what the model expected:
Σ (fraud − risk) / (n + 1). A declaration's lead score sums the positive residuals of its entities; a declaration
none of whose entities has one has no score (NaN), and is never a lead. The residual is what the model misses: a
relationship the model already scores high earns none.

Pure: numpy and pandas, as of the moment the evidence is given (the caller keeps it to the window).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from features.entities import entity_keys

# The narrow entities a lead follows: a trade relationship, not a whole chapter, origin or office.
LEAD_ENTITIES = ("exporter", "importer_heading", "exporter_origin", "declarant_office")


def lead_keys(frame: pd.DataFrame, names: tuple[str, ...] = LEAD_ENTITIES) -> dict[str, np.ndarray]:
    """The keys of each row for the lead entities `names` (`features/entities.py entity_keys`; an entity whose
    columns the frame lacks is left out)."""
    return entity_keys(frame, names)


def residuals(keys: dict[str, np.ndarray], fraud: np.ndarray, risk: np.ndarray) -> dict[str, pd.Series]:
    """Per lead entity, the positive shrunk residual of each key with evidence: Σ (fraud − risk) / (n + 1)."""
    miss = np.asarray(fraud, dtype="float64") - np.asarray(risk, dtype="float64")
    out = {}
    for name, key in keys.items():
        grouped = pd.Series(miss).groupby(key, sort=False).agg(["sum", "size"])
        residual = grouped["sum"] / (grouped["size"] + 1.0)
        out[name] = residual[residual > 0]
    return out


def lead_scores(found: dict[str, pd.Series], keys: dict[str, np.ndarray], n: int) -> np.ndarray:
    """Each row's lead score from `residuals` of the evidence: the sum over its entities; NaN with none."""
    score = np.zeros(n)
    for name, residual in found.items():
        if name in keys and len(residual):
            score += residual.reindex(keys[name]).fillna(0.0).to_numpy()
    return np.where(score > 0, score, np.nan)


def strongest_leads(found: dict[str, pd.Series], keys: dict[str, np.ndarray], n: int) -> np.ndarray:
    """Each row's lead entity of largest residual: the relationship its lead follows, by name ("" with none)."""
    best, name = np.zeros(n), np.full(n, "", dtype=object)
    for entity, residual in found.items():
        if entity in keys and len(residual):
            value = residual.reindex(keys[entity]).fillna(0.0).to_numpy()
            stronger = value > best
            best[stronger], name[stronger] = value[stronger], entity
    return name
