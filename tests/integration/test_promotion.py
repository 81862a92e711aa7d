"""Resilience of the loop: failed retrains, overlapping promotions, and a registry that goes away."""
from __future__ import annotations

import threading

import pytest
from mlflow.tracking import MlflowClient

from flows.orchestration.runtime import Runtime
from flows.retrain import customs_retrain
from flows.settings import Settings
from training import promotion, runs
from training import registry as reg
from training.gate import GatePolicy

pytestmark = pytest.mark.integration


def _runs(client: MlflowClient, trained) -> dict[str, str]:  # noqa: ANN001
    """The training's two runs, logged as the retrain flow logs them."""
    with runs.TrainingRuns(client, "resilience", Settings().mlflow_artifacts) as training_runs:
        return training_runs.log(trained)


@pytest.fixture
def registry(home, trained) -> MlflowClient:
    client = Runtime(Settings()).client
    return client


def test_overlapping_retrains_cannot_both_promote(registry, trained, home):
    """Two challengers gated at once: the lock makes the second face the first's champion, and lose to it."""
    challengers = [_runs(registry, trained) for _ in range(2)]
    lock = home / "locks" / "promotion.lock"
    decisions = {}

    def gate(runs: dict[str, str]) -> None:
        version, decision = promotion.gate_challenger(registry, trained, runs, [], GatePolicy(margin=0.01), lock=lock)
        decisions[version] = decision

    threads = [threading.Thread(target=gate, args=(c,)) for c in challengers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    promoted = [v for v, d in decisions.items() if d.promote]
    assert len(promoted) == 1, {v: d.reasons for v, d in decisions.items()}
    assert reg.alias_version(registry, reg.CHAMPION) == promoted[0]
    loser = next(v for v in decisions if v not in promoted)
    assert any(f"champion v{promoted[0]}" in r for r in decisions[loser].reasons)


def test_a_champion_that_moves_during_evaluation_blocks_the_promotion(registry, trained, monkeypatch):
    """Another machine promotes while this gate is measuring: the alias is not overwritten."""
    first, decision = promotion.gate_challenger(registry, trained, _runs(registry, trained), [], GatePolicy(margin=-1))
    assert decision.promote
    other = reg.register_challenger(registry, _runs(registry, trained)["model"])
    real_load = reg.load_version

    def load_while_someone_promotes(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        registry.set_registered_model_alias(reg.MODEL_NAME, reg.CHAMPION, other)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(reg, "load_version", load_while_someone_promotes)
    version, decision = promotion.gate_challenger(registry, trained, _runs(registry, trained), [], GatePolicy(margin=-1))
    assert not decision.promote
    assert any(f"moved from v{first} to v{other}" in r for r in decision.reasons)
    assert reg.alias_version(registry, reg.CHAMPION) == other
    assert registry.get_model_version(reg.MODEL_NAME, version).tags["gate"] == "refused"


def test_a_retrain_that_fails_mid_way_leaves_the_champion(prefect_api, loaded_home, monkeypatch):
    monkeypatch.setenv("ADUANA_TRAIN_ITERATIONS", "40")
    monkeypatch.setenv("ADUANA_GATE_MARGIN", "-1")
    assert customs_retrain(dataset="test")["promoted"]
    client = Runtime(Settings()).client

    def crash(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("worker lost mid-evaluation")

    monkeypatch.setattr(reg, "load_version", crash)  # the gate crashes after v2 was logged and registered
    state = customs_retrain(dataset="test", return_state=True)
    assert state.is_failed()
    assert reg.alias_version(client, reg.CHAMPION) == "1"
    assert reg.alias_version(client, reg.CHALLENGER) == "2"
    assert "gate" not in client.get_model_version(reg.MODEL_NAME, "2").tags



def test_the_registry_holds_no_pickle_and_a_changed_model_file_is_refused(registry, trained, home):
    """Loading a version runs no code from the store, and its files (CatBoost's, the SHAP tables') must match their
    registered checksums."""
    version, _ = promotion.gate_challenger(registry, trained, _runs(registry, trained), [], GatePolicy())
    stored = [p for p in home.rglob("*") if p.is_file() and "mlartifacts" in p.parts]
    assert not [p for p in stored if p.suffix in (".pkl", ".pickle")]
    loaded = reg.load_version(version)
    assert loaded.columns in (trained.model.columns, trained.reference.columns)
    assert loaded.stored_tables is not None  # the reasons' SHAP tables come with it: a server need not make them
    classifier = next(p for p in stored if p.name == "classifier.cbm"
                      and registry.get_model_version(reg.MODEL_NAME, version).source.split("/")[-1] in str(p))
    classifier.write_bytes(classifier.read_bytes() + b"tampered")
    with pytest.raises(ValueError, match="do not match the checksums"):
        reg.load_version(version)
