"""One settings object, read at the top (flows/) and handed down: environment (ADUANA_*) plus an optional YAML
file (ADUANA_CONFIG), every path under ADUANA_HOME."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from training.user_policies import FitConfig, GatePolicy, MonitorThresholds

NESTED = ("gate", "train", "monitor")  # the policies' sections


class Settings(BaseSettings):
    """Runtime settings. Nothing is created on disk until a caller asks for it.

    The policies are nested, with their defaults written once, in the class that applies them: `gate`
    (training.gate.GatePolicy), `train` (training.models.FitConfig) and `monitor`
    (training.monitoring.MonitorThresholds). In the environment a policy's field is ADUANA_<POLICY>_<FIELD>
    (ADUANA_GATE_MARGIN, ADUANA_TRAIN_ITERATIONS, ADUANA_MONITOR_PSI); in the YAML file, a section per policy.
    """

    model_config = SettingsConfigDict(env_prefix="ADUANA_", extra="ignore", env_nested_delimiter="_",
                                      env_nested_max_split=1)

    home: Path = Path(".aduana")
    gx_sample_rows: int = 200_000
    """Great Expectations runs on at most this many rows of a batch (a seeded sample), plus up to as many rows beyond
    a ceiling or date fence (those checks see every row); pandera checks all rows."""
    ingest_chunk_rows: int = Field(200_000, ge=1)
    """Ingest reads, checks and stores a file this many rows at a time, so its memory is set by this number, not by
    the file's size; every result (stored rows, quarantine, counts, the expectations' sample) is the same whatever it
    is."""
    lane_policy: Path | None = None  # YAML lane policy; default: serving.lanes.LanePolicy()
    reload_seconds: float = 30.0  # how often the API checks for a new champion and a changed warehouse
    prefect_server: Literal["home", "ephemeral"] = "home"
    """`home`: the CLI's flows run on one local Prefect server per ADUANA_HOME, started once (flows/server.py);
    `ephemeral`: Prefect's temporary server per call. A PREFECT_API_URL in the environment overrides both."""
    ops_url: str | None = None
    """PostgreSQL URL of the operational store that many writers share (the decision log):
    `postgresql://USER@HOST:PORT/DB`. Default: none; the log is journalled under ADUANA_HOME and the warehouse holds
    it. The warehouse (DuckDB, the analytical store) keeps a copy of the log either way (features/warehouse/oplog.py)."""
    prefect_server_idle_minutes: float = 30.0
    """The home's Prefect server stops after this many minutes without a CLI call, a flow run or a worker (0: never)."""
    score_partition_rows: int = Field(100_000, ge=1)
    """Batch scoring scores a larger batch this many declarations at a time (serving/partitions.py): its memory is
    then that of a partition, whatever the batch's size; the scores, lanes and reasons are those of the whole."""
    training_memory_rows: int = Field(1_000_000, ge=1)
    """A retrain on a warehouse holding more declarations than this reads its snapshot through DuckDB (Parquet files
    under work/, removed after): only the labelled rows and the drift reference come into pandas; the entity profiles,
    bill-of-lading totals and price bands are computed from every row in DuckDB (at most 1 GB, spilling to the
    system's temporary folder). Its memory then follows the labelled rows, not the history. Up to this many, the
    history is read into pandas (features/profiles.py ProfileIndex). Both give the same features (revenue rates
    within the last bits), so the same model. The monitor's window and `aduana score` (a file of any size, as one
    partition at least) read such a warehouse through its snapshot too."""
    score_memory_limit: str = "1GB"
    """DuckDB's memory for the warehouse's snapshot while scoring in partitions (or building training's features on
    a Dask cluster), per process that does it (this one, or each Dask worker); beyond it DuckDB spills to the
    system's temporary folder. Workers that share one machine share its memory: 512MB each for a 2-worker
    LocalCluster within 4 GB."""
    dask_address: str | None = None
    """A Dask scheduler (`tcp://host:8786`) that `aduana score` runs its partitions on and `aduana train` builds its
    features on (in partitions of `score_partition_rows`), through prefect-dask; `local`: a LocalCluster started for
    the run. Default: none, both work in this process."""
    audit_random_share: float = Field(0.1, ge=0, le=1)
    """The share of the post-clearance audit capacity drawn at random from the enterprises the ranking leaves out
    (serving/post_clearance.py), each with its inclusion probability, so that audit findings measure compliance in
    released goods without the ranking's bias. 0: a ranked list only."""
    api_key: str | None = None  # when set, every scoring call must carry it in X-API-Key
    ui_secure_cookie: bool = False
    """Mark the analysts' page's cookie Secure even when uvicorn sees plain HTTP: TLS ended at a proxy it does not
    trust for X-Forwarded-Proto (a request it sees as https gets a Secure cookie anyway)."""
    mlflow_tracking_uri: str | None = Field(None, validation_alias="MLFLOW_TRACKING_URI")
    """The user's tracking store; default: the sqlite store under ADUANA_HOME."""
    gate: GatePolicy = GatePolicy()
    train: FitConfig = FitConfig()
    monitor: MonitorThresholds = MonitorThresholds()

    @model_validator(mode="before")
    @classmethod
    def _flat_policy_keys(cls, data: object) -> object:
        """`gate_margin: 0.01` in a YAML file (or as a keyword) means `gate: {margin: 0.01}`, as in the
        environment, so that the file's keys are the environment's names without the prefix."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name in NESTED:
            flat = {k: data.pop(k) for k in list(data) if isinstance(k, str) and k.startswith(f"{name}_")}
            if flat:
                nested = data.get(name)
                base = dict(nested) if isinstance(nested, dict) else {}
                data[name] = {**{k.removeprefix(f"{name}_"): v for k, v in flat.items()}, **base}
        return data

    @model_validator(mode="after")
    def _stack_ops_url(self) -> Settings:
        """ops_url defaults to the `aduana_ops` database of this home's production stack while `aduana stack up`
        has it up; a URL the user gave (ADUANA_OPS_URL, the YAML file) wins."""
        if self.ops_url is None:
            self.ops_url = self.stack_stores().get("ADUANA_OPS_URL")
        return self

    def stack_stores(self) -> dict[str, str]:
        """The settings of this home's production stack (PREFECT_API_URL, MLFLOW_TRACKING_URI, ADUANA_OPS_URL) while
        its record says it is up, else none: what the runtime uses where the user set nothing
        (flows/orchestration/stack.py)."""
        from flows.orchestration.stack import stores

        return stores(self.stack_dir)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = os.environ.get("ADUANA_CONFIG")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if config_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)

    @property
    def root(self) -> Path:
        return self.home.expanduser().resolve()

    def make_home(self) -> Path:
        """Create the home, open to its owner only (0700): it holds the warehouse, the model store, the Prefect
        database and their secrets, which no other local user should read. A home that exists keeps its mode (the
        administrator's choice); the folders above it are created as the umask says."""
        root = self.root
        if not root.exists():
            root.parent.mkdir(parents=True, exist_ok=True)
            root.mkdir(mode=0o700, exist_ok=True)  # the umask can only take bits away from 0700
        return root

    @property
    def warehouse_path(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def gx_root(self) -> Path:
        return self.root / "gx"

    @property
    def data_docs_index(self) -> Path:
        return self.gx_root / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"

    @property
    def reference_dir(self) -> Path:
        """Reference profiles of each kind's accepted history, which relative expectations are judged against."""
        return self.root / "expectations" / "reference"

    @property
    def landing_dir(self) -> Path:
        return self.root / "landing"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def prefect_home(self) -> Path:
        return self.root / "prefect"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def promotions_log(self) -> Path:
        return self.root / "registry" / "promotions.jsonl"

    @property
    def work_dir(self) -> Path:
        """Run folders that a Dask cluster's workers read (a batch's partitions, its snapshot, the champion)."""
        return self.root / "work"

    @property
    def locks_dir(self) -> Path:
        """Inter-process locks: ingests into the home take turns (ingest.lock), promotions too (promotion.lock)."""
        return self.root / "locks"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def stack_dir(self) -> Path:
        """The production stack's record, logs, servers' state and PostgreSQL cluster (`aduana stack up`)."""
        return self.root / "stack"
