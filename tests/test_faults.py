"""Faults while publishing and serving, against real redis-servers that persist to disk (as a
deployment runs them): a publication killed midway and Redis restarted, and Redis going away under
the running API. Each proves nothing served was lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import httpx
import pyarrow.compute as pc
import pytest
import redis
from conftest import start_test_api
from test_publish import _assert_still_serving, kill_a_publication_midway, ranked_feeds_table, write_table

from core.redis_layout import feed_key
from core.redis_server import start_redis
from jobs.publish import publish_feeds
from serving.auth import mint_token

SECRET = "faults-secret-" + uuid.uuid4().hex


def test_a_killed_publication_then_a_redis_restart_still_serves_the_previous_version_in_full(tmp_path):
    workdir = tmp_path / "redis"
    server = start_redis(workdir, persistent=True)
    port = server.port
    client = redis.Redis(port=port)
    path = tmp_path / "ranked_feeds"
    first = ranked_feeds_table(users=40, per_user=3)
    write_table(path, first)
    publish_feeds(client, path)
    write_table(path, ranked_feeds_table(users=3000, per_user=2, salt=5))
    kill_a_publication_midway(server.url, path, client)
    server.process.send_signal(signal.SIGKILL)  # Redis dies too, without a clean shutdown
    server.process.wait()
    server = start_redis(workdir, port=port, persistent=True)
    try:
        client = redis.Redis(port=port)
        assert not client.exists(feed_key(2, 3000))
        _assert_still_serving(client, 1, first)
        assert publish_feeds(client, path, grace_seconds=120).version == 3
    finally:
        server.stop()


def test_the_api_fails_fast_while_redis_is_down_and_recovers_by_itself(tmp_path):
    workdir = tmp_path / "redis"
    server = start_redis(workdir, persistent=True)
    port = server.port
    path = tmp_path / "ranked_feeds"
    write_table(path, ranked_feeds_table(users=10, per_user=5))
    publish_feeds(redis.Redis(port=port), path)
    api = start_test_api(server.url, tmp_path, secret=SECRET)
    headers = {"Authorization": f"Bearer {mint_token(3, SECRET, now=time.time())}"}
    url = f"{api.base_url}/v1/users/3/timelines/for_you"
    try:
        assert httpx.get(url, headers=headers, timeout=30).status_code == 200
        server.stop()
        for _ in range(3):
            start = time.monotonic()
            response = httpx.get(url, headers=headers, timeout=30)
            assert response.status_code == 503 and "Redis unavailable" in response.json()["detail"]
            assert time.monotonic() - start < 5.0, "a request hung on the missing Redis"
        assert httpx.get(f"{api.base_url}/readyz", timeout=30).status_code == 503
        assert httpx.get(f"{api.base_url}/healthz", timeout=30).status_code == 200  # the process itself is fine
        server = start_redis(workdir, port=port, persistent=True)
        deadline = time.monotonic() + 15
        while (status := httpx.get(url, headers=headers, timeout=30).status_code) != 200:
            assert status == 503 and time.monotonic() < deadline, "the API did not recover when Redis returned"
            time.sleep(0.2)
        assert httpx.get(f"{api.base_url}/readyz", timeout=30).json()["status"] == "ready"
    finally:
        api.stop()
        server.stop()


def test_an_unpersisted_restart_is_reported_as_not_published(tmp_path):
    """Without persistence a restarted Redis is empty: serving says so (503), it does not crash."""
    server = start_redis(tmp_path / "redis")
    path = tmp_path / "ranked_feeds"
    write_table(path, ranked_feeds_table(users=5, per_user=2))
    publish_feeds(redis.Redis(port=server.port), path)
    api = start_test_api(server.url, tmp_path, secret=SECRET)
    try:
        port = server.port
        server.stop()
        server = start_redis(tmp_path / "redis-empty", port=port)
        time.sleep(1.2)  # past the pointer cache
        response = httpx.get(
            f"{api.base_url}/v1/users/1/timelines/for_you",
            timeout=30,
            headers={"Authorization": f"Bearer {mint_token(1, SECRET, now=time.time())}"},
        )
        assert response.status_code == 503 and "no published version" in response.json()["detail"]
    finally:
        api.stop()
        server.stop()


SLOW_DELTA_WRITE = """
import sys, time
from pathlib import Path
from pyspark.sql import functions as F
from jobs.delta_io import overwrite_delta
from jobs.spark_session import build_spark_session

