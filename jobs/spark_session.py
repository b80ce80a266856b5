"""Spark sessions with Delta Lake, local by default and a cluster by configuration.

The Delta jars are resolved once from Maven Central into a cache outside the repository
(`resolve_delta_jars`, run by `make setup`) and handed to Spark as local files, so no session
start needs the network; so are Hadoop's S3A jars when the warehouse is on object storage
(`resolve_s3a_jars`).
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

SCALA_BINARY_VERSION = "2.13"
DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"


class DeltaJarsError(RuntimeError):
    """The Delta (or S3A) jars are not in the cache and could not be fetched."""


def delta_maven_coordinate() -> tuple[str, str, str]:
    """(organisation, artifact, revision) of the Delta jar matching the installed pyspark."""
    import pyspark

    spark_major_minor = ".".join(pyspark.__version__.split(".")[:2])
    delta_version = metadata.version("delta-spark")
    return "io.delta", f"delta-spark_{spark_major_minor}_{SCALA_BINARY_VERSION}", delta_version


def _pyspark_jars_dir() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "jars"


def hadoop_version(spark_jar_names: list[str]) -> str:
    """The Hadoop version Spark ships (`hadoop-client-api-3.5.0.jar` -> 3.5.0)."""
    for name in spark_jar_names:
        match = re.fullmatch(r"hadoop-client-api-(\d[\w.\-]*)\.jar", name)
        if match:
            return match.group(1)
    raise DeltaJarsError("no hadoop-client-api jar among Spark's jars; is pyspark installed?")


def s3a_maven_coordinate() -> tuple[str, str, str]:
    """hadoop-aws (Hadoop's S3A file system) of the Hadoop version inside pyspark; its dependencies
    bring the AWS SDK bundle (~690 MB)."""
    return "org.apache.hadoop", "hadoop-aws", hadoop_version([p.name for p in _pyspark_jars_dir().glob("*.jar")])


def _artifact_name(jar_file_name: str) -> str:
    """`org.apache.parquet_parquet-column-1.16.0.jar` -> `parquet-column`."""
    base = jar_file_name.split("_", 1)[-1] if "_" in jar_file_name else jar_file_name
    return re.sub(r"-\d[\w.\-]*\.jar$", "", base)


def jars_not_in_spark(jar_paths: list[Path], spark_jar_names: list[str]) -> list[Path]:
    """Drop resolved jars whose artifact Spark already ships: Spark's own copy must win."""
    shipped = {_artifact_name(name) for name in spark_jar_names}
    return [p for p in jar_paths if _artifact_name(p.name) not in shipped]


def _manifest_path(cache_dir: Path, coordinate: tuple[str, str, str]) -> Path:
    _, artifact, revision = coordinate
    return cache_dir / "delta-jars" / f"{artifact}-{revision}.txt"


def _cached_jars(cache_dir: Path, coordinate: tuple[str, str, str]) -> list[Path] | None:
    manifest = _manifest_path(cache_dir, coordinate)
    if not manifest.exists():
        return None
    paths = [Path(line) for line in manifest.read_text().splitlines() if line.strip()]
    if not paths or not all(p.exists() for p in paths):
        return None
    return paths


def cached_delta_jars(cache_dir: Path) -> list[Path] | None:
    """The cached Delta jar paths, or None when the cache is missing or incomplete."""
    return _cached_jars(cache_dir, delta_maven_coordinate())


def resolve_maven_jars(cache_dir: Path, coordinate: tuple[str, str, str]) -> list[Path]:
    """Resolve `coordinate` and its dependencies from Maven Central into `cache_dir`, less what Spark
    ships. Idempotent: returns the cached list at once when it is complete. Uses the Ivy jar that
    pyspark ships, which is what `spark.jars.packages` would use, but only once at set-up time."""
    cached = _cached_jars(cache_dir, coordinate)
    if cached is not None:
        return cached
    org, artifact, revision = coordinate
    spark_jars = _pyspark_jars_dir()
    ivy_jar = next(iter(sorted(spark_jars.glob("ivy-*.jar"))), None)
    if ivy_jar is None:
        raise DeltaJarsError(f"no Ivy jar in {spark_jars}; is pyspark installed?")
    retrieve_dir = cache_dir / "delta-jars" / f"{artifact}-{revision}"
    retrieve_dir.mkdir(parents=True, exist_ok=True)
    command = [
        "java",
        "-jar",
        str(ivy_jar),
        "-dependency",
        org,
        artifact,
        revision,
        "-confs",
        "default",
        "-types",
        "jar",
        "bundle",
        "-cache",
        str(cache_dir / "ivy-cache"),
        "-retrieve",
        str(retrieve_dir / "[organisation]_[artifact]-[revision](-[classifier]).[ext]"),
    ]
    log.info("resolving %s:%s:%s from Maven Central into %s", org, artifact, revision, cache_dir)
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise DeltaJarsError(
            f"could not resolve {org}:{artifact}:{revision} from Maven Central "
            f"(exit {result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    resolved = sorted(retrieve_dir.glob("*.jar"))
    needed = jars_not_in_spark(resolved, [p.name for p in spark_jars.glob("*.jar")])
    if not any(p.name.startswith(f"{org}_{artifact}") for p in needed):
        raise DeltaJarsError(f"Ivy finished but {artifact} is not among {resolved}")
    _manifest_path(cache_dir, coordinate).write_text("\n".join(str(p) for p in needed) + "\n")
    return needed


def resolve_delta_jars(cache_dir: Path) -> list[Path]:
    """The Delta jars and their dependencies, cached (`make setup` fetches them once)."""
    return resolve_maven_jars(cache_dir, delta_maven_coordinate())


def resolve_s3a_jars(cache_dir: Path) -> list[Path]:
    """hadoop-aws and the AWS SDK, cached: fetched by `homefeed setup` when the warehouse is on
    object storage, so that local-only set-ups never download the SDK."""
    return resolve_maven_jars(cache_dir, s3a_maven_coordinate())


def delta_spark_conf(jar_paths: list[Path]) -> dict[str, str]:
    return {
        "spark.jars": ",".join(str(p) for p in jar_paths),
        "spark.sql.extensions": DELTA_EXTENSION,
        "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
        # Tables here are read by deltalake and DuckDB too, which do not all read deletion vectors.
        "spark.databricks.delta.properties.defaults.enableDeletionVectors": "false",
    }


BASE_SPARK_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # A whole-stage method over 8,000 bytes of bytecode is never JIT-compiled (HotSpot's
    # DontCompileHugeMethods), so Spark's default limit of 65,535 keeps stages that then run
    # interpreted: user_tweet_features' projection (unrolled map lookups) ran 2x slower whole.
    # At 8,000 such a stage falls back to per-operator code, split into methods the JIT compiles.
    "spark.sql.codegen.hugeMethodLimit": "8000",
    "spark.ui.enabled": "false",
    # The driver keeps every finished query's plan graph for the UI's history, even with the UI
    # off; the feature and training-set plans are large, and a long process (a Dagster daemon, the
    # test session) ran out of heap holding a thousand of them.
    "spark.sql.ui.retainedExecutions": "20",
    "spark.ui.retainedJobs": "100",
    "spark.ui.retainedStages": "100",
    "spark.ui.retainedTasks": "10000",
}


LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


def master_hosts(master: str) -> list[str]:
    """The hosts of a `spark://h1:p1,h2:p2` master URL; [] for local, yarn and k8s masters."""
    if not master.startswith("spark://"):
        return []
    return [address.rsplit(":", 1)[0] for address in master.removeprefix("spark://").split(",")]


def driver_address_conf(master: str) -> dict[str, str]:
    """The driver on loopback when its executors run on this machine (local mode, or a standalone
    master on loopback): Spark would otherwise advertise whatever interface the hostname resolves
    to. For any other master, Spark's default (this machine's address), which remote executors can
    reach; HOMEFEED_SPARK_CONF's spark.driver.host overrides it where that guess is wrong."""
    hosts = master_hosts(master)
    on_this_machine = master.startswith("local") or (bool(hosts) and all(h in LOOPBACK_HOSTS for h in hosts))
    if not on_this_machine:
        return {}
    return {"spark.driver.bindAddress": "127.0.0.1", "spark.driver.host": "127.0.0.1"}


def build_spark_session(
    *,
    master: str,
    jars_cache_dir: Path,
    app_name: str = "homefeed",
    driver_memory: str = "4g",
    shuffle_partitions: int = 8,
    object_storage_conf: dict[str, str] | None = None,
    extra_conf: dict[str, str] | None = None,
) -> SparkSession:
    """A Spark session with Delta, or the already running one (Spark allows one per process).
    `object_storage_conf` (`core.storage.s3a_spark_conf`, for a warehouse or raw input on object storage) adds the
    S3A jars too. `extra_conf` (HOMEFEED_SPARK_CONF) is applied last, so it wins over every setting here."""
    jar_paths = resolve_delta_jars(jars_cache_dir)
    if object_storage_conf is not None:
        jar_paths = jar_paths + resolve_s3a_jars(jars_cache_dir)
    # Python workers (mapInPandas, model scoring) must run this interpreter, with this venv's
    # packages; PySpark reads the variable, not a conf, when it starts them.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if master.startswith("local"):
        # A local driver talks only to itself; without this Spark picks an external interface.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.master(master).appName(app_name)
    conf = {
        **BASE_SPARK_CONF,
        **driver_address_conf(master),
        "spark.driver.memory": driver_memory,
        "spark.sql.shuffle.partitions": str(shuffle_partitions),
        # Delta rebuilds table state with 50 tasks by default: far too many for small tables.
        "spark.databricks.delta.snapshotPartitions": str(shuffle_partitions),
        **delta_spark_conf(jar_paths),
        **(object_storage_conf or {}),
        **(extra_conf or {}),
    }
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session


@contextmanager
def session_conf(spark: SparkSession, conf: Mapping[str, str]) -> Iterator[None]:
    """`conf` set on the session for the block (queries planned and run in it), then restored."""
    previous = {key: spark.conf.get(key, None) for key in conf}
    for key, value in conf.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)
