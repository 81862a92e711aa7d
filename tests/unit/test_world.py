"""The embedded default: deterministic, realistic enough, and honest about what it reveals."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.contract import field_types
from features.intake.mapping import ColumnMapping
from features.intake.validation import check_rows
from features.simulator import simulate, write_world
from features.simulator.trade_data import GOODS

DUTY = {g.hs_code: g.duty for g in GOODS}
AD = {g.hs_code: g.anti_dumping for g in GOODS}


def test_same_seed_gives_the_same_world():
    a, b = simulate(3000, seed=11), simulate(3000, seed=11)
    for name in ("declarations", "manifests", "traders", "truth"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))


def test_another_seed_gives_another_world():
    a, b = simulate(3000, seed=11), simulate(3000, seed=12)
    assert not a.declarations["declared_value"].equals(b.declarations["declared_value"])


def test_row_count_and_ids(world):
    d = world.declarations
    assert len(d) == 20_000
    assert d["declaration_id"].is_unique
    assert d["declaration_date"].is_monotonic_increasing
    assert set(d["bill_of_lading"]) <= set(world.manifests["bill_of_lading"])
    assert set(d["importer_id"]) <= set(world.traders["importer_id"])


def test_only_inspected_rows_carry_labels(world):
    d = world.declarations
    share = d["inspected"].mean()
    assert 0.05 <= share <= 0.15
    unlabelled = d[d["inspected"] == 0]
    assert unlabelled[["fraud", "revenue", "critical", "control_date"]].isna().all().all()
    labelled = d[d["inspected"] == 1]
    assert labelled["fraud"].notna().all()
    assert (labelled["control_date"] > labelled["declaration_date"]).all()
    assert (labelled.loc[labelled["fraud"] == 0, "revenue"] == 0).all()


def test_labelled_hit_rate_exceeds_the_hidden_base_rate(world):
    """Targeted controls find more fraud than a random draw would: a precondition for learning."""
    d, t = world.declarations, world.truth
    assert d.loc[d["inspected"] == 1, "fraud"].astype(float).mean() > 1.5 * t["is_fraud"].mean()


def test_every_typology_occurs_at_a_plausible_rate(world):
    rates = world.truth["typology"].value_counts(normalize=True)
    for typology in ("undervaluation", "misclassification", "origin", "weight_mismatch", "shell", "new_scheme"):
        assert 0.001 <= rates.get(typology, 0) <= 0.05, typology
    assert 0.03 <= world.truth["is_fraud"].mean() <= 0.15


def test_undervaluation_concentrates_on_high_duty_goods(world):
    t = world.truth
    duty = t["true_hs_code"].map(DUTY)
    assert duty[t["typology"] == "undervaluation"].mean() > duty.mean() + 0.03


def test_misclassification_moves_goods_to_a_lower_duty_heading(world):
    d, t = world.declarations, world.truth
    mis = t["typology"] == "misclassification"
    assert (d.loc[mis, "hs_code"] != t.loc[mis, "true_hs_code"]).all()
    assert (d.loc[mis, "hs_code"].map(DUTY) < t.loc[mis, "true_hs_code"].map(DUTY)).all()


def test_origin_misdeclaration_hides_chinese_anti_dumping_goods(world):
    d, t = world.declarations, world.truth
    origin = t["typology"] == "origin"
    assert (t.loc[origin, "true_origin"] == "CN").all()
    assert (d.loc[origin, "origin_country"] != "CN").all()
    assert (d.loc[origin, "hs_code"].map(AD) > 0).all()
    # The manifest often still shows the Chinese loading port: a signal integration can find.
    assert (d.loc[origin, "departure_country"] == "CN").mean() > 0.2
    assert (d.loc[~origin & (d["origin_country"] != "CN"), "departure_country"] == "CN").mean() < 0.01


def test_weight_mismatch_declares_less_than_was_shipped(world):
    d, t = world.declarations, world.truth
    short = t["typology"] == "weight_mismatch"
    assert (d.loc[short, "net_mass_kg"] < t.loc[short, "true_net_mass_kg"]).all()


def test_shell_importers_are_new_and_mostly_fraudulent(world):
    d, t, traders = world.declarations, world.truth, world.traders.set_index("importer_id")
    shell = t["importer_kind"] == "shell"
    assert t.loc[shell, "is_fraud"].mean() > 5 * t.loc[~shell, "is_fraud"].mean()
    age = (d["declaration_date"] - d["importer_id"].map(traders["registration_date"])).dt.days
    assert age[shell].median() < 180 < age[~shell].median()


def test_new_scheme_starts_partway_through(world):
    d, t = world.declarations, world.truth
    scheme = t["typology"] == "new_scheme"
    assert scheme.any()
    assert (d.loc[scheme, "declaration_date"] >= world.drift_date).all()
    assert d["declaration_date"].min() < world.drift_date < d["declaration_date"].max()


def test_revenue_is_recovered_only_from_caught_fraud(world):
    d = world.declarations
    assert (d["revenue"].dropna() >= 0).all()
    caught = d["fraud"] == 1
    assert (d.loc[caught, "revenue"] > 0).mean() > 0.95


def test_written_files_hold_only_what_customs_sees(world, tmp_path):
    paths = write_world(world, tmp_path, "parquet")
    hidden = set(world.truth.columns) - {"declaration_id"}
    for kind, path in paths.items():
        columns = set(pd.read_parquet(path).columns)
        assert not columns & hidden, kind
        assert columns <= set(field_types(kind)), kind
    assert not list(tmp_path.glob("truth*"))


@pytest.mark.parametrize("kind", ["declarations", "manifests", "traders"])
def test_simulated_sources_pass_the_contract(world, kind):
    checked = check_rows(getattr(world, kind), kind, ColumnMapping())
    assert checked.rejected.empty
    assert len(checked.valid) == len(getattr(world, kind))


def test_prices_vary_by_origin(world):
    d = world.declarations
    unit = d["declared_value"] / d["net_mass_kg"]
    clean = world.truth["typology"] == ""
    by_origin = unit[clean & (d["hs_code"] == "610910")].groupby(d["origin_country"]).median()
    assert by_origin.max() / by_origin.min() > 1.2
    assert np.isfinite(by_origin).all()