spark = build_spark_session(master="local[2]", jars_cache_dir=Path(sys.argv[2]), app_name="killed-writer",
                            driver_memory="1g", shuffle_partitions=2)

def slow(rows):  # each partition takes seconds, so the writer is caught with files and no commit
    for row in rows:
        if row.id % 50_000 == 0:
            time.sleep(0.2)
        yield row

frame = spark.range(0, 2_000_000, numPartitions=8).rdd.mapPartitions(slow).toDF().withColumn("v", F.col("id") * 3)
overwrite_delta(frame, Path(sys.argv[1]))
"""


@pytest.mark.slow  # a second Spark JVM beside the session's: about a minute alone, three beside other suites
def test_a_spark_writer_killed_midway_leaves_the_delta_table_at_its_previous_version(spark, settings, tmp_path):
    from deltalake import DeltaTable

    from jobs.delta_io import overwrite_delta

    path = tmp_path / "table"
    overwrite_delta(spark.range(0, 1000).selectExpr("id", "id * 2 AS v"), path)
    before = DeltaTable(str(path))
    files_before = set(path.glob("*.parquet"))
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_DELTA_WRITE, str(path), str(settings.cache_dir)],
        env={**os.environ, "PYTHONPATH": os.getcwd()},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while not (set(path.glob("*.parquet")) - files_before):  # the new version's first data files
        assert process.poll() is None, "the writer ended before it was killed"
        assert time.monotonic() < deadline, "the writer wrote nothing within 4 minutes"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the driver and its JVM together
    process.wait()
    after = DeltaTable(str(path))
    assert after.version() == before.version() == 0
    assert after.to_pyarrow_table().sort_by("id").to_pydict() == {
        "id": list(range(1000)),
        "v": [2 * i for i in range(1000)],
    }
    # The rerun (the same job, uninterrupted) commits once, over the killed run's orphan files.
    overwrite_delta(spark.range(0, 2_000_000, numPartitions=8).selectExpr("id", "id * 3 AS v"), path)
    rerun = DeltaTable(str(path))
    assert rerun.version() == 1
    table = rerun.to_pyarrow_table()
    n = 2_000_000
    assert table.num_rows == n and len(set(table.column("id").to_pylist())) == n
    assert pc.sum(table.column("v")).as_py() == 3 * n * (n - 1) // 2


def test_a_new_table_whose_first_write_died_is_no_table_and_the_failed_runs_report_is_still_written(tmp_path):
    """What a Spark writer killed before the first commit of a new table leaves: its data files and
    an empty `_delta_log`. Readers cannot open that, so the warehouse listing, the DuckDB catalog and
    the run report (whose failure used to hide the failed step's own error) leave it out."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake import write_deltalake

    from cli.build import _write_run_report
    from core.storage import is_delta_table
    from jobs.duckdb_catalog import connect_warehouse, find_delta_tables
    from orchestration.run import RunOutcome, StepFailure

    tables = tmp_path / "tables"
    write_deltalake(str(tables / "users"), pa.table({"user_id": [1, 2, 3]}))
    died = tables / "user_tweet_features"
    (died / "_delta_log").mkdir(parents=True)
    pq.write_table(pa.table({"user_id": [1]}), died / "part-00000-orphan.snappy.parquet")

    assert is_delta_table(tables / "users") and not is_delta_table(died)
    assert list(find_delta_tables(tables)) == ["users"]
    assert connect_warehouse(tables).execute('SELECT count(*) FROM "users"').fetchone() == (3,)
    outcome = RunOutcome(
        success=False, materialized=(), failures=(StepFailure("user_tweet_features", "java.lang.OutOfMemoryError"),)
    )
    _write_run_report(tmp_path / "report.json", outcome, 12.0, tables)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["rows"] == {"users": 3}
    assert report["failures"] == [{"step": "user_tweet_features", "message": "java.lang.OutOfMemoryError"}]
