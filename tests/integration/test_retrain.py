"""customs-retrain and customs-evaluate (flows/retrain.py) against a real temporary Prefect API and a real sqlite
MLflow store.

A rare label as the target: an administration trains on its serious-fraud flag through a mapping that reads the
export's three-valued critical column as fraud. Training, the gate and the reports behave: every window holds
frauds, PR-AUC decides, the report says where precision@n% is capped, and a champion is promoted."""
from __future__ import annotations

import mlflow
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from features.catalogue import ENGINEERED_GROUPS
from features.intake.prepared import prepare_batch
from features.simulator import simulate_islas, write_islas
from features.warehouse import Warehouse
from flows import bars
from flows.ingest import customs_ingest
from flows.render import metrics_text
from flows.retrain import customs_evaluate, customs_retrain
from flows.settings import Settings
from serving.lanes import LanePolicy
from serving.scorer import Scorer
from serving.targeting import Targeting
from tests.conftest import write_csv
from training import registry, store
from training.anomaly import load_anomaly
from training.registry import RegistryModels

pytestmark = pytest.mark.integration


def test_retrain_tracks_registers_gates_and_rolls_back(prefect_api, loaded_home, world, tmp_path, monkeypatch):
    monkeypatch.setenv("ADUANA_TRAIN_ITERATIONS", "60")
    monkeypatch.setenv("ADUANA_TRAIN_ABLATION", "true")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # as on a terminal: the CLI's bars are drawn
    monkeypatch.setenv("TTY_INTERACTIVE", "1")
    drawn = set()
    draw = bars._draw
    monkeypatch.setattr(bars, "_draw", lambda shown, what, *rest: (drawn.add(what), draw(shown, what, *rest)))
    with bars.showing():
        first = customs_retrain(dataset="test")
    assert {"risk model: engineered", "risk model: mapped columns", "risk model: engineered, refit",
            "reference (library-default CatBoost)", "feature groups: all"} <= drawn
    assert any(what.startswith("features for ") for what in drawn)
    assert first["version"] == "1" and first["promoted"]  # a first training always leaves something to serve
    assert first["reference_metrics"]["precision_at_5pct"] is not None
    assert {g["group"] for g in first["feature_groups"]} == set(ENGINEERED_GROUPS)
    assert all(g["delta"] is not None for g in first["feature_groups"])  # each group was measured

    client = MlflowClient(tracking_uri=f"sqlite:///{Settings().mlflow_db}")
    run = client.get_run(first["model_run_id"])
    assert run.data.tags["prefect.flow_run_id"]
    assert client.get_run(first["run_id"]).data.tags["aduana.gate"] == "promoted"
    assert run.data.params["data_hash"] == run.data.tags["aduana.data_hash"]
    assert "rows" in run.data.params and "rows_rows" not in run.data.params
    # the history's declarations, of which only the controlled ones and the drift reference were featured
    assert int(run.data.params["rows_featured"]) < int(run.data.params["rows"]) == first["counts"]["rows"]
    assert run.data.metrics["fit_seconds_per_100k_labelled"] == first["fit_seconds_per_100k_labelled"] > 0
    assert not {"thread_count", "verbose", "allow_writing_files"} & set(run.data.params)  # plumbing, not params
    if run.data.params["revenue_model"] == "True":  # its categorical statistics, as chosen on the validation window
        assert run.data.params["revenue_max_ctr_complexity"] in {"1", "default"}
    assert "engineered risk model" in run.data.tags["mlflow.note.content"]  # the run's description in the UI
    assert "reference" in client.get_run(first["reference_run_id"]).data.tags["mlflow.note.content"]
    assert "trained on dataset `test`" in client.get_model_version("customs-risk", "1").description
    # the unsupervised assessment model: logged in the training run, registered and loadable as @champion
    assert first["anomaly_model_version"] == "1" and run.data.metrics["anomaly_rows_fitted"] > 0
    anomaly = load_anomaly(client=client)
    scores = anomaly.score(pd.DataFrame({c: [float("nan"), 0.0] for c in anomaly.used}))
    assert anomaly.used and ((scores >= 0) & (scores <= 1)).all()
    targeted = Scorer(Warehouse(Settings().warehouse_path), LanePolicy(targeting=Targeting()), RegistryModels(client))
    targeted.refresh_model(force=True)  # a scorer that targets exploration reads it with the champion
    assert targeted.anomaly is not None and targeted.anomaly.used == anomaly.used
    assert "precision_at_5pct" in run.data.metrics and "reference_pr_auc" in run.data.metrics
    plots = {f"plots/{p}.png" for p in ("precision_revenue_at_k", "pr_curve", "feature_importance", "calibration")}
    for run_id in (first["model_run_id"], first["reference_run_id"]):  # both runs hold a servable model and plots
        assert {a.path for a in client.list_artifacts(run_id, "plots")} == plots
        assert client.get_run(run_id).data.tags[store.MODEL_URI_TAG]
    for run_id in (first["model_run_id"], first["reference_run_id"]):  # the time split's three parts as inputs
        inputs = client.get_run(run_id).inputs.dataset_inputs
        assert sorted(t.value for i in inputs for t in i.tags if t.key == "mlflow.data.context") == \
            ["holdout", "training", "validation"]
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "aduana-test"
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on its runs
    assert experiment.artifact_location.startswith(loaded_home.resolve().as_uri())
    references = client.search_runs([run.info.experiment_id], "tags.`aduana.role` = 'reference'")
    assert len(references) == 1

    mlflow.set_tracking_uri(f"sqlite:///{Settings().mlflow_db}")
    champion = mlflow.pyfunc.load_model("models:/customs-risk@champion")
    X = pd.DataFrame(champion.input_example)
    scores = champion.predict(X)
    assert list(scores.columns) == ["risk_score", "expected_revenue"]
    assert scores["risk_score"].between(0, 1).all()

    second = customs_retrain(dataset="test")  # the same data again: no better than the champion, so refused
    assert second["version"] == "2" and not second["promoted"]
    assert any("does not beat" in r and "champion v1" in r and "interval" in r for r in second["reasons"])
    assert registry.alias_version(client, "champion") == "1"
    assert registry.alias_version(client, "challenger") == "2"
    assert client.get_model_version("customs-risk", "2").tags["gate"] == "refused"

    monkeypatch.setenv("ADUANA_GATE_MARGIN", "-1")
    monkeypatch.setenv("ADUANA_TRAIN_ABLATION", "false")  # the gate's margin is what this retrain checks
    third = customs_retrain(dataset="test")
    assert third["promoted"] and registry.alias_version(client, "champion") == "3"

    assert registry.rollback(client, Settings().promotions_log, "tester") == ("3", "1")
    assert registry.alias_version(client, "champion") == "1"
    with pytest.raises(ValueError, match="no previous champion"):
        registry.rollback(client)

    # By hand, with a reason: the refused v2 serves, and the log says who, when and why.
    assert registry.promote_by_hand(client, "2", "reviewed offline on Q3 outcomes", "analyst",
                                    Settings().promotions_log) == "1"
    assert registry.alias_version(client, "champion") == "2"
    tags = client.get_model_version("customs-risk", "2").tags
    assert tags["promoted_by"] == "analyst" and tags["promotion_reason"] == "reviewed offline on Q3 outcomes"
    log = registry.read_promotions(Settings().promotions_log)
    assert [(e["action"], e["version"], e["by"]) for e in log] == [
        ("promote", "1", "gate"), ("promote", "3", "gate"), ("rollback", "1", "tester"), ("promote", "2", "analyst")]
    assert all(e["at"] for e in log)
    with pytest.raises(ValueError, match="no version 9"):
        registry.promote_by_hand(client, "9", "typo", "analyst", Settings().promotions_log)
    with pytest.raises(ValueError, match="needs --reason"):
        registry.promote_by_hand(client, "1", " ", "analyst", Settings().promotions_log)


