"""Islas: a second embedded world, laid out as a third-party export the platform was not built for.

It imitates a public benchmark of synthetic import declarations published by a customs service: one row
per goods item, every row inspected, about 20 % fraud, its own column names and codes (percent tax rates,
numeric office and transport codes, HS codes that lost their leading zero, a three-valued critical label),
and its own train file (the first five quarters) and test file (the last quarter). The arrivals file holds the
test file's rows as they arrive, before any control: without the label columns. All are ingested only through
one mapping file, islas_mapping.yaml, as a user would ingest a real export.

Fraud lives mainly in combinations of entities: risky (importer × HS heading), collusive
(declarant × office) and (seller × origin) pairs. Each importer, declarant, office, heading and origin
alone is raked to the overall fraud rate, so single-entity hit rates say little; a small price signal
and Bernoulli label noise come on top. A few malformed rows are injected on purpose; `IslasWorld.bad_rows`
lists each one with the quarantine reason ingest must give it.

Optionally (`scheme=True`) an emerging scheme starts part-way through the history, at a day drawn from the seed
(55-70 % of the period): a small ring of established importers, active since the start, begin buying goods of a
heading none of them ever bought (a high-duty one), from a few new foreign sellers (seller × origin pairs that did
not exist before), all filed by one declarant the ring already used, at one office. About a third of those items
are fraud, declared at roughly half their value (undervaluation, where the duty makes it pay); the scheme is about 1 %
of the items filed from its start, taken from the other importers' traffic at random. It draws from a random stream
of its own: every other row is the same as in the world without it, and a world without it is unchanged. Which
rows are the scheme's, and which of them are fraud, stays in `IslasWorld.truth` (never in the files);
`IslasWorld.drift_date` is its first day.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

MAPPING_PATH = Path(__file__).with_name("islas_mapping.yaml")
COLUMNS = (
    "Declaration ID", "Date", "Office ID", "Process Type", "Import Type", "Import Use", "Payment Type",
    "Mode of Transport", "Declarant ID", "Importer ID", "Seller ID", "Courier ID", "HS6 Code",
    "Country of Departure", "Country of Origin", "Tax Rate", "Tax Type", "Country of Origin Indicator",
    "Net Mass", "Item Price", "Fraud", "Critical Fraud",
)
LABEL_COLUMNS = ("Fraud", "Critical Fraud")  # the controls' results: what arriving declarations do not have yet
FILES = {"train": "islas_train.csv", "test": "islas_test.csv", "arrivals": "islas_arrivals.csv",
         "mapping": "islas_mapping.yaml"}
START, MONTHS, TEST_MONTHS = "2022-01-01", 18, 3
FRAUD_RATE = 0.20
BAD_ROW_SHARE = 0.002
UNKNOWN_ORIGIN_SHARE = 0.0006
# Injected faults: the column they break and the reason code ingest must quarantine them with.
BAD_KINDS = {
    "malformed_date": ("Date", "invalid_date"),
    "negative_price": ("Item Price", "negative_value"),
    "hs_code_letters": ("HS6 Code", "invalid_hs_code"),
    "empty_importer": ("Importer ID", "missing_required"),
    "fraud_not_a_flag": ("Fraud", "invalid_flag"),
}
# Per pair family: how much a risky pair adds to the fraud probability, and the risky share of each owner's
# rows (declarant, seller). Importers' risky headings fill each importer up to RISKY_SHARE of its rows.
PAIR_EFFECTS = {"importer_heading": (0.93, None), "declarant_office": (0.93, 0.08), "seller_origin": (0.93, 0.06)}
RISKY_SHARE = 0.20
BASE_RATE = 0.02
NOISE = 0.25  # sd of a row-level logit shock
# The emerging scheme (scheme=True): the ranges its world's own figures are drawn from, per seed.
SCHEME_STREAM = 1  # its random stream: default_rng([seed, SCHEME_STREAM]), so the rest of the world is untouched
SCHEME_START = (0.55, 0.70)  # the share of the period at which it starts
SCHEME_SHARE = (0.006, 0.012)  # its share of the items filed from then on
SCHEME_FRAUD_RATE = (0.30, 0.40)
SCHEME_RING = (3, 5)  # importers in the ring
SCHEME_SELLERS = (2, 3)  # new foreign sellers, one origin each
SCHEME_UNDERVALUATION = 0.5  # median declared share of the real value of its frauds

# HS6 code, MFN tax rate (percent), USD per kg, typical net mass of one item (kg).
GOODS = (
    ("020130", 40.0, 9.0, 8000), ("020714", 20.0, 2.5, 12000), ("030617", 20.0, 10.0, 6000),
    ("030389", 10.0, 3.0, 10000), ("040210", 36.0, 3.5, 9000), ("040630", 36.0, 8.0, 3000),
    ("080510", 50.0, 1.1, 15000), ("080810", 45.0, 1.3, 15000), ("090111", 2.0, 4.0, 12000),
    ("090230", 40.0, 6.0, 2000), ("100630", 5.0, 0.6, 20000), ("151110", 3.0, 0.9, 20000),
    ("170199", 3.0, 0.5, 20000), ("190531", 8.0, 4.0, 4000), ("210690", 8.0, 7.0, 2500),
    ("220421", 15.0, 5.0, 6000), ("220830", 20.0, 12.0, 3000), ("300490", 0.0, 45.0, 800),
    ("330499", 8.0, 20.0, 1200), ("330510", 8.0, 4.0, 3000), ("392321", 6.5, 2.5, 5000),
    ("392690", 6.5, 5.0, 3000), ("401110", 8.0, 3.5, 10000), ("420221", 8.0, 60.0, 400),
    ("441872", 8.0, 1.5, 12000), ("481910", 0.0, 1.2, 8000), ("520812", 8.0, 5.0, 5000),
    ("610910", 13.0, 14.0, 1500), ("611020", 13.0, 16.0, 1200), ("620342", 13.0, 15.0, 1500),
    ("620462", 13.0, 15.0, 1500), ("640299", 13.0, 9.0, 2500), ("640399", 13.0, 25.0, 1500),
    ("691110", 8.0, 4.0, 6000), ("720839", 0.0, 0.7, 40000), ("721049", 0.0, 0.9, 30000),
    ("730630", 0.0, 1.1, 25000), ("731815", 8.0, 3.0, 4000), ("760612", 0.0, 3.2, 15000),
    ("841510", 8.0, 6.0, 5000), ("841810", 8.0, 3.5, 5000), ("847130", 0.0, 180.0, 300),
    ("847330", 0.0, 90.0, 300), ("850440", 8.0, 25.0, 1000), ("851713", 0.0, 500.0, 100),
    ("852872", 8.0, 12.0, 3000), ("854143", 0.0, 4.5, 10000), ("870323", 8.0, 9.0, 6000),
    ("870899", 8.0, 7.0, 4000), ("871200", 8.0, 10.0, 2000), ("901890", 8.0, 80.0, 300),
    ("940360", 8.0, 3.0, 5000), ("940540", 8.0, 8.0, 2000), ("950300", 8.0, 6.0, 3000),
)
# Origin weight and the free-trade agreement its goods can claim ("A" = none: MFN rate only).
ORIGINS = {
    "CN": (25, "FCN1"), "US": (8, "FUS1"), "VN": (6, "FAS1"), "JP": (5, "A"), "DE": (4, "FEU1"),
    "IN": (4, "A"), "IT": (3, "FEU1"), "FR": (3, "FEU1"), "TH": (3, "FAS1"), "ID": (3, "FAS1"),
    "MY": (3, "FAS1"), "TW": (3, "A"), "KR": (3, "A"), "ES": (2, "FEU1"), "TR": (2, "A"),
    "BD": (2, "A"), "MX": (2, "A"), "BR": (2, "A"), "CL": (2, "FCL1"), "AU": (2, "FAU1"),
    "GB": (2, "A"), "NL": (1.5, "FEU1"), "NZ": (1.5, "FAU1"), "CA": (1.5, "A"), "PK": (1, "A"),
    "PE": (1, "FCL1"), "AR": (1, "A"), "ZA": (1, "A"),
}
HUBS = ("SG", "HK", "NL", "AE", "PA")
# Office ID, share of items, transport modes (10 sea, 20 rail, 30 road, 40 air, 50 post) with weights.
OFFICES = (
    (110, 30, {10: 95, 30: 5}), (120, 15, {10: 95, 30: 5}), (130, 8, {10: 100}), (140, 5, {10: 100}),
    (210, 12, {40: 100}), (220, 4, {40: 100}), (310, 3, {20: 80, 30: 20}), (320, 6, {30: 100}),
    (330, 4, {30: 100}), (410, 6, {50: 100}), (420, 5, {40: 60, 50: 40}), (510, 1, {10: 60, 30: 40}),
    (520, 1, {10: 60, 30: 40}),
)
PROCESS_TYPES = {"A": 70, "B": 20, "C": 10}
IMPORT_TYPES = {"11": 80, "21": 12, "29": 8}
IMPORT_USES = {"21": 60, "11": 25, "31": 15}
PAYMENT_TYPES = {"11": 70, "13": 15, "43": 10, "44": 5}
N_COURIERS = 8


@dataclass
class IslasWorld:
    train: pd.DataFrame  # the rows of islas_train.csv, in file order, as written
    test: pd.DataFrame  # the rows of islas_test.csv
    bad_rows: pd.DataFrame  # one per injected fault: file, row_number (1-based, as ingest counts), kind, column,
    #                         reason (the quarantine reason code ingest must give), value
    truth: pd.DataFrame  # hidden, in filing order: each row's fraud probability and risky pair flags, and with a
    #                      scheme, whether the row is the scheme's and its typology ("new_scheme", "fraud" or ""
    #                      where no fraud); never written
    test_start: pd.Timestamp
    drift_date: pd.Timestamp | None = None  # the emerging scheme's first day (None: no scheme)

    @property
    def arrivals(self) -> pd.DataFrame:
        """The test file's rows as they arrive, before any control: the export's layout without its label columns."""
        return self.test.drop(columns=list(LABEL_COLUMNS))

    def injected(self) -> dict[str, int]:
        """How many rows of each quarantine reason were injected."""
        return {k: int(v) for k, v in self.bad_rows["reason"].value_counts().sort_index().items()}


def _weighted(rng: np.random.Generator, weights: dict | np.ndarray, size: int) -> np.ndarray:
    keys = np.array(list(weights)) if isinstance(weights, dict) else np.arange(len(weights))
    w = np.array(list(weights.values()) if isinstance(weights, dict) else weights, dtype=float)
    return keys[rng.choice(len(keys), size=size, p=w / w.sum())]


def _slots(rng: np.random.Generator, owners: int, pool: np.ndarray, most: int, extra_rate: float,
           least: int = 1, evenness: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Give each owner `least` + Poisson(extra_rate) (at most `most`) partners drawn by pool weight, with
    Dirichlet shares: a partner matrix (owners × most) and a share matrix (zero for unused slots)."""
    count = np.minimum(least + rng.poisson(extra_rate, owners), most)
    partners = _weighted(rng, pool, owners * most).reshape(owners, most)
    shares = rng.dirichlet(np.full(most, evenness), owners) * (np.arange(most) < count[:, None])
    for j in range(1, most):  # a partner drawn twice gets one slot with both shares
        for k in range(j):
            dup = partners[:, j] == partners[:, k]
            shares[dup, k] += shares[dup, j]
            shares[dup, j] = 0.0
    return partners, shares / shares.sum(axis=1, keepdims=True)


