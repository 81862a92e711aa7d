"""Reasons true to the deciding model: each comes from a feature the model has, with the value it saw. On the islas
world (a foreign export through its mapping), a model trained without the profile groups never quotes a profile
statistic, a raw entity reads as the entity, a hit rate is said only over controls, and /ui's family table lists
every family of the contributions."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from features.build import build_features, integrate
from features.catalogue import ENGINEERED_GROUPS
from features.entities import MISSING
from features.intake.mapping import load_mapping
from features.intake.prepared import prepare_batch
from features.labels import labelled
from features.profiles import PROFILE_COLUMNS
from features.simulator import simulate_islas, write_islas
from serving import ui
from serving.reasons import Explanation, explanations, sentence
from training.models import FitConfig, RiskModel, fit_risk_model, time_split

TINY = FitConfig(iterations=30, learning_rate=0.2, depth=4, threads=2, early_stopping_rounds=30)
PROFILE_GROUPS = ("profiles", "pair_profiles")
# What only a profile statistic can say.
PROFILE_WORDS = re.compile(r"hit rate|control|first seen|earlier filing|recovered|filings in the last")
LEARNED = re.compile(r"^(importer|declarant|exporter|origin|goods HS|HS chapter) (\S+): the model's learned risk for "
                     r"this (importer|declarant|exporter|origin|HS code|HS chapter)$")


@dataclass(frozen=True)
class Islas:
    frame: pd.DataFrame  # the holdout's integrated declarations (the reasons' context)
    X: pd.DataFrame  # their features, every group
    without_profiles: RiskModel
    full: RiskModel


@pytest.fixture(scope="module")
def islas(tmp_path_factory) -> Islas:
    world = simulate_islas(4_000, seed=5)
    paths = write_islas(world, tmp_path_factory.mktemp("islas"))
    frame = integrate(prepare_batch(paths["train"], "declarations", load_mapping(paths["mapping"])).valid)
    fs = build_features(frame)
    frame["price_reference_log"] = fs.price_reference_log.to_numpy()  # as the scorer gives it
    split = time_split(fs.meta["declaration_date"], labelled(frame))
    kept = tuple(g for g in ENGINEERED_GROUPS if g not in PROFILE_GROUPS)
    fit = lambda groups: fit_risk_model(fs, split, TINY, fs.model_columns(groups), revenue=False)  # noqa: E731
    return Islas(frame[split.holdout].reset_index(drop=True), fs.X[split.holdout].reset_index(drop=True),
                 fit(kept), fit(ENGINEERED_GROUPS))


def explain_all(model: RiskModel, islas: Islas, context: pd.DataFrame | None = None, **kwargs) -> Explanation:
    return explanations(model, islas.X[model.columns], islas.frame if context is None else context, **kwargs)


def test_a_model_without_the_profiles_never_quotes_a_profile_and_reads_a_raw_entity_as_the_entity(islas):
    model = islas.without_profiles
    assert not set(PROFILE_COLUMNS) & set(model.columns)
    # The declarations may carry what the model lacks: it is still never quoted.
    context = islas.frame.assign(exporter_hit_rate=0.9, exporter_inspections=50.0, origin_hit_rate=0.9,
                                 origin_inspections=50.0, exporter_volume=7.0, exporter_days_known=30.0)
    found = explain_all(model, islas, context)
    said = [(i, r) for i, reasons in enumerate(found.reasons) for r in reasons]
    assert len(said) > 300
    assert not [r for _, r in said if PROFILE_WORDS.search(r)]
    learned = [(i, LEARNED.match(r)) for i, r in said if LEARNED.match(r)]
    assert {m.group(1) for _, m in learned} >= {"exporter", "declarant"}
    for i, m in learned:  # the entity named is the declaration's own, as the model read it
        column = {"goods HS": "hs_code", "HS chapter": "hs_chapter", "origin": "origin_country"}.get(
            m.group(1), f"{m.group(1)}_id")
        assert m.group(2).replace(".", "") == islas.X.loc[i, column][:len(m.group(2).replace(".", ""))]


def test_with_the_profiles_a_hit_rate_is_said_only_over_controls(islas):
    said = [r for reasons in explain_all(islas.full, islas).reasons for r in reasons]
    rates = [r for r in said if "hit rate" in r]
    assert rates  # the profiles speak when the model has them
    assert all(int(n.replace(",", "")) > 0 for r in rates for n in re.findall(r"([\d,]+) controls?\b", r))
    assert not [r for r in said if re.search(r"\b0 controls", r)]


def test_the_family_table_lists_every_family_of_the_contributions(islas):
    found = explain_all(islas.full, islas, top_contributions=len(islas.full.columns))
    scores = islas.full.predict(islas.X[islas.full.columns])["risk_score"].to_numpy()
    lowest = int(np.argmin(scores))  # a green release's, all features (as /ui recomputes them)
    decision = {"contributions": found.contributions[lowest], "contribution_base": found.base,
                "risk_score": float(scores[lowest]), "model_version": "1", "lane": "green"}
    contributions = ui.stored_contributions(decision)
    families = set(contributions.features["family"])
    assert len(families) > 12
    section = ui.contributions_section(contributions, decision, None)
    table = section.split("By family", 1)[1]
    listed = re.findall(r"<tr><td>([^<]+)</td><td class=n>", table)
    assert sorted(listed) == sorted(families)
    lowering = contributions.families.sort_values("contribution")["family"].iloc[0]
    assert lowering in listed  # the family that lowers the risk most is shown too


ROW = {"importer_id": "I1", "declarant_id": "D1", "exporter_id": "LS341ZS", "origin_country": "CN",
       "office_id": "110", "hs_code": "170199", "hs_chapter": "17"}


@pytest.mark.parametrize(("family", "strongest", "values", "says"), [
    ("entity:exporter", "exporter_id", {}, "exporter LS341ZS: the model's learned risk for this exporter"),
    ("entity:hs_subheading", "hs_code", {}, "goods HS 1701.99: the model's learned risk for this HS code"),
    ("entity:exporter", "exporter_id", {"exporter_id": MISSING},
     "no exporter declared: the model's learned risk where it is missing"),
    ("entity:origin", "origin_hit_rate", {"origin_hit_rate": 0.2, "origin_inspections": 0.0},
     "origin CN has no earlier controls"),
    ("entity:origin", "origin_inspections", {"origin_hit_rate": 0.25, "origin_inspections": 8.0},
     "origin CN's hit rate 25% over 8 controls"),
    ("entity:origin", "origin_hit_rate", {"origin_hit_rate": 0.3}, None),  # controls unknown: no hit rate
    ("entity:importer", "importer_revenue_rate", {"importer_revenue_rate": 950.0, "importer_inspections": 1.0},
     "importer I1's controls recovered 950 on average over 1 control"),
    ("entity:hs_heading", "hs_heading_volume", {"hs_heading_volume": 3.0},
     "HS heading 1701: 3 earlier filings"),  # no days_known in the model: no "first seen"
    ("entity:hs_heading", "hs_heading_days_known", {"hs_heading_days_known": 40.0, "hs_heading_volume": 1.0},
     "HS heading 1701: first seen 40 days ago, 1 earlier filing"),
    ("registry", "aeo_certified", {}, "importer's AEO status: not on record"),
    ("registry", "company_age_days", {"company_age_days": math.nan}, "importer's registration date: not on record"),
    ("registry", "credit_rating_rank", {"credit_rating": "BB", "credit_rating_rank": 4.0},
     "importer's credit rating is BB"),
    ("value", "log_net_mass_kg", {"log_net_mass_kg": math.nan}, "no net mass declared"),
    ("value", "log_declared_value", {"log_declared_value": math.log1p(1500)}, "declared value 1,500"),
    ("value", "tax_rate", {"tax_rate": 0.065}, "duty rate 6.5%"),
    ("manifest", "bl_items", {"bl_items": math.nan}, "no bill of lading declared"),
    ("manifest", "manifest_mass_ratio", {}, "no manifest gross weight to check the declared net mass against"),
    ("route", "carrier", {"carrier": "MSK"}, "carried by MSK"),
    ("route", "transshipped", {"transshipped": math.nan}, "no manifest route to check"),
    ("xcat_courier_id", "xcat_courier_id", {"xcat_courier_id": MISSING}, "courier id not given"),
])
def test_a_sentence_quotes_only_the_models_own_values(family, strongest, values, says):
    assert sentence(family, strongest, {**ROW, **values}) == says


def test_a_batch_gives_each_row_the_reasons_it_gets_alone_when_families_have_nothing_to_say(islas, monkeypatch):
    """The batch makes its sentences a family at a time for all the rows that ask, in rounds; a row whose strongest
    families have nothing defensible to say (here: pair profiles with no count of controls) gets the next ones,
    exactly as when it is explained alone."""
    from serving import reasons

    model = islas.full
    X = islas.X[model.columns].copy()
    inspections = [c for c in model.columns if c.endswith("_inspections")]
    assert inspections
    X.loc[: len(X) // 2, inspections] = np.nan  # half the rows: hit rates the sentences may not quote
    made = reasons._sentences
    silent = []

    def spied(family, strongest, table, rows):  # noqa: ANN001, ANN202
        out = made(family, strongest, table, rows)
        silent.extend(text for text in out if text is None)
        return out

    monkeypatch.setattr(reasons, "_sentences", spied)
    whole = explanations(model, X, islas.frame)
    assert silent  # some families had nothing to say, so rows asked again
    assert sum(len(r) == 3 for r in whole.reasons) > len(X) // 2
    for i in range(0, len(X), max(1, len(X) // 120)):
        alone = explanations(model, X.iloc[[i]], islas.frame.iloc[[i]])
        assert alone.reasons[0] == whole.reasons[i]
        assert alone.contributions[0] == whole.contributions[i]


def test_a_column_reads_each_kind_of_missing_value_as_missing():
    """What a sentence quotes of a batch is read a column at a time: NaN, None, pandas' NA, NaT and the categorical
    gap are all missing, whatever the column's type, as they are for one declaration."""
    from serving.reasons import _present, _presented

    mixed = np.array(["CN", MISSING, None, np.nan, pd.NA, 3], dtype=object)
    assert _presented(mixed) == ["CN", None, None, None, None, 3] == [_present(v) for v in mixed]
    assert _presented(np.array([1.5, np.nan])) == [1.5, None]
    assert _presented(np.array(["2026-01-02", "NaT"], dtype="datetime64[D]"))[1] is None
    assert _presented(np.array([3, 4])) == [3, 4]
