"""Shared fixtures. The environment is set before any test module imports Prefect, GX or MLflow."""
from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile
from dataclasses import replace
from pathlib import Path

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="aduana-tests-"))
atexit.register(shutil.rmtree, _SESSION_DIR, True)  # ignore_errors: the session's servers may still be closing
os.environ.update({
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "GX_ANALYTICS_ENABLED": "False",
    "PREFECT_HOME": str(_SESSION_DIR / "prefect"),  # cached results must not leak between sessions
    "ADUANA_HOME": str(_SESSION_DIR / "home"),
    "ADUANA_PREFECT_SERVER": "ephemeral",  # no test leaves a home's Prefect server behind; tests/integration/test_server.py starts one
    "ADUANA_TRAIN_ABLATION": "false",  # flows skip the feature-group ablation; tests that need it turn it on
    "ADUANA_TRAIN_REFERENCE_ITERATIONS": "80",  # the reference's default 1000 rounds are for real data
})
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("ADUANA_OPS_URL", None)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from features.build import integrate  # noqa: E402
from features.simulator import World, simulate  # noqa: E402
from training.models import FitConfig  # noqa: E402
from training.pipeline import TrainingResult, train_and_evaluate  # noqa: E402

FAST = FitConfig(iterations=80, learning_rate=0.15, depth=4, threads=2, reference_iterations=80, ablation=False)


@pytest.fixture(scope="session")
def world() -> World:
    """A small simulated administration, shared read-only by tests."""
    return simulate(20_000, seed=3)


@pytest.fixture(scope="session")
def trained(world) -> TrainingResult:
    """A model trained (quickly) on the small world, shared read-only."""
    return train_and_evaluate(integrate(world.declarations, world.manifests, world.traders),
                              replace(FAST, ablation=True))  # the model tests check the feature-group choice


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ADUANA_HOME per test."""
    path = tmp_path / "home"
    monkeypatch.setenv("ADUANA_HOME", str(path))
    return path


@pytest.fixture
def declarations_csv(tmp_path: Path, world: World) -> Path:
    """500 canonical declarations as CSV."""
    path = tmp_path / "declarations.csv"
    world.declarations.head(500).to_csv(path, index=False, date_format="%Y-%m-%d")
    return path


@pytest.fixture
def loaded_home(home, world, tmp_path):
    """A fresh ADUANA_HOME whose warehouse holds the small world."""
    from features.intake.prepared import prepare_batch
    from features.warehouse import Warehouse
    from flows.settings import Settings

    warehouse = Warehouse(Settings().warehouse_path)
    for kind in ("traders", "manifests", "declarations"):
        warehouse.store(prepare_batch(write_csv(tmp_path / f"{kind}.csv", getattr(world, kind))))
    return home


@pytest.fixture
def stored_scorer(home, world, trained, tmp_path):
    """A scorer on a fresh home whose warehouse holds the small world's traders, manifests and first 17,000
    declarations, with the session's model as its champion (v7), reloading at every call."""
    from features.intake.prepared import prepare_batch
    from features.warehouse import Warehouse
    from flows.settings import Settings
    from serving.lanes import LanePolicy
    from serving.model_source import FixedSource
    from serving.scorer import Scorer

    warehouse = Warehouse(Settings().warehouse_path)
    for kind in ("traders", "manifests"):
        warehouse.store(prepare_batch(write_csv(tmp_path / f"{kind}.csv", getattr(world, kind))))
    warehouse.store(prepare_batch(write_csv(tmp_path / "declarations.csv", world.declarations.head(17_000))))
    scorer = Scorer(warehouse, LanePolicy(red_share=0.05, exploration_share=0.2, yellow_share=0.1),
                    source=FixedSource({"7": trained.model}, "7"), reload_seconds=0)
    scorer.refresh_model(force=True)
    return scorer


@pytest.fixture(scope="session")
def prefect_api():
    """A real (temporary) Prefect API for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        from prefect.settings import PREFECT_API_URL

        yield PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def pg_cluster():
    """A PostgreSQL cluster from Debian's packages for the session (one per test process), removed however the
    session ends. Skipped where PostgreSQL is not installed; .ci/run installs it."""
    from flows.orchestration import postgres

    if not postgres.available():
        pytest.skip("PostgreSQL is not installed here (apt-get install -y postgresql)")
    cluster = postgres.Cluster(_SESSION_DIR / "postgres", postgres.free_port(), password="t3st p@ss/w:rd")
    try:
        yield cluster.start()
    finally:
        cluster.remove()


@pytest.fixture
def pg_url(pg_cluster) -> str:
    """A fresh database of the session's cluster, dropped after the test: its psycopg URL."""
    import uuid

    name = f"test_{uuid.uuid4().hex[:12]}"
    url = pg_cluster.create_database(name)
    yield url
    pg_cluster.drop_database(name)


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False, date_format="%Y-%m-%d")
    return path


def foreign(n: int, seed: int, modes: tuple[str, ...] = ("1", "2", "3", "4")) -> pd.DataFrame:
    """A third-party export unlike the simulator: numeric transport codes, bulk cargo around 10,000 t a goods
    item, values in another currency, and every declaration inspected."""
    rng = np.random.default_rng(seed)
    weights = np.array([0.55, 0.25, 0.15, 0.05][: len(modes)])
    return pd.DataFrame({
        "declaration_id": [f"F{seed}-{i:05d}" for i in range(n)],
        "declaration_date": pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D"),
        "importer_id": [f"IMP{k:03d}" for k in rng.integers(0, 40, n)],
        "hs_code": rng.choice(["270900", "100199", "260111", "310230"], n),
        "origin_country": rng.choice(["BR", "AU", "NO", "ZZ"], n),
        "declared_value": rng.lognormal(np.log(2e6), 1.0, n),
        "office_id": rng.choice(["A01", "A02", "B05"], n),
        "transport_mode": rng.choice(list(modes), n, p=weights / weights.sum()),
        "net_mass_kg": rng.lognormal(np.log(1e7), 0.5, n),
        "inspected": 1,
        "fraud": (rng.random(n) < 0.3).astype(int),
    })


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a server a test starts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