def _draw(rng: np.random.Generator, owner: np.ndarray, partners: np.ndarray, shares: np.ndarray) -> np.ndarray:
    cum = np.cumsum(shares, axis=1)[owner]
    slot = np.minimum((rng.random(len(owner))[:, None] > cum).sum(axis=1), partners.shape[1] - 1)
    return partners[owner, slot]


def _codes(rng: np.random.Generator, n: int, width: int = 7) -> np.ndarray:
    """n distinct upper-case alphanumeric ids, like the benchmark's anonymised ones."""
    alphabet = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        for code in ("".join(c) for c in alphabet[rng.integers(0, len(alphabet), (n, width))]):
            if code not in seen and len(out) < n:
                seen.add(code)
                out.append(code)
    return np.array(out)


def _rake(eta: np.ndarray, groups: list[np.ndarray], target: float, rounds: int = 40) -> np.ndarray:
    """Add one logit offset per entity of each grouping until every entity's mean probability is `target`."""
    eta = eta.copy()
    for _ in range(rounds):
        for g in groups:
            p = 1 / (1 + np.exp(-eta))
            size = np.bincount(g)
            mean = np.bincount(g, p) / np.maximum(size, 1)
            slope = np.bincount(g, p * (1 - p)) / np.maximum(size, 1)
            eta += np.clip((target - mean) / np.maximum(slope, 0.02), -2, 2)[g]
    return eta


