"""One settings object: environment (ADUANA_*) plus an optional YAML file, every path under ADUANA_HOME."""
from __future__ import annotations

import os
from pathlib import Path

from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)


class Settings(BaseSettings):
    """Runtime settings. Nothing is created on disk until a caller asks for it."""

    model_config = SettingsConfigDict(env_prefix="ADUANA_", extra="ignore")

    home: Path = Path(".aduana")
    gx_sample_rows: int = 200_000
    """Great Expectations runs on at most this many rows of a batch (a seeded sample); pandera checks all rows."""
    train_iterations: int = 1000  # the most CatBoost rounds; early stopping on the validation window ends sooner
    train_ablation: bool = True  # leave out feature groups that do not help on the validation window
    train_reference_iterations: int | None = None  # the reference's rounds; None: CatBoost's own default (tests use fewer)
    lane_policy: Path | None = None  # YAML lane policy; default: serving.lanes.LanePolicy()
    reload_seconds: float = 30.0  # how often the API checks for a new champion and a changed warehouse
    gate_metric: str = "pr_auc"  # the gate's primary metric (pr_auc or precision|recall|revenue_at_Npct)
    gate_confidence: float = 0.90  # of the paired bootstrap interval on a difference
    gate_margin: float = 0.0  # over the champion, the interval's lower bound must exceed this
    gate_block_on_warnings: bool = False  # unacknowledged validation warnings block promotion
    monitor_window_days: int = 30  # the recent window compared with the champion's reference
    monitor_outcome_days: int = 90  # decisions whose control outcomes count towards the hit-rate checks
    monitor_psi: float = 0.25  # a feature (or the score) drifts at or above this PSI
    monitor_missing_increase: float = 0.10  # ... or when its missing rate rises by this much
    monitor_hit_rate_tolerance: float = 0.15  # relative gap allowed between a stratum's hit rate and the model's

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
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlartifacts"


def get_settings() -> Settings:
    """Read settings now (not at import time), so tests can point ADUANA_HOME elsewhere."""
    return Settings()
