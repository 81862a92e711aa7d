"""A seeded, vectorised simulation of an import customs administration.

It writes only what a customs office would see: declarations (with labels on the controlled rows only),
manifests and the trader registry. The hidden state (each importer's compliance propensity, the fraud
typology of each row, the revenue at stake in uncontrolled rows) stays in `World.truth`, which no model
code reads; tests use it to check the simulator itself.

The world:
- importers with a latent compliance propensity, some of which changes at a random date;
- complicit customs brokers and laxer offices;
- five fraud typologies: undervaluation (mostly of high-duty goods), HS misclassification into a
  lower-duty heading, origin misdeclaration through transshipment hubs to evade anti-dumping duty,
  quantity/weight mismatch against the manifest, and short-lived shell importers;
- a new scheme (a ring of electronics importers through one broker and one port) starting partway through;
- a historical inspection policy: legacy rules, intelligence tips and a random share, about 10 % of rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.simulator import trade_data as cat

DRIFT_SHARE = 0.65  # the new scheme starts at this share of the period
INSPECTION_RATE = 0.10
RANDOM_INSPECTION_RATE = 0.015
DETECTION_RATE = 0.92
CRITICAL_REVENUE = 15_000.0
RATINGS_LOW_TO_HIGH = ("D", "C", "CC", "CCC", "B", "BB", "BBB", "A", "AA", "AAA")


@dataclass
class World:
    declarations: pd.DataFrame
    manifests: pd.DataFrame
    traders: pd.DataFrame
    truth: pd.DataFrame  # hidden ground truth, one row per declaration; never written, never a feature
    drift_date: pd.Timestamp


def _pick(rng: np.random.Generator, options: dict[str, float], size: int) -> np.ndarray:
    keys = np.array(list(options))
    weights = np.array(list(options.values()), dtype=float)
    return keys[rng.choice(len(keys), size=size, p=weights / weights.sum())]


def _pick_within(rng: np.random.Generator, groups: np.ndarray, table: dict[str, dict[str, float]]) -> np.ndarray:
    """For each element of `groups`, draw a key from that group's weighted options."""
    out = np.empty(len(groups), dtype=object)
    for group, options in table.items():
        mask = groups == group
        if mask.any():
            out[mask] = _pick(rng, options, int(mask.sum()))
    return out


def _ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    return (prefix + pd.Series(numbers).astype(str).str.zfill(width)).to_numpy()


def _importers(rng: np.random.Generator, n: int, start: np.datetime64, days: int) -> pd.DataFrame:
    n_shell = max(2, int(n * 0.04))
    kind = np.array(["regular"] * n, dtype=object)
    kind[rng.choice(n, n_shell, replace=False)] = "shell"
    shell = kind == "shell"
    sector = _pick(rng, cat.SECTOR_WEIGHTS, n)
    propensity = np.where(shell, rng.beta(6, 4, n), rng.beta(0.5, 14, n))
    activity = np.where(shell, 1.5, rng.pareto(1.3, n) + 1.0)
    age_days = np.where(shell, 0, (rng.gamma(2.0, 1500.0, n) + 60).astype(int))
    registration = start - age_days.astype("timedelta64[D]")
    # Shell companies register during the period, trade for a few weeks and vanish.
    shell_reg = rng.integers(-30, days - 90, n)
    registration = np.where(shell, start + shell_reg.astype("timedelta64[D]"), registration)
    active_from = np.where(shell, shell_reg + rng.integers(5, 40, n), 0)
    active_to = np.where(shell, active_from + rng.integers(30, 120, n), days)
    # Some importers change behaviour: a few deteriorate, others reform.
    changes = (~shell) & (rng.random(n) < 0.08)
    change_day = np.where(changes, rng.integers(int(days * 0.1), int(days * 0.9), n), days + 1)
    change_factor = np.where(rng.random(n) < 0.6, rng.uniform(3, 6, n), 0.2)
    change_factor = np.where(changes, change_factor, 1.0)
    age_years = age_days / 365.25
    aeo_p = np.where((propensity < 0.02) & (age_years > 5), 0.35, np.where(age_years > 3, 0.06, 0.0))
    aeo = (rng.random(n) < aeo_p) & ~shell
    standing = -np.log(propensity + 1e-4) + rng.normal(0, 1.5, n) + 0.04 * np.minimum(age_years, 20)
    shares = np.cumsum([0.02, 0.03, 0.05, 0.08, 0.12, 0.20, 0.20, 0.15, 0.10, 0.05])[:-1]
    rating_idx = np.searchsorted(np.quantile(standing, shares), standing)
    rating = np.array(RATINGS_LOW_TO_HIGH)[rating_idx].astype(object)
    rating[shell & (rng.random(n) < 0.5)] = None  # unrated
    violations = rng.poisson(propensity * 8 * np.minimum(age_years, 10) / 5)
    violations[shell] = 0
    return pd.DataFrame(
        {
            "kind": kind,
            "sector": sector,
            "propensity": propensity,
            "activity": activity,
            "registration_date": registration,
            "active_from": active_from,
            "active_to": active_to,
            "change_day": change_day,
            "change_factor": change_factor,
            "aeo_certified": aeo.astype("int8"),
            "credit_rating": rating,
            "prior_violations": violations,
            "price_level": rng.lognormal(0, 0.2, n),
        }
    )