def _risky_pairs(rng: np.random.Generator, owner: np.ndarray, partner: np.ndarray,
                 share: float | np.ndarray) -> np.ndarray:
    """Whether each row's (owner, partner) pair is risky, such that every owner's risky share of rows is close
    to `share` (one for all, or one per owner): the owner's pairs are laid end to end on [0, 1) by row share,
    in random order, and those whose middle falls in a window of width `share` at a random start are risky
    (systematic sampling). So an owner is risky with some partners and clean with others."""
    pairs = pd.DataFrame({"owner": owner, "partner": partner}).value_counts().rename("rows").reset_index()
    pairs = pairs.iloc[rng.permutation(len(pairs))].reset_index(drop=True)
    total = pairs.groupby("owner")["rows"].transform("sum").to_numpy()
    middle = (pairs.groupby("owner")["rows"].cumsum().to_numpy() - pairs["rows"].to_numpy() / 2) / total
    start = rng.random(pairs["owner"].max() + 1)[pairs["owner"].to_numpy()]
    width = np.broadcast_to(share, pairs["owner"].max() + 1)[pairs["owner"].to_numpy()]
    pairs["risky"] = (middle - start) % 1.0 < width
    risky = pairs.set_index(["owner", "partner"])["risky"]
    return risky.reindex(pd.MultiIndex.from_arrays([owner, partner])).to_numpy()