def test_validation_warnings_are_reported_and_block_only_when_the_policy_says(prefect_api, loaded_home, world,
                                                                             tmp_path, monkeypatch):
    monkeypatch.setenv("ADUANA_TRAIN_ITERATIONS", "40")
    late = world.declarations.tail(10).assign(declaration_id=lambda d: d["declaration_id"] + "-late")
    Warehouse(Settings().warehouse_path).store(prepare_batch(write_csv(tmp_path / "declarations_late.csv", late)),
                                                   expectations_passed=False, expectation_failures=["warning: x"])
    monkeypatch.setenv("ADUANA_GATE_BLOCK_ON_WARNINGS", "true")
    blocked = customs_retrain(dataset="test")
    assert not blocked["promoted"] and len(blocked["validation_warnings"]) == 1
    assert any("blocks promotion on warnings" in r for r in blocked["reasons"])
    monkeypatch.setenv("ADUANA_GATE_BLOCK_ON_WARNINGS", "false")
    reported = customs_retrain(dataset="test")
    assert reported["promoted"]
    assert any("1 unacknowledged validation warning" in r for r in reported["reasons"])


def test_evaluate_on_a_foreign_dataset_without_revenue(prefect_api, home, world, tmp_path):
    """A DATE-like export: its own column names, only a fraud label, an extra categorical column."""
    d = world.declarations
    foreign = pd.DataFrame({
        "Declaration ID": d["declaration_id"], "Date": d["declaration_date"].dt.strftime("%Y-%m-%d"),
        "Importer ID": d["importer_id"], "HS6 Code": d["hs_code"].astype(int), "Country of Origin": d["origin_country"],
        "Item Price": d["declared_value"], "Net Mass": d["net_mass_kg"], "Office ID": d["office_id"],
        "Fraud": d["fraud"],
    })
    cut = int(len(foreign) * 0.75)
    train, test = write_csv(tmp_path / "train.csv", foreign[:cut]), write_csv(tmp_path / "test.csv", foreign[cut:])
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "columns: {declaration_id: Declaration ID, declaration_date: Date, importer_id: Importer ID,\n"
        "  hs_code: HS6 Code, origin_country: Country of Origin, declared_value: Item Price, net_mass_kg: Net Mass}\n"
        "labels: {fraud: Fraud}\nextra_categorical: [Office ID]\nhs_code_digits: 6\n")
    result = customs_evaluate(str(train), str(test), str(mapping), iterations=60)
    metrics = result["metrics"]
    assert metrics["revenue_at_5pct"] is None and metrics["precision_at_5pct"] is not None
    assert result["counts"]["holdout"] == int(d["fraud"][cut:].notna().sum())
    uri = f"sqlite:///{Settings().mlflow_db}"
    run = MlflowClient(tracking_uri=uri).get_run(result["run_id"])
    assert run.data.tags.get("aduana.metrics_absent", "").startswith("revenue_at")
    mlflow.set_tracking_uri(uri)
    assert "xcat_office_id" in mlflow.artifacts.load_dict(f"runs:/{result['run_id']}/features.json")["categorical"]


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
