"""Long steps tell their progress (features/progress.py `advance`): feature parts, boosting rounds."""
from __future__ import annotations

import numpy as np
import pytest

from features.build import build_features, integrate
from features.labels import labelled
from training.models import FitConfig, fit_risk_model, time_split


class Recorder:
    def __init__(self):
        self.calls: list[tuple[str, int, int]] = []

    def __call__(self, what: str, done: int, total: int, *, unit: str = "", label: str = "") -> None:
        self.calls.append((what, done, total))

    def of(self, what: str) -> list[tuple[int, int]]:
        return [(done, total) for w, done, total in self.calls if w == what]


@pytest.fixture(scope="module")
def features(world):
    frame = integrate(world.declarations.head(6000), world.manifests, world.traders)
    recorder = Recorder()
    fs = build_features(frame, advance=recorder)
    return frame, fs, recorder


def test_feature_building_tells_each_part_and_ends_complete(features):
    frame, _, recorder = features
    [what] = {w for w, _, _ in recorder.calls}
    assert what == f"features for {len(frame):,} declarations"
    steps = recorder.of(what)
    assert [done for done, _ in steps] == sorted(done for done, _ in steps) and len(steps) > 3
    assert steps[0][0] == 0 and steps[-1][0] == steps[-1][1]


def test_boosting_rounds_are_told_as_they_happen_and_do_not_change_the_model(features):
    frame, fs, _ = features
    split = time_split(fs.meta["declaration_date"], labelled(frame))
    config = FitConfig(iterations=40, learning_rate=0.2, depth=3, threads=1, early_stopping_rounds=1000)
    recorder = Recorder()
    told = fit_risk_model(fs, split, config, revenue=True, what="risk model", advance=recorder)
    silent = fit_risk_model(fs, split, config, revenue=True)

    rounds = recorder.of("risk model")
    assert [done for done, _ in rounds[:-1]] == list(range(1, len(rounds)))  # one call per round, in order
    assert all(total == 40 for _, total in rounds) and rounds[-1] == (40, 40)
    assert recorder.of("revenue model")[-1][0] == recorder.of("revenue model")[-1][1]
    X = fs.X.loc[split.holdout]
    np.testing.assert_allclose(told.risk(X), silent.risk(X))  # listening is not steering