def simulate_islas(rows: int = 50_000, seed: int = 7, scheme: bool = False) -> IslasWorld:
    """Simulate `rows` goods items over 18 months; the same seed gives the same world (`scheme`: with the emerging
    scheme of the module's docstring, in place of about 1 % of the items filed from its start)."""
    if rows < 500:
        raise ValueError("the islas world needs at least 500 rows")
    rng = np.random.default_rng(seed)
    n = rows
    hs6 = np.array([g[0] for g in GOODS])
    heading_of = np.unique([h[:4] for h in hs6], return_inverse=True)[1]
    n_heading = heading_of.max() + 1
    origin_codes = np.array(list(ORIGINS))
    office_codes = np.array([o[0] for o in OFFICES])

    # Entities and who trades with whom.
    n_imp, n_dec, n_sel = max(30, n // 60), max(12, n // 600), max(40, n // 60)
    activity = np.minimum(rng.pareto(1.2, n_imp) + 1, 60)
    heading_pop = rng.lognormal(0, 0.7, n_heading)
    imp_headings, imp_heading_share = _slots(rng, n_imp, heading_pop, 10, 3.0, least=3)
    office_share = np.array([o[1] for o in OFFICES], float)
    origin_share = np.array([w for w, _ in ORIGINS.values()], float)
    imp_offices, imp_office_share = _slots(rng, n_imp, office_share, 4, 1.0, least=2)
    imp_decls, imp_decl_share = _slots(rng, n_imp, np.minimum(rng.pareto(1.0, n_dec) + 1, 20), 4, 1.0, least=2)
    imp_sellers, imp_seller_share = _slots(rng, n_imp, np.minimum(rng.pareto(1.5, n_sel) + 1, 20), 8, 2.0, least=3)
    sel_origins, sel_origin_share = _slots(rng, n_sel, origin_share, 5, 1.5, least=2)
    goods_of_heading = [np.flatnonzero(heading_of == h) for h in range(n_heading)]
    imp_start = np.where(rng.random(n_imp) < 0.10, rng.integers(0, 400, n_imp), 0)  # newcomers
    imp_use = _weighted(rng, IMPORT_USES, n_imp)
    imp_courier = rng.integers(0, N_COURIERS, n_imp)
    imp_price = rng.lognormal(0, 0.25, n_imp)

    # Goods items.
    t0 = np.datetime64(START, "D")
    days = (pd.Timestamp(START) + pd.DateOffset(months=MONTHS) - pd.Timestamp(START)).days
    imp = _weighted(rng, activity, n)
    day = imp_start[imp] + (rng.random(n) * (days - imp_start[imp])).astype(int)
    heading = _draw(rng, imp, imp_headings, imp_heading_share)
    first = np.array([g[0] for g in goods_of_heading])[heading]
    several = np.array([len(g) > 1 for g in goods_of_heading])[heading]
    second = np.array([goods_of_heading[h][-1] for h in range(n_heading)])[heading]
    goods = np.where(several & (rng.random(n) < 0.4), second, first)
    office = _draw(rng, imp, imp_offices, imp_office_share)
    decl = _draw(rng, imp, imp_decls, imp_decl_share)
    decl = np.where(rng.random(n) < 0.05, rng.integers(0, n_dec, n), decl)  # a stand-in broker now and then
    seller = _draw(rng, imp, imp_sellers, imp_seller_share)
    origin = _draw(rng, seller, sel_origins, sel_origin_share)

    # Fraud: risky pairs, raked so that no importer, declarant, office, heading or origin stands out on its
    # own, then a row-level shock and Bernoulli draws (label noise).
    risk = {
        "declarant_office": _risky_pairs(rng, decl, office, PAIR_EFFECTS["declarant_office"][1]),
        "seller_origin": _risky_pairs(rng, seller, origin, PAIR_EFFECTS["seller_origin"][1]),
    }
    # Importers get risky headings in what their brokers' and sellers' risky pairs leave of the common share.
    elsewhere = risk["declarant_office"] | risk["seller_origin"]
    exposed = np.bincount(imp, elsewhere, n_imp) / np.maximum(np.bincount(imp, minlength=n_imp), 1)
    room = np.clip(RISKY_SHARE - exposed, 0.0, 1.0)
    risk["importer_heading"] = _risky_pairs(rng, imp, heading, room)
    p_pairs = np.clip(BASE_RATE + sum(PAIR_EFFECTS[f][0] * risk[f] for f in risk), 0.005, 0.97)
    eta = np.log(p_pairs / (1 - p_pairs)) + rng.normal(0, NOISE, n)
    eta = _rake(eta, [imp, decl, office, heading, origin], FRAUD_RATE)
    p_fraud = 1 / (1 + np.exp(-eta))
    fraud = rng.random(n) < p_fraud

    # What is declared.
    mode_tables = {o[0]: o[2] for o in OFFICES}
    mode = np.zeros(n, dtype=np.int64)
    for code, table in mode_tables.items():
        at = office_codes[office] == code
        mode[at] = _weighted(rng, table, int(at.sum()))
    small = np.isin(mode, [40, 50])
    mass = np.array([g[3] for g in GOODS], float)[goods] * rng.lognormal(0, 0.9, n) * np.where(small, 0.03, 1.0)
    mass = np.round(np.maximum(mass, 0.1), 1)
    unit_price = np.array([g[2] for g in GOODS])[goods] * imp_price[imp] * rng.lognormal(0, 0.5, n)
    unit_price *= np.where(fraud, rng.lognormal(-0.12, 0.25, n), 1.0)  # a weak undervaluation signal
    price = np.round(mass * unit_price, 0)
    unknown = np.zeros(n, dtype=bool)
    unknown[rng.choice(n, max(3, round(n * UNKNOWN_ORIGIN_SHARE)), replace=False)] = True  # origin not known: ZZ
    origin_name = np.where(unknown, "ZZ", origin_codes[origin])
    fta = np.array([ORIGINS[c][1] for c in origin_codes])[origin]
    claims = (fta != "A") & (rng.random(n) < 0.45) & ~unknown
    tax_type = np.where(claims, fta, "A")
    mfn = np.array([g[1] for g in GOODS])[goods]
    tax_rate = np.where(claims, np.round(mfn * 0.3, 1), mfn)
    indicator = np.where(claims, "B", _weighted(rng, {"G": 85, "E": 10, "Y": 5}, n))
    departure = np.where(rng.random(n) < 0.15, np.array(HUBS)[rng.integers(0, len(HUBS), n)], origin_codes[origin])
    at_stake = price * tax_rate / 100
    # Critical Fraud: 0 none, 1 fraud, 2 critical fraud (more likely where more tax is at stake).
    p_critical = 0.1 + 0.6 * pd.Series(at_stake).rank(pct=True).to_numpy()
    critical = np.where(fraud, np.where(rng.random(n) < p_critical, 2, 1), 0)
    courier = np.where(small & (rng.random(n) < 0.7), np.char.add("C", (imp_courier[imp] + 101).astype(str)), "")
    typology = np.where(fraud, "fraud", "").astype(object)
    in_scheme, drift_date, n_new_sellers = np.zeros(n, dtype=bool), None, 0
    if scheme:
        srng = np.random.default_rng([seed, SCHEME_STREAM])
        start_day, at, items = _emerging_scheme(
            srng, day, days, ~unknown, imp, imp_start, imp_headings, imp_heading_share, imp_offices, imp_office_share,
            imp_decls, imp_decl_share, heading_of, n_sel, origin_share)
        declared = _declare_scheme_items(srng, items, imp_price, imp_courier, np.sort(price * tax_rate / 100))
        for name, values in {**items, **declared}.items():
            {"imp": imp, "decl": decl, "office": office, "goods": goods, "seller": seller, "origin": origin,
             "fraud": fraud, "p_fraud": p_fraud, "mode": mode, "mass": mass, "price": price, "tax_rate": tax_rate,
             "tax_type": tax_type, "indicator": indicator, "departure": departure, "origin_name": origin_name,
             "critical": critical, "courier": courier}[name][at] = values
        typology[at] = np.where(items["fraud"], "new_scheme", "")
        in_scheme[at] = True
        risk = {f: flags & ~in_scheme for f, flags in risk.items()}  # the scheme's fraud is its own, no old pair's
        drift_date = pd.Timestamp(START) + pd.Timedelta(days=start_day)
        n_new_sellers = int(items["seller"].max()) + 1 - n_sel

    # Assemble in filing order; declaration ids rise with time.
    order = np.argsort(day, kind="stable")
    date = pd.to_datetime(t0 + day.astype("timedelta64[D]")).strftime("%Y-%m-%d").to_numpy()
    ids = 10_000_000 + np.sort(rng.choice(90_000_000, n, replace=False))
    imp_ids, dec_ids, sel_ids = _codes(rng, n_imp), _codes(rng, n_dec), _codes(rng, n_sel)
    if n_new_sellers:
        sel_ids = np.concatenate([sel_ids, _new_codes(srng, n_new_sellers, taken=set(sel_ids))])
    frame = pd.DataFrame({
        "Declaration ID": ids.astype(str),
        "Date": date[order],
        "Office ID": office_codes[office][order],
        "Process Type": _weighted(rng, PROCESS_TYPES, n),
        "Import Type": _weighted(rng, IMPORT_TYPES, n),
        "Import Use": imp_use[imp][order],
        "Payment Type": _weighted(rng, PAYMENT_TYPES, n),
        "Mode of Transport": mode[order],
        "Declarant ID": dec_ids[decl][order],
        "Importer ID": imp_ids[imp][order].astype(object),
        "Seller ID": sel_ids[seller][order],
        "Courier ID": pd.Series(courier[order]).replace("", None).to_numpy(),
        "HS6 Code": pd.Series(hs6[goods][order]).str.lstrip("0").to_numpy().astype(object),
        "Country of Departure": departure[order],
        "Country of Origin": origin_name[order],
        "Tax Rate": tax_rate[order],
        "Tax Type": tax_type[order],
        "Country of Origin Indicator": indicator[order],
        "Net Mass": mass[order],
        "Item Price": price[order],
        "Fraud": fraud.astype(np.int64)[order],
        "Critical Fraud": critical.astype(np.int64)[order],
    })
    truth = pd.DataFrame({"Declaration ID": frame["Declaration ID"], "p_fraud": p_fraud[order],
                          **{f: v[order] for f, v in risk.items()}})
    if scheme:
        truth["scheme"], truth["typology"] = in_scheme[order], typology[order]

    test_start = pd.Timestamp(START) + pd.DateOffset(months=MONTHS - TEST_MONTHS)
    n_train = int(np.searchsorted(day[order], (test_start - pd.Timestamp(START)).days))
    bad = _inject(rng, frame, n_train, exclude=np.flatnonzero(frame["Country of Origin"].to_numpy() == "ZZ"))
    train = frame.iloc[:n_train].reset_index(drop=True)
    test = frame.iloc[n_train:].reset_index(drop=True)
    return IslasWorld(train, test, bad, truth, test_start, drift_date)


def _emerging_scheme(rng: np.random.Generator, day: np.ndarray, days: int, eligible: np.ndarray, imp: np.ndarray,
                     imp_start: np.ndarray, imp_headings: np.ndarray, imp_heading_share: np.ndarray,
                     imp_offices: np.ndarray, imp_office_share: np.ndarray, imp_decls: np.ndarray,
                     imp_decl_share: np.ndarray, heading_of: np.ndarray, n_sel: int,
                     origin_share: np.ndarray) -> tuple[int, np.ndarray, dict[str, np.ndarray]]:
    """The scheme's first day, the rows (of `eligible` ones filed from then on) it takes the place of, and who
    files what in them: importer, declarant, office, goods, seller (new ones numbered from `n_sel`), origin, fraud
    and its probability."""
    start = int(days * rng.uniform(*SCHEME_START))
    n_imp = len(imp_start)
    before = np.bincount(imp[day < start], minlength=n_imp)
    # Established: active from the first day, and among the busier half of the importers before the start.
    established = np.flatnonzero((imp_start == 0) & (before >= np.median(before[before > 0])))
    ring = rng.choice(established, min(len(established), rng.integers(SCHEME_RING[0], SCHEME_RING[1] + 1)),
                      replace=False)
    bought = set(imp_headings[ring][imp_heading_share[ring] > 0].tolist())
    duty = np.array([g[1] for g in GOODS])
    never = np.array([h for h in range(heading_of.max() + 1) if h not in bought])
    heading_duty = np.array([duty[heading_of == h].max() for h in never])
    heading = rng.choice(never, p=(heading_duty + 1) / (heading_duty + 1).sum())  # undervaluation pays on duty
    goods_of_heading = np.flatnonzero(heading_of == heading)
    lead = ring[:1]  # the ring's broker and office: those the first member already files with
    declarant = _draw(rng, lead, imp_decls, imp_decl_share)[0]
    office = _draw(rng, lead, imp_offices, imp_office_share)[0]
    n_sellers = rng.integers(SCHEME_SELLERS[0], SCHEME_SELLERS[1] + 1)
    seller_origin = _weighted(rng, origin_share, n_sellers)
    fraud_rate = rng.uniform(*SCHEME_FRAUD_RATE)

    at = np.flatnonzero(eligible & (day >= start) & (rng.random(len(day)) < rng.uniform(*SCHEME_SHARE)))
    k = len(at)
    seller = _weighted(rng, rng.dirichlet(np.full(n_sellers, 3.0)), k)
    fraud = rng.random(k) < fraud_rate
    items = {
        "imp": ring[_weighted(rng, rng.dirichlet(np.full(len(ring), 3.0)), k)],
        "decl": np.full(k, declarant), "office": np.full(k, office),
        "goods": np.where(rng.random(k) < 0.4, goods_of_heading[-1], goods_of_heading[0]),
        "seller": n_sel + seller, "origin": seller_origin[seller],
        "fraud": fraud, "p_fraud": np.full(k, fraud_rate),
    }
    return start, at, items


def _declare_scheme_items(rng: np.random.Generator, items: dict[str, np.ndarray], imp_price: np.ndarray,
                          imp_courier: np.ndarray, sorted_at_stake: np.ndarray) -> dict[str, np.ndarray]:
    """What the scheme's items declare: drawn as every other item's are, except that its frauds are undervalued
    by about half (not the weak signal of the other frauds)."""
    k, goods, origin, imp = len(items["goods"]), items["goods"], items["origin"], items["imp"]
    mode = _weighted(rng, OFFICES[items["office"][0] if k else 0][2], k)  # one office: its transport modes
    small = np.isin(mode, [40, 50])
    mass = np.array([g[3] for g in GOODS], float)[goods] * rng.lognormal(0, 0.9, k) * np.where(small, 0.03, 1.0)
    mass = np.round(np.maximum(mass, 0.1), 1)
    unit_price = np.array([g[2] for g in GOODS])[goods] * imp_price[imp] * rng.lognormal(0, 0.5, k)
    unit_price *= np.where(items["fraud"], rng.lognormal(np.log(SCHEME_UNDERVALUATION), 0.2, k), 1.0)
    price = np.round(mass * unit_price, 0)
    origin_codes = np.array(list(ORIGINS))
    fta = np.array([ORIGINS[c][1] for c in origin_codes])[origin]
    claims = (fta != "A") & (rng.random(k) < 0.45)
    mfn = np.array([g[1] for g in GOODS])[goods]
    tax_rate = np.where(claims, np.round(mfn * 0.3, 1), mfn)
    at_stake = price * tax_rate / 100
    p_critical = 0.1 + 0.6 * np.searchsorted(sorted_at_stake, at_stake) / max(len(sorted_at_stake), 1)
    return {
        "mode": mode, "mass": mass, "price": price, "tax_rate": tax_rate, "tax_type": np.where(claims, fta, "A"),
        "indicator": np.where(claims, "B", _weighted(rng, {"G": 85, "E": 10, "Y": 5}, k)),
        "departure": np.where(rng.random(k) < 0.15, np.array(HUBS)[rng.integers(0, len(HUBS), k)],
                              origin_codes[origin]),
        "origin_name": origin_codes[origin],
        "critical": np.where(items["fraud"], np.where(rng.random(k) < p_critical, 2, 1), 0),
        "courier": np.where(small & (rng.random(k) < 0.7), np.char.add("C", (imp_courier[imp] + 101).astype(str)), ""),
    }


def _new_codes(rng: np.random.Generator, n: int, taken: set[str]) -> np.ndarray:
    """n ids like `_codes`'s, none of them in `taken`."""
    out: list[str] = []
    while len(out) < n:
        out += [c for c in _codes(rng, n) if c not in taken and c not in out][: n - len(out)]
    return np.array(out)


def _inject(rng: np.random.Generator, frame: pd.DataFrame, n_train: int, exclude: np.ndarray) -> pd.DataFrame:
    """Break a few rows, one fault each, in place; return what was broken where."""
    n_bad = max(len(BAD_KINDS), round(len(frame) * BAD_ROW_SHARE))
    candidates = np.setdiff1d(np.arange(len(frame)), exclude)
    rows = np.sort(rng.choice(candidates, n_bad, replace=False))
    kinds = np.array(list(BAD_KINDS))[rng.permutation(np.arange(n_bad) % len(BAD_KINDS))]
    records = []
    for row, kind in zip(rows, kinds, strict=True):
        column, reason = BAD_KINDS[kind]
        col = frame.columns.get_loc(column)
        if kind == "malformed_date":
            frame.iat[row, col] = frame.iat[row, col][:8] + "32"  # day 32 of the month
        elif kind == "negative_price":
            frame.iat[row, col] = -max(1.0, frame.iat[row, col])
        elif kind == "hs_code_letters":
            code = frame.iat[row, col]
            frame.iat[row, col] = code[:-3] + "X" + code[-2:]
        elif kind == "empty_importer":
            frame.iat[row, col] = None
        else:
            frame.iat[row, col] = 7
        in_test = row >= n_train
        records.append({"file": FILES["test" if in_test else "train"], "row_number": int(row - n_train * in_test) + 1,
                        "kind": kind, "column": column, "reason": reason, "value": str(frame.iat[row, col])})
    return pd.DataFrame(records, columns=["file", "row_number", "kind", "column", "reason", "value"])


def write_islas(world: IslasWorld, out_dir: Path) -> dict[str, Path]:
    """Write islas_train.csv, islas_test.csv, islas_arrivals.csv (the test file's rows without their labels) and a
    copy of the mapping a user would ingest all three with."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / file for name, file in FILES.items()}
    world.train.to_csv(paths["train"], index=False)
    world.test.to_csv(paths["test"], index=False)
    world.arrivals.to_csv(paths["arrivals"], index=False)
    shutil.copyfile(MAPPING_PATH, paths["mapping"])
    return paths
