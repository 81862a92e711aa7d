"""A rare label as the target: an administration trains on its serious-fraud flag through a mapping that reads the
export's three-valued critical column as fraud. Training, the gate and the reports behave: every window holds
frauds, PR-AUC decides, the report says where precision@n% is capped, and a champion is promoted."""
from __future__ import annotations

import pytest
import yaml

from features.simulator import simulate_islas, write_islas
from flows.ingest import customs_ingest
from flows.render import metrics_text
from flows.retrain import customs_retrain

pytestmark = pytest.mark.integration


def rare_mapping(mapping, out):
    spec = yaml.safe_load(mapping.read_text())
    spec["labels"] = {"fraud": spec["labels"]["critical"]}  # the serious-fraud flag is the target
    spec["values"]["fraud"] = spec["values"].pop("critical")
    out.write_text(yaml.safe_dump(spec, sort_keys=False))
    return out


def test_the_rare_label_trains_and_promotes_on_islas(prefect_api, home, monkeypatch, tmp_path):
    world = simulate_islas(6_000, seed=11)
    paths = write_islas(world, tmp_path / "islas")
    mapping = rare_mapping(paths["mapping"], tmp_path / "rare.yaml")
    monkeypatch.setenv("ADUANA_TRAIN_ITERATIONS", "80")
    [summary] = customs_ingest([str(paths["train"])], mapping=str(mapping))
    assert summary["stored"] + summary["quarantined"] + summary["duplicates"] == summary["read"]

    trained = customs_retrain(dataset="islas-critical")
    assert trained["promoted"], trained["reasons"]
    metrics, reference = trained["metrics"], trained["reference_metrics"]
    share = metrics["positive_share"]
    assert 0 < share < 0.10  # the serious-fraud flag, not the fraud flag: rarer than the top 10 %
    assert metrics["pr_auc"] is not None and reference["pr_auc"] is not None
    text = metrics_text(trained)
    assert "can reach at most" in text and f"{share / 0.10:.3f} at 10%" in text  # the cap the share sets
    assert "PR-AUC is the measure to compare" in text
