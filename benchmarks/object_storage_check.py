"""Build one synthetic world twice, into a local warehouse from its local raw input and into
`s3a://` object storage (a local S3-compatible server) from a copy of that raw input on the store,
compare every Delta table, then read the object-store warehouse the way its users do: `homefeed
sql` (DuckDB) and `homefeed publish` (Redis); then build the training set there (its side warehouse
and cut input on the object store too) and train the rankers into the local registry; print one
JSON document. `make object-storage-check` runs it.

    python -m benchmarks.object_storage_check [--users 150] [--seed 3] [--workdir DIR] [--keep]

The server is moto's S3 (`moto.server.ThreadedMotoServer`, HTTP on loopback): no cloud is
reachable here, and what is checked is homefeed's side (Hadoop S3A under Spark, deltalake, fsspec
and DuckDB reading `s3a://` URLs configured by HOMEFEED_WAREHOUSE and the AWS_* variables), not
the store. Both builds run `homefeed run` (the default build, then `ranked_feeds` scored by the same
fixed models) in `local[2]`, configured by environment variables only; the object-store build reads
its raw input from the store (HOMEFEED_RAW_INPUT=s3a://...) and keeps its model registry in a local
folder (HOMEFEED_MODELS_DIR), as it must.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from benchmarks.cluster_check import (
    LOCAL_MASTER,
    build_environment,
    check_main,
    compare_warehouses,
    homefeed_command,
    run_build,
)
from core.redis_server import free_port, start_redis
from core.storage import MODELS_DIRNAME, storage_path

BUCKET = "homefeed-check"
# Two days of impressions, the representations built once at the window's start: the side
# warehouse and its cut input on the object store, at a tiny world's cost.
TRAINING_WINDOW = ("--days", "2", "--validation-days", "0.5", "--test-days", "0.5", "--representations", "window-start")
# The training set's plan (labels joined to every point-in-time feature) needs more driver heap than
# the builds' 2g, whatever the world's size.
TRAINING_DRIVER_MEMORY = "4g"
REGION = "us-east-1"


@contextmanager
def local_s3(bucket: str = BUCKET) -> Iterator[dict[str, str]]:
    """An S3-compatible server on loopback with `bucket` created; yields the AWS_* variables that
    point every client at it (Spark's S3A through the settings, deltalake and fsspec directly)."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per S3 request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        variables = {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "homefeed",
            "AWS_SECRET_ACCESS_KEY": "homefeed-check",
            "AWS_ALLOW_HTTP": "true",  # deltalake refuses a plain-HTTP endpoint otherwise
        }
        boto3.client(
            "s3",
            endpoint_url=variables["AWS_ENDPOINT_URL"],
            region_name=REGION,
            aws_access_key_id=variables["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=variables["AWS_SECRET_ACCESS_KEY"],
        ).create_bucket(Bucket=bucket)
        yield variables
    finally:
        server.stop()


def object_store_environment(
    base: Mapping[str, str], s3: Mapping[str, str], *, warehouse: str, models_dir: Path, raw_input: str
) -> dict[str, str]:
    return {
        **base,
        **s3,
        "HOMEFEED_WAREHOUSE": warehouse,
        "HOMEFEED_MODELS_DIR": str(models_dir),
        "HOMEFEED_RAW_INPUT": raw_input,
    }


def upload_folder(local: Path, remote: Path) -> int:
    """Copy every file under `local` to the same relative place under `remote`; the number copied."""
    files = [path for path in sorted(local.rglob("*")) if path.is_file()]
    for path in files:
        target = remote / path.relative_to(local).as_posix()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    return len(files)


def run_json(command: Sequence[str], environment: Mapping[str, str]) -> dict:
    result = subprocess.run(list(command), env=dict(environment), capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout)


def object_storage_check(workdir: Path, *, users: int, seed: int) -> dict:
    from jobs.synthetic import WorldConfig, generate_world
    from models.fixed_rankers import register_fixed_rankers

    world = workdir / "world"
    shutil.rmtree(world, ignore_errors=True)
    generate_world(WorldConfig(n_users=users, seed=seed), out_dir=world)
    local_wh, models_dir = workdir / "local" / "warehouse", workdir / "object-store" / MODELS_DIRNAME
    for folder in (local_wh, models_dir):
        shutil.rmtree(folder, ignore_errors=True)
    register_fixed_rankers(local_wh, reason="fixed models of the object-storage check")
    shutil.copytree(local_wh / MODELS_DIRNAME, models_dir)
    base = {**os.environ, "PYTHONUNBUFFERED": "1"}
    local_env = build_environment(base, master=LOCAL_MASTER, warehouse=local_wh, raw_input=world / "raw", spark_conf={})
    local_seconds = run_build(local_env, log=workdir / "local" / "build.log")
    with local_s3() as s3:
        url, raw_url = f"s3a://{BUCKET}/warehouse", f"s3a://{BUCKET}/world/raw"
        with environment_variables(s3):  # the raw input lands on the object store (its world's truth beside it)
            uploaded = upload_folder(world, storage_path(f"s3a://{BUCKET}/world"))
        store_env = object_store_environment(local_env, s3, warehouse=url, models_dir=models_dir, raw_input=raw_url)
        store_seconds = run_build(store_env, log=workdir / "object-store" / "build.log")
        with environment_variables(s3):  # this process reads the store too (deltalake, fsspec)
            comparison = compare_warehouses(local_wh, storage_path(url), where="on object storage")
        sql = run_json(
            homefeed_command(
                "sql",
                "--format",
                "json",
                "SELECT count(*) AS feed_rows, count(DISTINCT user_id) AS users FROM ranked_feeds",
            ),
            store_env,
        )
        with _redis(workdir) as redis_url:
            published = run_json(homefeed_command("publish", "--json"), {**store_env, "HOMEFEED_REDIS_URL": redis_url})
        training_env = {**store_env, "HOMEFEED_SPARK_DRIVER_MEMORY": TRAINING_DRIVER_MEMORY}
        training = run_json(homefeed_command("training-set", "--json", *TRAINING_WINDOW), training_env)
        run_build(training_env, log=workdir / "object-store" / "rankers.log", steps=("key:rankers",))
    return {
        "equal": comparison.equal,
        "users": users,
        "seed": seed,
        "warehouse": url,
        "raw_input": raw_url,
        "raw_files_uploaded": uploaded,
        "tables_compared": len(comparison.rows),
        "rows_compared": sum(comparison.rows.values()),
        "local_seconds": local_seconds,
        "object_store_seconds": store_seconds,
        "missing_on_object_store": list(comparison.missing),
        "extra_on_object_store": list(comparison.extra),
        "differences": comparison.differences,
        "sql": sql,
        "published": {key: published[key] for key in ("version", "users", "items", "keys") if key in published},
        "training_rows": training["rows"],
        "rankers": registered_versions(models_dir),
        "rows": comparison.rows,
    }


def registered_versions(models_dir: Path) -> dict[str, list[int]]:
    """{model name: its registered versions} in the registry in `models_dir`."""
    from models.registry import ModelRegistry

    registry = ModelRegistry(models_dir)
    return {
        path.name: [v.version for v in registry.versions(path.name)]
        for path in sorted(models_dir.iterdir())
        if path.is_dir()
    }


@contextmanager
def environment_variables(variables: Mapping[str, str]) -> Iterator[None]:
    """`variables` set in this process for the block, the previous values back afterwards."""
    previous = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _redis(workdir: Path) -> Iterator[str]:
    server = start_redis(workdir / "redis")
    try:
        yield server.url
    finally:
        server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    return check_main(
        argv, description=__doc__.split("\n\n")[0], prefix="homefeed-object-storage-check-", check=object_storage_check
    )


if __name__ == "__main__":
    sys.exit(main())
