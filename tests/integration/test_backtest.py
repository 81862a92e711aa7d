"""customs-backtest on a user's labelled export against a real temporary Prefect API and sqlite MLflow store."""
from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from flows.backtest import customs_backtest
from flows.settings import Settings
from tests.conftest import write_csv

pytestmark = pytest.mark.integration


def test_backtest_of_a_mapped_file_logs_one_mlflow_run(prefect_api, home, world, tmp_path):
    """A DATE-like export (its own column names, a fraud label and no revenue), 20 weeks of it."""
    d = world.declarations[world.declarations["declaration_date"] < pd.Timestamp("2023-05-21")]
    export = pd.DataFrame({
        "Declaration ID": d["declaration_id"], "Date": d["declaration_date"].dt.strftime("%Y-%m-%d"),
        "Importer ID": d["importer_id"], "HS6 Code": d["hs_code"], "Country of Origin": d["origin_country"],
        "Item Price": d["declared_value"], "Net Mass": d["net_mass_kg"], "Office ID": d["office_id"],
        "Fraud": d["fraud"],
    })
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "columns: {declaration_id: Declaration ID, declaration_date: Date, importer_id: Importer ID,\n"
        "  hs_code: HS6 Code, origin_country: Country of Origin, declared_value: Item Price, net_mass_kg: Net Mass}\n"
        "labels: {fraud: Fraud}\nextra_categorical: [Office ID]\nhs_code_digits: 6\n")
    summary = customs_backtest(path=str(write_csv(tmp_path / "export.csv", export)), mapping=str(mapping),
                               capacity=0.2, warmup_weeks=8, retrain_every=4, iterations=30, seed=3)

    labelled = int(d["fraud"].notna().sum())
    assert summary["universe_rows"] == labelled and summary["unlabelled_rows_left_out"] == len(d) - labelled
    assert summary["weeks"] == 12 and summary["drift_date"] is None
    assert set(summary["policies"]) == {"model", "hybrid", "targeted", "random", "rules"}
    model = summary["policies"]["model"]
    assert model["refits"] == 3 and model["revenue_share"] is None and model["post_drift"] is None
    json.dumps(summary)  # JSON-able, for --json

    client = MlflowClient(tracking_uri=f"sqlite:///{Settings().mlflow_db}")
    run = client.get_run(summary["mlflow_run_id"])
    assert client.get_experiment(run.info.experiment_id).name == "aduana-backtest"
    assert run.data.tags["prefect.flow_run_id"]
    assert run.data.params["capacity"] == "0.2" and run.data.params["retrain_every"] == "4"
    assert run.data.metrics["model_precision"] == pytest.approx(model["precision"], abs=1e-4)
    history = client.get_metric_history(run.info.run_id, "hybrid_week_cum_recall")
    assert sorted(m.step for m in history) == list(range(1, 13))
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert artifacts == {"plots/precision_recall_by_week.png", "plots/cumulative_revenue_share.png"}
    mlflow.set_tracking_uri(f"sqlite:///{Settings().mlflow_db}")
    weekly = pd.read_csv(mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/backtest/weekly.csv"))
    assert len(weekly) == 5 * 12 and (weekly["selected"] > 0).all()


def test_a_plain_backtest_replays_the_warehouses_labels_under_the_homes_lane_policy(prefect_api, home, world,
                                                                                   tmp_path, monkeypatch):
    """Without a file or --rows, the backtest replays what the warehouse holds; capacity, exploration and hard
    rules are the lane policy's, as batch and real-time scoring apply them."""
    from features.intake.prepared import prepare_batch
    from features.labels import labelled
    from features.warehouse import Warehouse

    d = world.declarations[world.declarations["declaration_date"] < pd.Timestamp("2023-05-21")]
    Warehouse(Settings().warehouse_path).store(prepare_batch(write_csv(tmp_path / "declarations.csv", d)))
    lanes = tmp_path / "lanes.yaml"
    lanes.write_text("red_share: 0.2\nexploration_share: 0.3\nrules: {watchlist_importers: [IMP100001]}\n")
    monkeypatch.setenv("ADUANA_LANE_POLICY", str(lanes))
    summary = customs_backtest(warmup_weeks=8, retrain_every=50, iterations=10, seed=3, policies=["hybrid", "rules"])

    assert summary["source"] == "warehouse" and summary["universe_rows"] == int(labelled(d).sum())
    assert (summary["capacity"], summary["exploration"]) == (0.2, 0.3)
    run = MlflowClient(tracking_uri=f"sqlite:///{Settings().mlflow_db}").get_run(summary["mlflow_run_id"])
    assert json.loads(run.data.params["rules"])["watchlist_importers"] == ["IMP100001"]
    assert customs_backtest(warmup_weeks=8, retrain_every=50, iterations=10, seed=3, policies=["random"],
                            capacity=0.1)["capacity"] == 0.1  # a given capacity overrides the policy's
