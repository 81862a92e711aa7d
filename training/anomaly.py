"""The anomaly model: an unsupervised, label-free score of how unusual a declaration is, with reasons in words.

It is a histogram-based outlier score (HBOS, Goldstein & Dengel 2012) over the numeric columns that describe the
declaration itself (values, price-band deviation, mass and documents against the manifest, registry attributes,
route), fitted on every declaration, labelled or not. Pure numpy/pandas; MLflow is imported only by the tracking
functions at the end of this module (`log_anomaly_model`, `register_anomaly`, `load_anomaly`).

How a row is scored, column by column:
- Each column gets a histogram: bin edges at training quantiles, denser in the tails (TAIL_LEVELS) so that the
  rarest 0.1 % has bins of its own, deduplicated; a column with at most `max_bins` distinct values gets one bin per
  value. Values below the training minimum or above its maximum fall in two "outside" bins, missing values in a
  "missing" bin. Counts are Laplace-smoothed (`smoothing` per bin).
- Each in-range bin's density is its count over its width (its count alone for a column of distinct values). Its
  *share* is the training share of rows in bins at most as dense: "a value this unusual is seen in 0.4 % of
  declarations". A missing value's share is the share missing; an outside bin's is its own smoothed share.
- The column's contribution is log(typical_share / share), never below 0: nothing while the value is not among
  the rarest `typical_share` (20 %) of declarations, log(200) ≈ 5.3 for one in a thousand.
Classic HBOS adds −log(normalised density) over every column; shares put the columns on one unit-free scale and are
the number an officer reads, and truncating them (Zaykin et al. 2002, the truncated product method) keeps the
ordinary variation of many typical columns from drowning one extreme one: on the tests' synthetic declarations
with 2 % injected outliers, ROC-AUC 0.93 untruncated, 0.98 at 20 %.

The raw score is the sum of contributions minus its training median (0: a typical declaration). The score is its
percentile among the training rows, in [0, 1]: 0.99 reads "more unusual than 99 % of declarations". Columns with
fewer than two distinct values in training contribute nothing, nor does a column identical in training to one
before it (counted once, not twice).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.contract import LABEL_FIELDS
from features.profiles import PROFILE_COLUMNS, RECENT_DAYS

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from features.build import FeatureSet

# Profile columns computed from control outcomes (features/profiles.py PROFILE_SUFFIXES): an unsupervised model
# must not read labels. The other profile suffixes (volume, volume_90d, days_known) count filings only.
LABEL_DERIVED_SUFFIXES = ("hit_rate", f"hit_rate_{RECENT_DAYS}d", "revenue_rate", "inspections")
FAMILIARITY_COLUMNS = frozenset(PROFILE_COLUMNS)  # see anomaly_columns: left out unless asked for
# Quantile levels of the bin edges: 20 equal-frequency bins, with the outer 5 % split finer on each side.
TAIL_LEVELS = np.unique(np.concatenate([[0.0, 0.001, 0.005, 0.01, 0.025], np.linspace(0.05, 0.95, 19),
                                        [0.975, 0.99, 0.995, 0.999, 1.0]]))
REFERENCE_POINTS = 10_001  # training raw scores kept for the percentile (all of them when fewer)
HIGH_SCORE = 0.99  # the logged share of rows above this score
FORMAT_VERSION = 1


def anomaly_columns(numeric: list[str], familiarity: bool = False) -> list[str]:
    """The numeric columns the anomaly model reads, chosen by name so that any dataset's feature set works.

    Kept: the columns that describe the declaration itself (values, price band, manifest and document checks,
    registry attributes), including the mapping's extras (`xnum_*`: a mapping never takes an extra from a label
    column). Dropped:
    - label fields themselves (features/contract.py LABEL_FIELDS), should a frame carry them;
    - anything computed from control outcomes: a name ending in `_hit_rate`, `_hit_rate_90d`, `_revenue_rate` or
      `_inspections` (LABEL_DERIVED_SUFFIXES), whatever its prefix;
    - the label-free entity profiles (features/profiles.py PROFILE_COLUMNS: `importer_volume`, `lane_days_known`...)
      unless `familiarity`: they grow with time by construction and, 33 correlated columns against about 20, they
      swamp the sum: on simulate(60_000) the score then flags the busiest, oldest entities at the end of the
      history (AUC 0.57 against the fraud label of controlled rows, 0.67 without them);
    - a raw amount whose log twin is present (`declared_value` beside `log_declared_value`): quantile bins do not
      change under a monotone transform, so both would count the same evidence twice."""
    present = set(numeric)
    derived = tuple(f"_{s}" for s in LABEL_DERIVED_SUFFIXES)
    return [c for c in numeric
            if c not in LABEL_FIELDS and not c.endswith(derived)
            and (familiarity or c not in FAMILIARITY_COLUMNS)
            and f"log_{c}" not in present]


@dataclass
class ColumnHistogram:
    """One column's histogram. Bins: 0..len(cuts) in range, then below the minimum, above the maximum, missing."""

    cuts: np.ndarray  # interior bin boundaries, ascending
    low: float  # training minimum
    high: float  # training maximum
    share: np.ndarray  # per bin: training share of rows at least as unusual (see the module docstring)

    def penalty(self, typical_share: float) -> np.ndarray:
        """Per bin, its contribution to the raw score: log(typical_share / share), never below 0."""
        return np.maximum(0.0, np.log(typical_share / self.share))

    def bins(self, values: np.ndarray) -> np.ndarray:
        """Each value's bin (int64)."""
        inside = len(self.cuts) + 1
        found = np.searchsorted(self.cuts, values, side="right")
        found = np.where(values < self.low, inside, found)
        found = np.where(values > self.high, inside + 1, found)
        return np.where(np.isnan(values), inside + 2, found)

    @classmethod
    def fit(cls, values: np.ndarray, max_bins: int, smoothing: float) -> ColumnHistogram | None:
        """The histogram of one training column; None for a column with fewer than two distinct values."""
        present = values[~np.isnan(values)]
        distinct = np.unique(present)
        if len(distinct) < 2:
            return None
        low, high = float(distinct[0]), float(distinct[-1])
        if len(distinct) <= max_bins:  # a value per bin: density is the count itself
            cuts = (distinct[:-1] + distinct[1:]) / 2
            widths = np.ones(len(distinct))
        else:
            edges = np.unique(np.quantile(present, TAIL_LEVELS))
            cuts, widths = edges[1:-1], np.diff(edges)
        histogram = cls(cuts=cuts, low=low, high=high, share=np.ones(len(cuts) + 4))
        counts = np.bincount(histogram.bins(values), minlength=len(cuts) + 4).astype("float64")
        share = (counts + smoothing) / (counts.sum() + smoothing * len(counts))
        inside = len(cuts) + 1
        density = share[:inside] / widths
        order = np.argsort(density, kind="stable")
        cumulative = np.cumsum(share[:inside][order])
        # ties in density share their cumulative share: the last of a tied run holds it
        last_of_tie = np.searchsorted(density[order], density[order], side="right") - 1
        at_least_as_rare = np.empty(inside)
        at_least_as_rare[order] = cumulative[last_of_tie]
        histogram.share = np.minimum(np.concatenate([at_least_as_rare, share[inside:]]), 1.0)
        return histogram

    def to_dict(self) -> dict:
        return {"cuts": self.cuts.tolist(), "low": self.low, "high": self.high, "share": self.share.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> ColumnHistogram:
        return cls(cuts=np.asarray(data["cuts"], dtype="float64"), low=float(data["low"]),
                   high=float(data["high"]), share=np.asarray(data["share"], dtype="float64"))


def _column(X: pd.DataFrame, name: str) -> np.ndarray:
    return pd.to_numeric(X[name], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


@dataclass
class AnomalyModel:
    """HBOS over label-free numeric declaration columns; `fit`, then `score` (percentile in [0, 1]), `explain`."""

    max_bins: int = 20
    smoothing: float = 0.5
    typical_share: float = 0.2  # a column contributes only when its value is rarer than this
    columns: list[str] = field(default_factory=list)  # the columns fitted, including those ignored
    histograms: dict[str, ColumnHistogram] = field(default_factory=dict)  # the columns that contribute
    median: float = 0.0  # training median of the summed contributions
    reference: np.ndarray = field(default_factory=lambda: np.zeros(0))  # sorted training raw scores (a sample)
    rows_fitted: int = 0
    training_share_high: float = 0.0  # training rows above HIGH_SCORE

    @property
    def used(self) -> list[str]:
        """The columns that contribute (not constant in training, nor a copy of an earlier one)."""
        return [c for c in self.columns if c in self.histograms]

    def fit(self, X: pd.DataFrame, columns: list[str] | None = None) -> AnomalyModel:
        """Learn every column's histogram from `X` (default columns: `anomaly_columns` of X's numeric columns)."""
        if columns is None:
            columns = anomaly_columns(list(X.select_dtypes(include=["number", "bool"]).columns))
        self.columns = list(columns)
        self.histograms = {}
        seen: set[bytes] = set()
        for name in self.columns:
            values = _column(X, name)
            digest = hashlib.blake2b(values.tobytes(), digest_size=16).digest()
            if digest in seen:  # a copy of a column already read (the simulator's transshipped and its count)
                continue
            seen.add(digest)
            histogram = ColumnHistogram.fit(values, self.max_bins, self.smoothing)
            if histogram is not None:
                self.histograms[name] = histogram
        self.median = 0.0
        total = self._total(X)
        self.median = float(np.median(total)) if len(total) else 0.0
        raw = np.sort(total - self.median)
        self.rows_fitted = len(raw)
        picks = np.linspace(0, len(raw) - 1, min(len(raw), REFERENCE_POINTS)).round().astype("int64")
        self.reference = raw[picks]
        exact = np.searchsorted(raw, raw, side="left") / max(len(raw), 1)  # each training row's own percentile
        self.training_share_high = float((exact > HIGH_SCORE).mean()) if len(raw) else 0.0
        return self

    def _check(self, X: pd.DataFrame) -> None:
        absent = [c for c in self.used if c not in X.columns]
        if absent:
            raise ValueError(f"anomaly model: the frame lacks fitted column(s) {absent}")

    def _total(self, X: pd.DataFrame) -> np.ndarray:
        self._check(X)
        total = np.zeros(len(X))
        for name, histogram in self.histograms.items():
            total += histogram.penalty(self.typical_share)[histogram.bins(_column(X, name))]
        return total

    def raw_score(self, X: pd.DataFrame) -> np.ndarray:
        """Σ over columns of −log(share), minus its training median: 0 is a typical declaration."""
        return self._total(X) - self.median

    def score(self, X: pd.DataFrame) -> np.ndarray:
        """The share of training rows with a lower raw score, in [0, 1]."""
        if not len(self.reference):
            raise ValueError("anomaly model: not fitted")
        return np.searchsorted(self.reference, self.raw_score(X), side="left") / len(self.reference)

    def contributions(self, X: pd.DataFrame, top: int = 3) -> pd.DataFrame:
        """Per row of X (by position), its `top` columns by contribution to the raw score, largest first: columns
        row, rank, column, value, share (training share at least as unusual), contribution (0 for a value among
        the typical ones), where ("in range", "below", "above", "missing")."""
        self._check(X)
        names = self.used
        top = min(top, len(names))
        if not len(X) or not top:
            return pd.DataFrame({"row": pd.Series(dtype="int64"), "rank": pd.Series(dtype="int64"),
                                 "column": pd.Series(dtype="str"), "value": pd.Series(dtype="float64"),
                                 "share": pd.Series(dtype="float64"), "contribution": pd.Series(dtype="float64"),
                                 "where": pd.Series(dtype="str")})
        values = np.column_stack([_column(X, c) for c in names])
        bins = np.column_stack([self.histograms[c].bins(values[:, j]) for j, c in enumerate(names)])
        share = np.column_stack([self.histograms[c].share[bins[:, j]] for j, c in enumerate(names)])
        penalty = np.maximum(0.0, np.log(self.typical_share / share))
        best = np.argsort(-penalty, axis=1, kind="stable")[:, :top]
        rows = np.repeat(np.arange(len(X)), top)
        chosen = best.ravel()
        inside = np.array([len(self.histograms[c].cuts) + 1 for c in names])
        offset = bins[rows, chosen] - inside[chosen]  # <0 in range, 0 below, 1 above, 2 missing
        where = np.array(["in range", "below", "above", "missing"])[np.where(offset < 0, 0, offset + 1)]
        return pd.DataFrame({"row": rows, "rank": np.tile(np.arange(1, top + 1), len(X)),
                             "column": np.asarray(names, dtype=object)[chosen], "value": values[rows, chosen],
                             "share": share[rows, chosen], "contribution": penalty[rows, chosen], "where": where})

    def explain(self, X: pd.DataFrame, top: int = 3) -> list[list[str]]:
        """Per row of X, sentences for its `top` contributions, e.g. "unit_price_zscore = -3.1: a value this
        unusual is seen in 0.4 % of declarations". Columns at their most typical values are left out."""
        sentences: list[list[str]] = [[] for _ in range(len(X))]
        for item in self.contributions(X, top).itertuples(index=False):
            if item.contribution <= 0:
                continue
            histogram = self.histograms[item.column]
            if item.where == "missing":
                text = f"{item.column} is missing, as in {_percent(item.share)} of declarations"
            elif item.where == "below":
                text = f"{item.column} = {_number(item.value)}, below every declaration seen (lowest {_number(histogram.low)})"
            elif item.where == "above":
                text = f"{item.column} = {_number(item.value)}, above every declaration seen (highest {_number(histogram.high)})"
            else:
                text = f"{item.column} = {_number(item.value)}: a value this unusual is seen in {_percent(item.share)} of declarations"
            sentences[item.row].append(text)
        return sentences

    def to_dict(self) -> dict:
        """The model as plain JSON-able data (from_dict reads it back)."""
        return {"format": FORMAT_VERSION, "max_bins": self.max_bins, "smoothing": self.smoothing,
                "typical_share": self.typical_share,
                "columns": self.columns, "histograms": {c: h.to_dict() for c, h in self.histograms.items()},
                "median": self.median, "reference": self.reference.tolist(), "rows_fitted": self.rows_fitted,
                "training_share_high": self.training_share_high}

    @classmethod
    def from_dict(cls, data: dict) -> AnomalyModel:
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(f"anomaly model: format {data.get('format')!r} is not {FORMAT_VERSION}")
        return cls(max_bins=int(data["max_bins"]), smoothing=float(data["smoothing"]),
                   typical_share=float(data["typical_share"]), columns=list(data["columns"]),
                   histograms={c: ColumnHistogram.from_dict(h) for c, h in data["histograms"].items()},
                   median=float(data["median"]), reference=np.asarray(data["reference"], dtype="float64"),
                   rows_fitted=int(data["rows_fitted"]), training_share_high=float(data["training_share_high"]))


def fit_anomaly(fs: FeatureSet, **options: float) -> AnomalyModel:
    """An anomaly model fitted on every row of a feature set, over `anomaly_columns(fs.numeric)`."""
    return AnomalyModel(**options).fit(fs.X, anomaly_columns(fs.numeric))


def _percent(share: float) -> str:
    pct = 100 * share
    if pct >= 10:
        return f"{pct:.0f} %"
    if pct >= 1:
        return f"{pct:.1f} %"
    return f"{pct:.2g} %"


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


# --- MLflow: the only part of this module that imports it ------------------------------------------------------

ANOMALY_MODEL_NAME = "customs-anomaly"
CHAMPION = "champion"
MODEL_FILE = "anomaly.json"
MODEL_URI_TAG = "aduana.anomaly_model_uri"  # on the run: where its logged anomaly model is
CHECKSUM_TAG = "aduana.anomaly_artifact_sha256"  # on the run, then as the version's `artifact_sha256` tag
# The pyfunc, logged as code (MLflow's "models from code") as training/risk_pyfunc.py is: nothing is pickled.
PYFUNC_CODE = '''"""customs-anomaly as an MLflow pyfunc: predict gives the anomaly score in [0, 1] per row."""
import mlflow
import numpy as np
import pandas as pd


class AnomalyPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from training.anomaly import read_model

        self.model = read_model(context.artifacts["model"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray:
        return self.model.score(model_input)


mlflow.models.set_model(AnomalyPyfunc())
'''


def write_model(model: AnomalyModel, path: Path) -> Path:
    path.write_text(json.dumps(model.to_dict()))
    return path


def read_model(path: str | Path) -> AnomalyModel:
    return AnomalyModel.from_dict(json.loads(Path(path).read_text()))


def log_anomaly_model(client: MlflowClient | None, model: AnomalyModel, run_id: str | None = None,
                      X: pd.DataFrame | None = None) -> str:
    """Log the model (pyfunc from code, its JSON file checksummed) and its metrics to `run_id`, or to the active run
    when `run_id` is None; returns the model's URI. Metrics: anomaly_rows_fitted, anomaly_columns_used and
    anomaly_share_above_0.99 (of `X` when given, else of the training rows: about 1 % by construction). The run is
    tagged with the model's URI and checksums, which `register_anomaly` reads. A run named by id while no run is
    active is resumed to log the model, and ended again."""
    import mlflow
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient

    from training.store import sha256

    if run_id is None:
        active = mlflow.active_run()
        if active is None:
            raise ValueError("log_anomaly_model: no run_id and no active run")
        run_id = active.info.run_id
    client = client or MlflowClient()
    high = float((model.score(X) > HIGH_SCORE).mean()) if X is not None and len(X) else model.training_share_high
    client.log_batch(run_id, metrics=[
        mlflow.entities.Metric(key, value, int(pd.Timestamp.now().timestamp() * 1000), 0)
        for key, value in (("anomaly_rows_fitted", model.rows_fitted), ("anomaly_columns_used", len(model.used)),
                           (f"anomaly_share_above_{HIGH_SCORE}", high))])
    client.log_dict(run_id, {"columns": model.columns, "used": model.used}, "anomaly/columns.json")
    with tempfile.TemporaryDirectory() as tmp:
        artifact = write_model(model, Path(tmp) / MODEL_FILE)
        code = Path(tmp) / "anomaly_pyfunc.py"
        code.write_text(PYFUNC_CODE)
        kwargs = {}
        if X is not None and len(X):
            example = X[model.used].head(5).astype("float64")
            kwargs = {"signature": infer_signature(example, model.score(example)), "input_example": example}
        active = mlflow.active_run()
        if active is not None and active.info.run_id != run_id:
            raise ValueError(f"log_anomaly_model: run {active.info.run_id} is active, not {run_id}")
        with contextlib.nullcontext() if active is not None else mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(name="anomaly_model", python_model=str(code),
                                           artifacts={"model": str(artifact)}, pip_requirements=["numpy", "pandas"],
                                           **kwargs)
        checksums = {MODEL_FILE: sha256(artifact)}
    client.set_tag(run_id, MODEL_URI_TAG, info.model_uri)
    client.set_tag(run_id, CHECKSUM_TAG, json.dumps(checksums, sort_keys=True))
    return info.model_uri


def register_anomaly(client: MlflowClient, run_id: str, alias: str = CHAMPION) -> str:
    """Register the run's anomaly model as a new version of customs-anomaly and point `alias` at it. There is no
    labelled gate for an unsupervised model: a registered version serves at once."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(ANOMALY_MODEL_NAME)
    except MlflowException:
        client.create_registered_model(ANOMALY_MODEL_NAME, description="How unusual a declaration is (HBOS "
                                       "percentile over label-free declaration columns), with its reasons.")
    tags = client.get_run(run_id).data.tags
    source = tags[MODEL_URI_TAG]
    model_id = source.removeprefix("models:/") if source.startswith("models:/m-") else None
    version = client.create_model_version(ANOMALY_MODEL_NAME, source, run_id=run_id, model_id=model_id,
                                          tags={"artifact_sha256": tags[CHECKSUM_TAG]})
    client.set_registered_model_alias(ANOMALY_MODEL_NAME, alias, version.version)
    return str(version.version)


def load_anomaly(alias: str = CHAMPION, client: MlflowClient | None = None) -> AnomalyModel:
    """The AnomalyModel behind `customs-anomaly@alias`, read from its JSON file after checking it against the
    checksum recorded at registration. Nothing is unpickled and no code from the store runs."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from features.errors import UserError
    from training.store import sha256

    client = client or MlflowClient()
    version = client.get_model_version_by_alias(ANOMALY_MODEL_NAME, alias)
    recorded = json.loads(version.tags["artifact_sha256"])
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{ANOMALY_MODEL_NAME}/{version.version}", dst_path=tmp,
            tracking_uri=client.tracking_uri))
        path = local / "artifacts" / MODEL_FILE
        if not path.is_file() or sha256(path) != recorded.get(MODEL_FILE):
            raise UserError(f"{ANOMALY_MODEL_NAME} v{version.version}: its file does not match the checksum "
                            "recorded at registration; refusing to load a model that was changed in the store")
        return read_model(path)
