"""A model source without a registry: given models by version, one of them the champion (tests and benchmarks)."""
from __future__ import annotations

from dataclasses import dataclass

from training.models import RiskModel


@dataclass
class FixedSource:
    """serving.scorer.ModelSource over a fixed set of models. champion None: no champion yet; broken: the source
    answers as an unreachable registry would, so the scorer keeps serving its last good champion."""

    models: dict[str, RiskModel]
    champion: str | None
    broken: bool = False

    def champion_version(self) -> str | None:
        if self.broken:
            raise ConnectionError("registry unreachable")
        return self.champion

    def load(self, version: str) -> RiskModel:
        return self.models[version]
