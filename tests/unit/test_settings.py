"""Settings: the policies' defaults come from the policies, and their environment names stay flat."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

from flows.settings import Settings
from training.gate import GatePolicy
from training.models import FitConfig
from training.monitoring import MonitorThresholds


def test_defaults_are_the_policies_own(monkeypatch):
    for name in ("ADUANA_TRAIN_ABLATION", "ADUANA_TRAIN_REFERENCE_ITERATIONS", "ADUANA_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert (settings.gate, settings.train, settings.monitor) == (GatePolicy(), FitConfig(), MonitorThresholds())


def test_environment_and_file_set_nested_fields_by_flat_names(monkeypatch, tmp_path):
    config = tmp_path / "aduana.yaml"
    config.write_text("gate_margin: 0.02\nmonitor:\n  psi: 0.3\ntrain_iterations: 50\ngate_confidence: 0.8\n")
    monkeypatch.setenv("ADUANA_CONFIG", str(config))
    monkeypatch.setenv("ADUANA_GATE_CONFIDENCE", "0.95")  # the environment wins over the file
    monkeypatch.setenv("ADUANA_MONITOR_WINDOW_DAYS", "14")
    monkeypatch.setenv("ADUANA_API_KEY", "k")
    settings = Settings()
    assert (settings.gate.margin, settings.gate.confidence) == (0.02, 0.95)
    assert (settings.monitor.psi, settings.monitor.window_days, settings.monitor.score_threshold) == (0.3, 14, 0.3)
    assert settings.train.iterations == 50 and settings.api_key == "k"
    assert Settings(home=tmp_path, train_ablation=False).train.ablation is False


def test_a_new_home_is_open_to_its_owner_only(tmp_path):
    """The home holds the warehouse and the model store: created 0700, whatever the umask lets files have."""
    old = os.umask(0o022)
    try:
        root = Settings(home=tmp_path / "a" / "home").make_home()
    finally:
        os.umask(old)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    (tmp_path / "shared").mkdir(mode=0o755)
    assert stat.S_IMODE(Settings(home=tmp_path / "shared").make_home().stat().st_mode) == 0o755  # an existing one keeps its mode


def test_the_cli_creates_its_home_0700_and_prints_its_version(tmp_path):
    home = tmp_path / "home"
    done = subprocess.run([sys.executable, "-m", "flows.cli", "--home", str(home), "server", "status", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    version = subprocess.run([sys.executable, "-m", "flows.cli", "--version"], capture_output=True, text=True,
                             timeout=60)
    declared = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]["version"]
    assert version.stdout.strip() == declared
