"""The one settings object: every `HOMEFEED_*` environment variable is read here and nowhere else.

Programs read it once at their edge (`load_settings()`), hand it to Dagster resources, and
those pass explicit arguments to the functions below them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.storage import is_object_store, models_root, s3a_spark_conf, storage_path

_SPARK_MASTER = re.compile(r"^(local(\[(\*|\d+)(,\d+)?\])?|spark://[\w.\-]+:\d+(,[\w.\-]+:\d+)*|yarn|k8s://.+)$")
_REDIS_URL = re.compile(r"^(redis|rediss|unix)://.+")
DEVELOPMENT_SECRET = "homefeed-development-secret"


class HomefeedSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOMEFEED_", frozen=True, extra="ignore", populate_by_name=True)

    warehouse: str = Field(
        "warehouse",
        description="Root of the Delta tables: a local path, or s3a://bucket/prefix on S3-compatible "
        "object storage (core.storage; credentials from the standard AWS_* variables).",
    )
    models_dir: Path | None = Field(
        None,
        description="The model registry (a file-system path: versions are published by atomic renames). "
        "Default <warehouse>/models; required when the warehouse is on object storage.",
    )
    # The object store's endpoint and region, from the standard AWS variables every S3 client here
    # reads (deltalake, fsspec); Spark's S3A gets them as settings.
    s3_endpoint: str | None = Field(
        None,
        validation_alias="AWS_ENDPOINT_URL",
        description="AWS_ENDPOINT_URL: an S3-compatible endpoint (MinIO, Ceph, ...); unset for AWS itself.",
    )
    s3_region: str | None = Field(None, validation_alias="AWS_REGION", description="AWS_REGION of the bucket.")
    spark_master: str = Field("local[*]", description="Spark master URL.")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis the feeds are published to.")
    redis_cluster: bool = Field(
        False, description="HOMEFEED_REDIS_URL names one node of a Redis Cluster (the clients find the others)."
    )
    cache_dir: Path = Field(
        Path.home() / ".cache" / "homefeed",
        description="Downloaded Delta jars (outside the repository).",
    )
    raw_input: str = Field(
        "data/demo/raw",
        description="The raw input (data-contract folders) a run ingests: a local path, or "
        "s3a://bucket/prefix on S3-compatible object storage (like the warehouse).",
    )
    as_of: datetime | None = Field(
        None, description="The build time; rows stamped later are quarantined. Default: now."
    )
    spark_driver_memory: str = Field("4g", description="spark.driver.memory")
    spark_shuffle_partitions: int = Field(8, ge=1, description="spark.sql.shuffle.partitions")
    spark_conf: dict[str, str] = Field(
        default_factory=dict,
        description="More Spark settings, as JSON, applied last so they win over the built-in ones, e.g. "
        'HOMEFEED_SPARK_CONF=\'{"spark.executor.memory": "2g", "spark.driver.host": "10.0.0.4"}\'.',
    )
    twhin_device: Literal["cpu", "cuda", "auto"] = Field(
        "cpu", description="Torch device TwHIN trains on: cpu, cuda, or auto (cuda when present)."
    )
    twhin_threads: int = Field(1, ge=1, description="Torch CPU threads TwHIN trains with (fixed: reproducible).")
    publish_grace_seconds: int = Field(
        3600, ge=0, description="How long a replaced Redis version's keys live after a newer one is published."
    )
    secret: SecretStr = Field(
        SecretStr(DEVELOPMENT_SECRET),
        description="Signs API bearer tokens and cursors; the API refuses the default outside development.",
    )
    env: Literal["development", "production"] = Field(
        "production", description="development lets the API start with the default secret (the demo sets it)."
    )
    page_cache_seconds: float = Field(
        10.0,
        ge=0,
        description="How long the API serves a For You or Following page again to a request with the same inputs "
        "(version, cursor, count, request-time state); 0 computes every page (serving.page_cache).",
    )
    page_cache_entries: int = Field(
        2000, ge=1, description="The most For You and Following pages each API process keeps."
    )
    dagster_home: Path = Field(
        Path(".dagster_home"),
        validation_alias=AliasChoices("HOMEFEED_DAGSTER_HOME", "DAGSTER_HOME", "dagster_home"),
        description="The Dagster instance (run history, materializations, check results) that `homefeed run`, "
        "`homefeed demo` and `make dagster` share; Dagster's own DAGSTER_HOME is read too.",
    )
    dq_bounds: dict[str, float | tuple[float, float]] = Field(
        default_factory=dict,
        description="Overrides of the data-quality thresholds (data_quality.specs.QualityBounds), as JSON, "
        'e.g. HOMEFEED_DQ_BOUNDS=\'{"freshness_hours": 24, "feed_length": [10, 200]}\'.',
    )

    @field_validator("spark_master")
    @classmethod
    def _known_master(cls, value: str) -> str:
        if not _SPARK_MASTER.match(value):
            raise ValueError(
                f"HOMEFEED_SPARK_MASTER={value!r} is not a Spark master URL "
                "(local[*], local[N], spark://host:port, yarn, k8s://...)"
            )
        return value

    @field_validator("spark_conf")
    @classmethod
    def _spark_keys(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(key for key in value if not key.startswith("spark."))
        if unknown:
            raise ValueError(f"HOMEFEED_SPARK_CONF keys must be Spark settings (spark.*), not {unknown}")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not _REDIS_URL.match(value):
            raise ValueError(f"HOMEFEED_REDIS_URL={value!r} must start with redis://, rediss:// or unix://")
        return value

    @model_validator(mode="after")
    def _cluster_over_tcp(self) -> HomefeedSettings:
        if self.redis_cluster and self.redis_url.startswith("unix://"):
            raise ValueError(
                f"HOMEFEED_REDIS_CLUSTER=1 needs a redis:// or rediss:// node address, not {self.redis_url!r}"
            )
        return self

    @model_validator(mode="after")
    def _models_on_a_file_system(self) -> HomefeedSettings:
        models_root(self.warehouse, self.models_dir)  # raises for an object-store warehouse without one
        return self

    @field_validator("spark_driver_memory")
    @classmethod
    def _memory_size(cls, value: str) -> str:
        if not re.fullmatch(r"\d+[kmgt]?", value.lower()):
            raise ValueError(f"HOMEFEED_SPARK_DRIVER_MEMORY={value!r} is not a JVM memory size like 4g")
        return value

    @field_validator("dq_bounds")
    @classmethod
    def _known_bounds(cls, value: dict) -> dict:
        from core.quality_bounds import QualityBounds

        QualityBounds.with_overrides(value)  # raises on an unknown name or a wrong shape
        return value

    @field_validator("as_of")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @field_validator("warehouse", "raw_input", mode="before")
    @classmethod
    def _location(cls, value: object) -> str:
        return str(value)  # a path or a URL; `storage_path` tells them apart

    @property
    def warehouse_root(self) -> Path:
        """The warehouse folder (a `UPath` on object storage; see core.storage)."""
        return storage_path(self.warehouse)

    @property
    def tables_dir(self) -> Path:
        return self.warehouse_root / "tables"

    @property
    def raw_dir(self) -> Path:
        """The raw input folder (a `UPath` on object storage)."""
        return storage_path(self.raw_input)

    @property
    def data_docs_dir(self) -> Path | None:
        """Where `homefeed check` writes Great Expectations' HTML pages: a local site beside the
        tables; None on object storage (GX's file-system site would not reach it)."""
        return None if is_object_store(self.warehouse) else self.warehouse_root / "data_quality" / "docs"

    @property
    def models_root(self) -> Path:
        return models_root(self.warehouse, self.models_dir)

    @property
    def object_storage_conf(self) -> dict[str, str] | None:
        """Spark's S3A settings when the warehouse or the raw input is on object storage, else None."""
        if not (is_object_store(self.warehouse) or is_object_store(self.raw_input)):
            return None
        return s3a_spark_conf(endpoint=self.s3_endpoint, region=self.s3_region)


def load_settings(**overrides) -> HomefeedSettings:
    """Read the environment once; `overrides` (e.g. from command-line flags) win over it."""
    return HomefeedSettings(**{k: v for k, v in overrides.items() if v is not None})
