"""One slice of days of the simulated world: its shipments' routes and goods, the fraud in them, what gets
declared, and the historical inspection policy's controls.

The world's importers, brokers and shipment skeleton come from `features.simulator.population`, drawn once; a
slice draws everything else for its own bills of lading, so memory follows the slice, not the world.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.simulator import trade_data as cat
from features.simulator.population import Population, Shipments, numbered_ids, pick, pick_within

INSPECTION_RATE = 0.10
RANDOM_INSPECTION_RATE = 0.015
DETECTION_RATE = 0.92
CRITICAL_REVENUE = 15_000.0


@dataclass
class Slice:
    """A slice's rows. Declarations and truth are in filing order, not yet numbered: their ids are given once
    the world knows which rows come before them (`features.simulator.world.world_slices`)."""

    declarations: pd.DataFrame
    manifests: pd.DataFrame
    truth: pd.DataFrame  # hidden, one row per declaration, in the same order


def simulate_slice(rng: np.random.Generator, pop: Population, ship: Shipments, bls: np.ndarray,
                   first_bl: int) -> Slice:
    """The goods items of the bills of lading `bls` (numbers into `ship`, in draw order); their bill-of-lading
    ids are numbered from `first_bl`, so that ids stay unique across slices. The first slice also draws the
    importers' ids, at the point where the one-pass simulator drew them, into `pop`."""
    imp, t0, drift_day = pop.importers, pop.t0, pop.drift_day
    n_brokers, broker_factor, ring_broker = len(pop.broker_factor), pop.broker_factor, pop.ring_broker
    n_bl, items_per_bl, bl_imp, bl_day = len(bls), ship.items[bls], ship.importer[bls], ship.day[bls]
    goods = pd.DataFrame([g.__dict__ for g in cat.GOODS]).set_index("hs_code")
    bl_sector = imp["sector"].to_numpy()[bl_imp]
    office_codes = np.array([o[0] for o in cat.OFFICES])
    office_share = np.array([o[3] for o in cat.OFFICES])
    bl_office = office_codes[rng.choice(len(office_codes), n_bl, p=office_share / office_share.sum())]
    bl_ring = imp["ring"].to_numpy()[bl_imp] & (bl_day >= drift_day)
    bl_office[bl_ring] = "CO-BUN"
    mode_of = {o[0]: o[2] for o in cat.OFFICES}
    bl_mode = np.array([mode_of[o] for o in bl_office], dtype=object)
    origins = {s: spec["origins"] for s, spec in cat.SECTORS.items()}
    bl_true_origin = pick_within(rng, bl_sector, origins)
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
    bl_origin[bl_origin_fraud] = pick(rng, cat.DISGUISE_ORIGINS, int(bl_origin_fraud.sum()))

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
    n = int(items_per_bl.sum())
    r_imp = bl_imp[bl_of_row]
    r_sector = bl_sector[bl_of_row]
    r_day = bl_day[bl_of_row]
    r_ring = bl_ring[bl_of_row]
    goods_by_sector = {s: spec["goods"] for s, spec in cat.SECTORS.items()}
    true_hs = pick_within(rng, r_sector, goods_by_sector)
    ring_goods = {"852872": 3, "851713": 3, "847130": 2}
    true_hs[r_ring] = pick(rng, ring_goods, int(r_ring.sum()))
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
    scale = (INSPECTION_RATE - RANDOM_INSPECTION_RATE) / legacy.mean()  # the rate holds in every slice
    inspected = (rng.random(n) < np.clip(legacy * scale, 0, 0.9)) | (rng.random(n) < RANDOM_INSPECTION_RATE)
    detected = inspected & is_fraud & (rng.random(n) < DETECTION_RATE)
    revenue = np.where(detected, revenue_at_stake, 0.0)
    lag = 1 + np.minimum(rng.geometric(0.2, n), 60)
    control_date = decl_date + lag.astype("timedelta64[D]")

    # Assemble: rows in filing order; bill-of-lading ids numbered after the earlier slices'.
    order = np.argsort(decl_day, kind="stable")
    if pop.importer_ids is None:
        pop.importer_ids = numbered_ids("IMP", rng.permutation(len(imp)) + 100_000, 6)
    imp_ids = pop.importer_ids
    bl_ids = numbered_ids("BL", rng.permutation(n_bl) + 10_000_000 + first_bl, 8)
    exporters_pool = max(10, pop.rows // 2000)
    front = bl_origin_fraud[bl_of_row]
    exporter_num = np.where(
        front,
        rng.integers(0, 3, n),  # a handful of front companies per disguise country
        3 + (r_imp * 7919 + rng.integers(0, 3, n)) % exporters_pool,
    )
    exporter_id = pd.Series(origin).str.cat(pd.Series(exporter_num).astype(str).str.zfill(5), sep="-")
    decl = pd.DataFrame(
        {
            "declaration_date": decl_date[order],
            "importer_id": imp_ids[r_imp][order],
            "declarant_id": numbered_ids("BRK", bl_broker[bl_of_row] + 1000, 4)[order],
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
    return Slice(decl, manifests, truth)
