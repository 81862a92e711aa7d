"""Reference data of the simulated world: real HS subheadings, ISO countries, ports, offices and carriers.

Duty rates and prices are plausible orders of magnitude for an Andean importing country, not an official tariff.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Goods:
    hs_code: str
    description: str
    duty: float  # MFN ad valorem rate, as a fraction of customs value
    usd_per_kg: float  # reference unit price at a neutral origin
    kg_per_unit: float  # for the quantity field; 1.0 for goods traded by weight
    lot_kg: float  # typical net mass of one goods item on a declaration
    decoy: str | None = None  # lower-duty heading it gets misclassified into
    anti_dumping: float = 0.0  # extra duty on Chinese origin


GOODS: tuple[Goods, ...] = (
    # food and beverages
    Goods("020230", "Frozen boneless bovine meat", 0.20, 6.5, 1.0, 18000),
    Goods("030617", "Frozen shrimps and prawns", 0.15, 9.0, 1.0, 12000),
    Goods("080810", "Fresh apples", 0.10, 1.2, 1.0, 20000),
    Goods("100630", "Semi- or wholly milled rice", 0.20, 0.6, 1.0, 25000),
    Goods("170199", "Refined cane or beet sugar", 0.20, 0.5, 1.0, 25000),
    Goods("220421", "Wine in containers of 2 l or less", 0.15, 6.0, 1.2, 9000, decoy="220900"),
    Goods("220900", "Vinegar", 0.05, 1.5, 1.0, 9000),
    Goods("220830", "Whiskies", 0.15, 12.0, 1.4, 6000),
    # chemicals, cosmetics and pharmaceuticals
    Goods("300490", "Medicaments in measured doses, n.e.s.", 0.05, 45.0, 0.2, 1500),
    Goods("330499", "Beauty or make-up preparations", 0.15, 18.0, 0.3, 2500, decoy="300490"),
    Goods("392690", "Other articles of plastics", 0.10, 5.0, 0.5, 6000),
    # tyres, leather, apparel and footwear
    Goods("401110", "New pneumatic tyres for motor cars", 0.15, 3.5, 9.0, 14000, anti_dumping=0.65),
    Goods("420221", "Handbags with outer surface of leather", 0.15, 80.0, 0.8, 600),
    Goods("600622", "Knitted fabrics of cotton, dyed", 0.05, 7.0, 1.0, 8000),
    Goods("610910", "T-shirts of cotton, knitted", 0.15, 14.0, 0.2, 3000, decoy="600622"),
    Goods("620342", "Men's trousers of cotton", 0.15, 15.0, 0.5, 3000),
    Goods("640399", "Footwear with leather uppers", 0.15, 25.0, 0.9, 2500, decoy="640690", anti_dumping=0.80),
    Goods("640299", "Footwear with rubber or plastic uppers", 0.10, 9.0, 0.6, 4000, anti_dumping=0.60),
    Goods("640690", "Parts of footwear", 0.05, 6.0, 1.0, 3000),
    # ceramics, steel and aluminium
    Goods("691110", "Tableware of porcelain", 0.15, 4.0, 0.4, 9000, anti_dumping=0.90),
    Goods("720839", "Flat-rolled iron, hot-rolled, under 3 mm", 0.05, 0.7, 1.0, 60000, anti_dumping=0.45),
    Goods("721049", "Flat-rolled iron, zinc-coated", 0.05, 0.9, 1.0, 50000, anti_dumping=0.40),
    Goods("730630", "Welded tubes of iron or steel", 0.10, 1.1, 1.0, 40000, anti_dumping=0.55),
    Goods("760612", "Plates of aluminium alloys", 0.05, 3.2, 1.0, 25000, anti_dumping=0.35),
    # machinery and electronics
    Goods("841810", "Combined refrigerator-freezers", 0.15, 3.5, 65.0, 5000, decoy="841899"),
    Goods("841899", "Parts of refrigerating equipment", 0.05, 6.0, 1.0, 3000),
    Goods("843149", "Parts of cranes and excavators", 0.0, 6.0, 1.0, 8000),
    Goods("847130", "Portable computers", 0.0, 180.0, 2.5, 400),
    Goods("850440", "Static converters", 0.05, 25.0, 1.0, 1500),
    Goods("851713", "Smartphones", 0.0, 600.0, 0.3, 150),
    Goods("852872", "Television receivers, colour", 0.15, 12.0, 14.0, 4000, decoy="852859"),
    Goods("852859", "Monitors, not for computers", 0.0, 14.0, 6.0, 2000),
    Goods("854143", "Photovoltaic cells assembled in modules", 0.0, 4.5, 22.0, 15000),
    # vehicles, optics, furniture and toys
    Goods("870323", "Cars, spark-ignition, 1500-3000 cc", 0.35, 14.0, 1350.0, 8000, decoy="870380"),
    Goods("870324", "Cars, spark-ignition, over 3000 cc", 0.40, 22.0, 1900.0, 5700),
    Goods("870380", "Cars with electric motor only", 0.0, 26.0, 1700.0, 5100),
    Goods("870899", "Parts and accessories of motor vehicles", 0.10, 7.0, 1.0, 6000),
    Goods("871200", "Bicycles", 0.15, 6.0, 14.0, 4000, anti_dumping=0.70),
    Goods("900490", "Spectacles and goggles", 0.10, 30.0, 0.05, 400),
    Goods("940360", "Other wooden furniture", 0.15, 3.0, 20.0, 7000),
    Goods("950300", "Toys", 0.10, 8.0, 0.5, 5000),
)

# Price level of goods by origin, relative to the reference price.
ORIGIN_PRICE_LEVEL: dict[str, float] = {
    "CN": 0.75, "VN": 0.80, "IN": 0.80, "BD": 0.70, "PK": 0.75, "TH": 0.85, "MY": 0.90, "ID": 0.85,
    "KR": 1.10, "JP": 1.25, "TW": 1.05, "TR": 0.90, "MX": 0.95, "BR": 0.95, "US": 1.15, "DE": 1.30,
    "IT": 1.30, "FR": 1.30, "ES": 1.10, "GB": 1.20, "NL": 1.20, "CH": 1.40, "CL": 1.00, "PE": 0.90,
    "EC": 0.90, "AR": 1.00, "NZ": 1.05, "AU": 1.10, "VE": 0.90,
}

# Sectors: what an importer trades, and where it buys.
SECTORS: dict[str, dict[str, dict[str, float]]] = {
    "food": {
        "goods": {"020230": 2, "030617": 2, "080810": 3, "100630": 2, "170199": 2},
        "origins": {"US": 3, "BR": 2, "AR": 2, "CL": 3, "EC": 2, "PE": 1, "VN": 1, "NZ": 1, "IN": 1},
    },
    "beverages": {
        "goods": {"220421": 4, "220900": 1, "220830": 3},
        "origins": {"CL": 3, "AR": 2, "ES": 2, "FR": 2, "IT": 2, "GB": 2, "US": 1},
    },
    "pharma_cosmetics": {
        "goods": {"300490": 4, "330499": 4, "392690": 1},
        "origins": {"US": 3, "DE": 2, "FR": 2, "IN": 2, "CH": 2, "MX": 1, "CN": 1, "KR": 1},
    },
    "apparel_footwear": {
        "goods": {"610910": 3, "620342": 2, "600622": 2, "640399": 2, "640299": 2, "640690": 1, "420221": 1},
        "origins": {"CN": 5, "BD": 2, "VN": 3, "IN": 2, "TR": 1, "PK": 1, "PE": 1, "IT": 1, "BR": 1},
    },
    "metals": {
        "goods": {"720839": 3, "721049": 3, "730630": 3, "760612": 2},
        "origins": {"CN": 5, "BR": 2, "MX": 2, "KR": 1, "TR": 1, "IN": 1, "JP": 1, "US": 1},
    },
    "electronics": {
        "goods": {"847130": 3, "851713": 3, "852872": 3, "852859": 1, "850440": 2, "854143": 1},
        "origins": {"CN": 6, "VN": 2, "KR": 2, "TW": 1, "MY": 1, "MX": 1, "US": 1, "JP": 1},
    },
    "automotive": {
        "goods": {"870323": 4, "870324": 1, "870380": 2, "870899": 4, "401110": 2},
        "origins": {"JP": 2, "KR": 2, "MX": 2, "CN": 3, "DE": 2, "US": 2, "BR": 1, "IN": 1},
    },
    "household": {
        "goods": {"691110": 2, "841810": 2, "841899": 1, "940360": 2, "950300": 3, "871200": 2, "900490": 1},
        "origins": {"CN": 6, "VN": 1, "MY": 1, "TH": 1, "IT": 1, "US": 1, "MX": 1, "BR": 1},
    },
    "machinery": {
        "goods": {"843149": 4, "850440": 2, "870899": 1, "392690": 1},
        "origins": {"US": 3, "DE": 3, "CN": 3, "JP": 2, "IT": 1, "BR": 1, "KR": 1},
    },
}
SECTOR_WEIGHTS: dict[str, float] = {
    "food": 1.2, "beverages": 0.6, "pharma_cosmetics": 0.8, "apparel_footwear": 1.4, "metals": 0.7,
    "electronics": 1.2, "automotive": 0.9, "household": 1.3, "machinery": 0.9,
}

# Seaports (UN/LOCODE) of each origin, and the hubs where cargo is transshipped.
PORTS: dict[str, tuple[str, ...]] = {
    "CN": ("CNSHA", "CNNGB", "CNYTN", "CNTAO"), "VN": ("VNSGN", "VNHPH"), "IN": ("INNSA", "INMUN"),
    "BD": ("BDCGP",), "PK": ("PKKHI",), "TH": ("THLCH",), "MY": ("MYPKG", "MYTPP"), "ID": ("IDTPP",),
    "KR": ("KRPUS",), "JP": ("JPYOK", "JPTYO"), "TW": ("TWKHH",), "TR": ("TRMER",), "MX": ("MXZLO", "MXVER"),
    "BR": ("BRSSZ",), "US": ("USMIA", "USHOU", "USLAX"), "DE": ("DEHAM",), "IT": ("ITGOA",), "FR": ("FRLEH",),
    "ES": ("ESVLC", "ESALG"), "GB": ("GBFXT",), "NL": ("NLRTM",), "CH": ("CHBSL",), "CL": ("CLSAI", "CLVAP"),
    "PE": ("PECLL",), "EC": ("ECGYE",), "VE": ("VEPBL",), "AR": ("ARBUE",), "NZ": ("NZAKL",), "AU": ("AUSYD",),
}
HUBS: tuple[str, ...] = ("PAONX", "PABLB", "SGSIN", "MYPKG", "AEJEA", "HKHKG")
# Countries that Chinese goods are re-labelled as, to evade anti-dumping duty.
DISGUISE_ORIGINS: dict[str, float] = {"VN": 3, "MY": 2, "TH": 2, "ID": 1, "KR": 1, "TW": 1}

# Customs offices of the importing country (Colombia-like): code, port LOCODE, transport mode, traffic share.
OFFICES: tuple[tuple[str, str, str, float], ...] = (
    ("CO-CTG", "COCTG", "sea", 0.30),
    ("CO-BUN", "COBUN", "sea", 0.22),
    ("CO-BAQ", "COBAQ", "sea", 0.12),
    ("CO-SMR", "COSMR", "sea", 0.05),
    ("CO-BOG", "COBOG", "air", 0.17),
    ("CO-MDE", "COMDE", "air", 0.05),
    ("CO-CLO", "COCLO", "air", 0.03),
    ("CO-IPI", "COIPI", "road", 0.04),
    ("CO-CUC", "COCUC", "road", 0.02),
)
ROAD_ORIGINS: dict[str, tuple[str, ...]] = {"CO-IPI": ("EC", "PE"), "CO-CUC": ("VE",)}
VAT = 0.19  # charged on value plus duties; evaded along with the duty
CARRIERS: dict[str, tuple[str, ...]] = {
    "sea": ("MAERSK", "MSC", "CMA CGM", "COSCO", "HAPAG-LLOYD", "EVERGREEN", "ONE", "HMM"),
    "air": ("AVIANCA CARGO", "LATAM CARGO", "LUFTHANSA CARGO", "ATLAS AIR", "DHL AVIATION"),
    "road": ("TRANSANDINA", "CARGA DEL SUR", "TRANSPORTES ORIENTE"),
}
