"""Where the warehouse lives: a local folder, or a prefix on S3-compatible object storage.

`HOMEFEED_WAREHOUSE` is either a file-system path (made absolute) or an `s3a://bucket/prefix` URL
(`s3://` is the same store). Both become a path object with the same interface (`/`, `name`,
`is_dir`, `iterdir`, `read_text`, `open`): a `pathlib.Path`, or a `upath.UPath` backed by fsspec's
S3 file system. `str()` of either is what Spark (Hadoop's S3A), deltalake and DuckDB open.

Credentials, region and endpoint of the object store come from the standard AWS variables
(`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
`AWS_ENDPOINT_URL`, and `AWS_ALLOW_HTTP=true` for an endpoint without TLS), which deltalake and
fsspec read themselves; the settings pass the endpoint and region on to Spark's S3A
(`s3a_spark_conf`), whose default credential chain reads the same variables.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

OBJECT_STORE_SCHEMES = ("s3", "s3a")


def is_object_store(location: str | os.PathLike) -> bool:
    """Whether `location` is an object-store URL (`s3a://bucket/prefix`) rather than a local path."""
    return urlparse(str(location)).scheme in OBJECT_STORE_SCHEMES


def is_delta_table(path: Path) -> bool:
    """Whether `path` holds a Delta table with a committed version. A writer that dies before the
    first commit of a new table leaves its `_delta_log` folder behind without a commit in it, which
    no reader can open (deltalake: "No files in log segment")."""
    log = path / "_delta_log"
    return log.is_dir() and any(_is_commit_or_checkpoint(entry.name) for entry in log.iterdir())


def _is_commit_or_checkpoint(name: str) -> bool:
    """`00000000000000000003.json`, `00000000000000000010.checkpoint.parquet` (or a multi-part or
    V2 checkpoint of that version): the log files a version can be read from."""
    return name[:20].isdigit() and (name.endswith(".json") or ".checkpoint." in name)


def storage_path(location: str | os.PathLike) -> Path:
    """The folder at `location` (the warehouse, or a side build's input): an absolute local `Path`,
    or a `UPath` for an object-store URL (typed as Path: it has the same interface for everything
    the warehouse code does with it)."""
    if is_object_store(location):
        from upath import UPath

        parsed = urlparse(str(location))
        if not parsed.netloc:
            raise ValueError(f"{location!r}: an object-store location needs a bucket, e.g. s3a://bucket/warehouse")
        return UPath(str(location).rstrip("/"), **fsspec_s3_options(os.environ))
    return Path(location).resolve()


def remove_tree(path: Path) -> None:
    """Delete the folder `path` and everything under it, local or on object storage; no error when
    it does not exist."""
    if not path.exists():
        return
    if is_object_store(path):
        path.fs.rm(path.path, recursive=True)
    else:
        shutil.rmtree(path)


def read_parquet_folder(folder: Path, schema=None):
    """Every Parquet file under `folder` (a local `Path` or a `UPath`) as one Arrow table; hidden
    and `_`-prefixed files are skipped, as in every Parquet reader."""
    import pyarrow.parquet as pq

    if is_object_store(folder):
        return pq.read_table(folder.path, filesystem=folder.fs, schema=schema)
    return pq.read_table(folder, schema=schema)


MODELS_DIRNAME = "models"


def models_root(warehouse: str | os.PathLike, models_dir: str | os.PathLike | None) -> Path:
    """The model registry's folder: `models_dir`, else `<warehouse>/models`. The registry publishes
    versions by atomic renames, which object stores do not have, so it stays on a file system (a
    shared one when executors run on other machines) when the tables are on object storage."""
    if models_dir is not None:
        if is_object_store(models_dir):
            raise ValueError(f"HOMEFEED_MODELS_DIR={str(models_dir)!r}: the model registry needs a file-system path")
        return Path(models_dir).resolve()
    if is_object_store(warehouse):
        raise ValueError(
            f"HOMEFEED_WAREHOUSE={str(warehouse)!r} is on object storage: set HOMEFEED_MODELS_DIR to a "
            "file-system path for the model registry (versions are published by atomic renames)"
        )
    return Path(warehouse).resolve() / MODELS_DIRNAME


def fsspec_s3_options(environment: os._Environ | dict[str, str]) -> dict:
    """The endpoint as an explicit option: fsspec caches one file system per set of options, and
    one made before AWS_ENDPOINT_URL changed would keep talking to the old endpoint."""
    endpoint = environment.get("AWS_ENDPOINT_URL")
    return {"client_kwargs": {"endpoint_url": endpoint}} if endpoint else {}


def s3a_spark_conf(*, endpoint: str | None, region: str | None) -> dict[str, str]:
    """Spark settings for tables under s3a:// (and s3://) URLs. A custom endpoint (MinIO, Ceph, a
    local S3) gets path-style requests, since such stores rarely serve bucket subdomains."""
    conf = {
        # The same store under either scheme, so a warehouse URL reads the same in every reader.
        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
    }
    if region:
        conf["spark.hadoop.fs.s3a.endpoint.region"] = region
    if endpoint:
        conf["spark.hadoop.fs.s3a.endpoint"] = endpoint
        conf["spark.hadoop.fs.s3a.path.style.access"] = "true"
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(urlparse(endpoint).scheme == "https").lower()
    return conf
