"""Dagster resources: Spark, the warehouse, TwHIN training, data-quality bounds, Redis (built from the settings by `orchestration.resource_bindings`)."""

import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
from pyspark.sql import SparkSession

from core.storage import models_root, storage_path
from jobs.spark_session import build_spark_session


class SparkResource(dg.ConfigurableResource):
    """A Spark session with Delta: local by default, a cluster when `master` says so."""

    master: str = "local[*]"
    cache_dir: str
    driver_memory: str = "4g"
    shuffle_partitions: int = 8
    # Spark's S3A settings when the warehouse or the raw input is on object storage (HomefeedSettings.object_storage_conf).
    object_storage_conf: dict[str, str] | None = None
    # More Spark settings (HOMEFEED_SPARK_CONF), applied last: executor sizes, the driver's address.
    extra_conf: dict[str, str] = {}

    def get_session(self) -> SparkSession:
        return build_spark_session(
            master=self.master,
            jars_cache_dir=Path(self.cache_dir),
            driver_memory=self.driver_memory,
            shuffle_partitions=self.shuffle_partitions,
            object_storage_conf=self.object_storage_conf,
            extra_conf=self.extra_conf,
        )


class WarehouseResource(dg.ConfigurableResource):
    """Where the Delta tables live, and where the raw input of a run is read from."""

    path: str
    raw_input: str
    # Rows stamped after this are in the future; None means the time the run starts.
    as_of: str | None = None
    # The model registry (HOMEFEED_MODELS_DIR); None: <warehouse>/models.
    models: str | None = None

    @property
    def root(self) -> Path:
        """The warehouse folder (a `UPath` on object storage; see core.storage)."""
        return storage_path(self.path)

    @property
    def tables_dir(self) -> Path:
        return self.root / "tables"

    @property
    def models_dir(self) -> Path:
        return models_root(self.path, self.models)

    def table_path(self, name: str) -> Path:
        return self.tables_dir / name

    @property
    def raw_dir(self) -> Path:
        return storage_path(self.raw_input)  # a local folder, or a training set's side input on object storage

    def now(self) -> datetime:
        if self.as_of:
            return datetime.fromisoformat(self.as_of).astimezone(UTC)
        return datetime.now(UTC)


class TwhinResource(dg.ConfigurableResource):
    """How TwHIN embeddings train (models/twhin): torch device and threads, size and length."""

    device: str = "cpu"  # cpu | cuda | auto
    threads: int = 1
    dim: int = 64
    epochs: int = 5
    seed: int = 0


class RedisResource(dg.ConfigurableResource):
    """Where the feeds are published, and how long a replaced version's keys live."""

    url: str
    grace_seconds: int
    cluster: bool = False  # `url` names one node of a Redis Cluster


class QualityResource(dg.ConfigurableResource):
    """The thresholds of the data-quality checks: QualityBounds' defaults with these overrides (JSON)."""

    bounds_json: str = "{}"

    def bounds(self):
        from core.quality_bounds import QualityBounds

        return QualityBounds.with_overrides(json.loads(self.bounds_json))