def simulate(rows: int, seed: int = 7, start: str = "2023-01-01", days: int = 730) -> World:
    """Simulate `rows` goods items over `days` days from `start`; the same seed gives the same world."""
    if rows < 100:
        raise ValueError("the simulator needs at least 100 rows")
    rng = np.random.default_rng(seed)
    t0 = np.datetime64(start, "D")
    drift_day = int(days * DRIFT_SHARE)
    goods = pd.DataFrame([g.__dict__ for g in cat.GOODS]).set_index("hs_code")
    n_imp = max(40, rows // 60)
    imp = _importers(rng, n_imp, t0, days)
    regular_electronics = np.flatnonzero((imp["kind"] == "regular") & (imp["sector"] == "electronics"))
    ring = rng.choice(regular_electronics, min(len(regular_electronics), max(3, n_imp // 60)), replace=False)
    imp["ring"] = False
    imp.loc[ring, "ring"] = True
    imp.loc[ring, "activity"] *= 4  # busy, established importers: the scheme hides in volume
    imp.loc[ring, "propensity"] = np.minimum(imp.loc[ring, "propensity"], 0.02)  # clean before the scheme

    # Customs brokers: a few are complicit.
    n_brokers = max(8, rows // 4000)
    broker_factor = np.where(rng.random(n_brokers) < 0.06, 2.5, rng.lognormal(0, 0.2, n_brokers))
    ring_broker = int(np.argmin(broker_factor))  # an unremarkable broker, until the scheme starts
    broker_size = rng.pareto(1.0, n_brokers) + 1
    imp["broker"] = rng.choice(n_brokers, n_imp, p=broker_size / broker_size.sum())

    # Shipments (bills of lading), each with 1-6 goods items.
    n_bl = int(rows / 1.9) + 50
    items_per_bl = 1 + np.minimum(rng.poisson(0.9, n_bl), 5)
    while items_per_bl.sum() < rows:
        items_per_bl = np.concatenate([items_per_bl, 1 + np.minimum(rng.poisson(0.9, n_bl // 10 + 1), 5)])
    n_bl = int(np.searchsorted(np.cumsum(items_per_bl), rows) + 1)
    items_per_bl = items_per_bl[:n_bl]
    items_per_bl[-1] -= items_per_bl.sum() - rows
    bl_imp = rng.choice(n_imp, n_bl, p=(imp["activity"] / imp["activity"].sum()).to_numpy())
    lo, hi = imp["active_from"].to_numpy()[bl_imp], imp["active_to"].to_numpy()[bl_imp]
    bl_day = np.clip(lo + (rng.random(n_bl) * (hi - lo)).astype(int), 0, days - 1)
    bl_sector = imp["sector"].to_numpy()[bl_imp]
    office_codes = np.array([o[0] for o in cat.OFFICES])
    office_share = np.array([o[3] for o in cat.OFFICES])
    bl_office = office_codes[rng.choice(len(office_codes), n_bl, p=office_share / office_share.sum())]
    bl_ring = imp["ring"].to_numpy()[bl_imp] & (bl_day >= drift_day)
    bl_office[bl_ring] = "CO-BUN"
    mode_of = {o[0]: o[2] for o in cat.OFFICES}
    bl_mode = np.array([mode_of[o] for o in bl_office], dtype=object)
    origins = {s: spec["origins"] for s, spec in cat.SECTORS.items()}
    bl_true_origin = _pick_within(rng, bl_sector, origins)
    for office, neighbours in cat.ROAD_ORIGINS.items():
        mask = bl_office == office
        bl_true_origin[mask] = np.array(neighbours)[rng.integers(0, len(neighbours), mask.sum())]

    # Time-varying intent of the importer, broker and office behind each shipment.
    prop = imp["propensity"].to_numpy()[bl_imp]
    changed = bl_day >= imp["change_day"].to_numpy()[bl_imp]
    prop = np.where(changed, np.minimum(prop * imp["change_factor"].to_numpy()[bl_imp], 0.9), prop)
    bl_broker = np.where(rng.random(n_bl) < 0.8, imp["broker"].to_numpy()[bl_imp], rng.integers(0, n_brokers, n_bl))
    bl_broker[bl_ring] = ring_broker
    office_factor = pd.Series({"CO-CUC": 1.6, "CO-IPI": 1.5, "CO-BUN": 1.2}).reindex(bl_office).fillna(1.0)
    intent = np.clip(prop * broker_factor[bl_broker] * office_factor.to_numpy(), 0, 0.95)

    # Origin misdeclaration: Chinese goods under anti-dumping duty re-labelled as from a third country.
    ad_sectors = {"apparel_footwear", "metals", "automotive", "household"}
    bl_origin_fraud = (bl_true_origin == "CN") & np.isin(bl_sector, list(ad_sectors)) & (
        rng.random(n_bl) < np.clip(intent * 4, 0, 0.8)
    )
    bl_origin = bl_true_origin.copy()
    bl_origin[bl_origin_fraud] = _pick(rng, cat.DISGUISE_ORIGINS, int(bl_origin_fraud.sum()))

    # Route: loading port, transshipment hubs. Disguised cargo often still loads in China.
    port_choice = rng.random(n_bl)
    bl_pol = np.array([cat.PORTS[o][int(u * len(cat.PORTS[o]))] for o, u in zip(bl_origin, port_choice, strict=True)])
    true_pol = np.array(
        [cat.PORTS[o][int(u * len(cat.PORTS[o]))] for o, u in zip(bl_true_origin, port_choice, strict=True)]
    )
    route = rng.random(n_bl)
    loads_in_china = bl_origin_fraud & (route < 0.35)
    bl_pol = np.where(loads_in_china, true_pol, bl_pol)
    far = ~np.isin(bl_origin, ["EC", "PE", "VE", "US", "MX", "BR", "AR", "CL"])
    hub_p = np.where(bl_origin_fraud, 0.8, np.where(far, 0.4, 0.05))
    has_hub = (bl_mode == "sea") & (rng.random(n_bl) < hub_p)
    hubs = np.array(cat.HUBS)[rng.integers(0, len(cat.HUBS), n_bl)]
    hubs[bl_ring] = "PAONX"
    has_hub |= bl_ring & (bl_mode == "sea")
    # Honest cargo is sometimes loaded at the hub it was consolidated in: a mismatch that is not fraud.
    loads_at_hub = has_hub & ~bl_origin_fraud & (rng.random(n_bl) < 0.35)
    bl_pol = np.where(loads_at_hub, hubs, bl_pol)
    bl_transship = np.where(has_hub & ~loads_at_hub, hubs, None)
    bl_departure = np.array([p[:2] for p in bl_pol])

    # Goods items.
    bl_of_row = np.repeat(np.arange(n_bl), items_per_bl)
    n = rows
    r_imp = bl_imp[bl_of_row]
    r_sector = bl_sector[bl_of_row]
    r_day = bl_day[bl_of_row]
    r_ring = bl_ring[bl_of_row]
    goods_by_sector = {s: spec["goods"] for s, spec in cat.SECTORS.items()}
    true_hs = _pick_within(rng, r_sector, goods_by_sector)
    ring_goods = {"852872": 3, "851713": 3, "847130": 2}
    true_hs[r_ring] = _pick(rng, ring_goods, int(r_ring.sum()))
    g = goods.loc[true_hs]
    duty = g["duty"].to_numpy()
    true_origin = bl_true_origin[bl_of_row]
    origin = bl_origin[bl_of_row]
    price_level = pd.Series(cat.ORIGIN_PRICE_LEVEL).reindex(true_origin).fillna(1.0).to_numpy()
    shell = imp["kind"].to_numpy()[r_imp] == "shell"
    # Shell importers run hit-and-run schemes: large lots, deeply undervalued, then they vanish.
    mass = np.round(g["lot_kg"].to_numpy() * rng.lognormal(0, 0.6, n) * np.where(shell, 2.5, 1.0), 1) + 1.0
    unit_price = g["usd_per_kg"].to_numpy() * price_level * imp["price_level"].to_numpy()[r_imp] * rng.lognormal(0, 0.4, n)
    true_value = np.round(mass * unit_price, 2)
    ad = np.where(true_origin == "CN", g["anti_dumping"].to_numpy(), 0.0)

    # Which items are fraudulent, and how.
    r_intent = intent[bl_of_row]
    typology = np.full(n, "", dtype=object)
    origin_rows = bl_origin_fraud[bl_of_row] & (ad > 0)
    typology[origin_rows] = "origin"
    scheme_rows = r_ring & (rng.random(n) < 0.35)
    typology[scheme_rows] = "new_scheme"
    p_fraud = np.clip(r_intent * (0.5 + 5 * duty), 0, 0.9)
    other = (typology == "") & (rng.random(n) < p_fraud)
    has_decoy = g["decoy"].notna().to_numpy()
    w_under = (0.3 + 12 * duty) * np.where(shell, 4.0, 1.0)
    w_mis = np.where(has_decoy, 2.5, 0.0)
    w_weight = np.full(n, 1.3)
    u = rng.random(n) * (w_under + w_mis + w_weight)
    kind = np.where(u < w_under, "undervaluation", np.where(u < w_under + w_mis, "misclassification", "weight_mismatch"))
    kind = np.where(shell & (kind == "undervaluation"), "shell", kind)
    typology[other] = kind[other]

    # What gets declared.
    declared_hs = true_hs.copy()
    misclassified = (typology == "misclassification") | (scheme_rows & (true_hs == "852872"))
    declared_hs[misclassified] = g["decoy"].to_numpy()[misclassified]
    undervalued = np.isin(typology, ["undervaluation", "shell"]) | (scheme_rows & ~misclassified)
    declared_value = true_value.copy()
    declared_share = np.where(typology == "shell", rng.uniform(0.25, 0.55, n), rng.uniform(0.4, 0.85, n))
    declared_value[undervalued] = np.round(true_value[undervalued] * declared_share[undervalued], 2)
    declared_mass = mass.copy()
    short = typology == "weight_mismatch"
    short_share = rng.uniform(0.55, 0.88, n)
    declared_mass[short] = np.round(mass[short] * short_share[short], 1)
    declared_value[short] = np.round(true_value[short] * short_share[short], 2)
    kg_per_unit = g["kg_per_unit"].to_numpy()
    quantity = np.where(kg_per_unit > 1.0, np.maximum(1, np.round(declared_mass / kg_per_unit)), declared_mass)
    dg = goods.loc[declared_hs]
    declared_ad = np.where(origin == "CN", dg["anti_dumping"].to_numpy(), 0.0)
    tariff = dg["duty"].to_numpy() + declared_ad

    def taxes(value: np.ndarray, rate: np.ndarray) -> np.ndarray:
        return value * (rate + cat.VAT * (1 + rate))

    revenue_at_stake = np.round(taxes(true_value, duty + ad) - taxes(declared_value, tariff), 2)
    is_fraud = typology != ""
    revenue_at_stake = np.where(is_fraud, np.maximum(revenue_at_stake, 0.0), 0.0)

    # The historical inspection policy: legacy rules, intelligence tips, and a random share.
    r_reg = imp["registration_date"].to_numpy()[r_imp]
    decl_day = r_day + rng.integers(0, 4, n)
    decl_date = t0 + decl_day.astype("timedelta64[D]")
    young = (decl_date - r_reg).astype("timedelta64[D]").astype(int) < 365
    aeo = imp["aeo_certified"].to_numpy()[r_imp] == 1
    legacy = (
        0.03 * (duty >= 0.15) + 0.05 * young + 0.03 * (origin == "CN") * (dg["anti_dumping"].to_numpy() > 0)
        + 0.02 * (bl_mode[bl_of_row] == "road") + 0.015
    )
    legacy = legacy * np.where(aeo, 0.3, 1.0) + 0.15 * (is_fraud & (rng.random(n) < 0.3))
    scale = (INSPECTION_RATE - RANDOM_INSPECTION_RATE) / legacy.mean()
    inspected = (rng.random(n) < np.clip(legacy * scale, 0, 0.9)) | (rng.random(n) < RANDOM_INSPECTION_RATE)
    detected = inspected & is_fraud & (rng.random(n) < DETECTION_RATE)
    revenue = np.where(detected, revenue_at_stake, 0.0)
    lag = 1 + np.minimum(rng.geometric(0.2, n), 60)
    control_date = decl_date + lag.astype("timedelta64[D]")

    # Assemble: rows in filing order, ids allocated chronologically.
    order = np.argsort(decl_day, kind="stable")
    imp_ids = _ids("IMP", rng.permutation(n_imp) + 100_000, 6)
    bl_ids = _ids("BL", rng.permutation(n_bl) + 10_000_000, 8)
    exporters_pool = max(10, rows // 2000)
    front = bl_origin_fraud[bl_of_row]
    exporter_num = np.where(
        front,
        rng.integers(0, 3, n),  # a handful of front companies per disguise country
        3 + (r_imp * 7919 + rng.integers(0, 3, n)) % exporters_pool,
    )
    exporter_id = pd.Series(origin).str.cat(pd.Series(exporter_num).astype(str).str.zfill(5), sep="-")
    decl = pd.DataFrame(
        {
            "declaration_id": _ids("D", np.arange(n), 8),
            "declaration_date": decl_date[order],
            "importer_id": imp_ids[r_imp][order],
            "declarant_id": _ids("BRK", bl_broker[bl_of_row] + 1000, 4)[order],
            "exporter_id": ("EX-" + exporter_id).to_numpy()[order],
            "office_id": bl_office[bl_of_row][order],
            "transport_mode": bl_mode[bl_of_row][order],
            "hs_code": declared_hs[order],
            "origin_country": origin[order],
            "departure_country": bl_departure[bl_of_row][order],
            "net_mass_kg": declared_mass[order],
            "quantity": quantity[order],
            "declared_value": declared_value[order],
            "tax_rate": np.round(tariff, 4)[order],
            "duty_paid": np.round(taxes(declared_value, tariff), 2)[order],
            "bill_of_lading": bl_ids[bl_of_row][order],
            "inspected": inspected.astype("int8")[order],
            "fraud": pd.array(np.where(inspected, detected, pd.NA), dtype="Int8")[order],
            "revenue": np.where(inspected, np.round(revenue, 2), np.nan)[order],
            "critical": pd.array(np.where(inspected, detected & (revenue >= CRITICAL_REVENUE), pd.NA), dtype="Int8")[order],
            "control_date": pd.Series(np.where(inspected, control_date, np.datetime64("NaT"))).to_numpy()[order],
        }
    )
    for col in ("declaration_date", "control_date"):
        decl[col] = pd.to_datetime(decl[col]).astype("datetime64[us]")
    truth = pd.DataFrame(
        {
            "declaration_id": decl["declaration_id"],
            "typology": typology[order],
            "is_fraud": is_fraud[order],
            "revenue_at_stake": revenue_at_stake[order],
            "true_hs_code": true_hs[order],
            "true_origin": true_origin[order],
            "importer_kind": imp["kind"].to_numpy()[r_imp][order],
            "true_net_mass_kg": mass[order],
        }
    )

    packing = rng.uniform(1.02, 1.35, n_bl)
    packing = np.where(rng.random(n_bl) < 0.08, packing * rng.uniform(1.3, 2.5, n_bl), packing)  # consolidated cargo
    gross = pd.Series(mass).groupby(bl_of_row).sum().to_numpy() * packing
    arrival = t0 + bl_day.astype("timedelta64[D]")
    port_of = {o[0]: o[1] for o in cat.OFFICES}
    carriers = np.array([cat.CARRIERS[m][int(u * len(cat.CARRIERS[m]))] for m, u in zip(bl_mode, rng.random(n_bl), strict=True)])
    manifests = pd.DataFrame(
        {
            "bill_of_lading": bl_ids,
            "carrier": carriers,
            "transport_mode": bl_mode,
            "port_of_loading": bl_pol,
            "transshipment_ports": pd.array(bl_transship, dtype="str"),
            "port_of_discharge": np.array([port_of[o] for o in bl_office]),
            "gross_weight_kg": np.round(gross, 1),
            "container_count": pd.array(np.where(bl_mode == "sea", np.ceil(gross / 18_000), 0).astype(int), dtype="Int64"),
            "arrival_date": pd.to_datetime(arrival).astype("datetime64[us]"),
            "consignee_id": imp_ids[bl_imp],
        }
    ).sort_values(["arrival_date", "bill_of_lading"], ignore_index=True)
    traders = pd.DataFrame(
        {
            "importer_id": imp_ids,
            "registration_date": pd.to_datetime(imp["registration_date"]).astype("datetime64[us]"),
            "aeo_certified": imp["aeo_certified"].astype("int8"),
            "credit_rating": pd.array(imp["credit_rating"], dtype="str"),
            "prior_violations": imp["prior_violations"].astype("int64"),
            "sector": imp["sector"],
        }
    ).sort_values("importer_id", ignore_index=True)
    return World(decl, manifests, traders, truth, pd.Timestamp(t0 + np.timedelta64(drift_day, "D")))


def write_world(world: World, out_dir: Path, fmt: str = "parquet") -> dict[str, Path]:
    """Write the three observable sources; the hidden truth is never written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in ("traders", "manifests", "declarations"):
        frame: pd.DataFrame = getattr(world, name)
        path = out_dir / f"{name}.{fmt}"
        if fmt == "parquet":
            frame.to_parquet(path, index=False)
        elif fmt == "csv":
            frame.to_csv(path, index=False, date_format="%Y-%m-%d")
        else:
            raise ValueError(f"unknown format {fmt!r}: use parquet or csv")
        paths[name] = path
    return paths
