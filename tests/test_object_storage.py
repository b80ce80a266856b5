"""The warehouse on S3-compatible object storage: the settings that place it, the Spark settings
they produce, the Python readers (deltalake, DuckDB, table comparison) against a local S3 server,
and (slow) the whole build into `s3a://` compared with a local build."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest
from pydantic import ValidationError

from core.settings import HomefeedSettings
from core.storage import is_object_store, models_root, s3a_spark_conf, storage_path
from jobs.spark_session import hadoop_version
from orchestration.resource_bindings import resources_from_settings


def test_a_warehouse_is_a_local_path_or_an_s3_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not is_object_store("warehouse") and not is_object_store(tmp_path)
    assert is_object_store("s3a://bucket/wh") and is_object_store("s3://bucket/wh")
    assert storage_path("warehouse") == tmp_path / "warehouse"
    root = storage_path("s3a://bucket/prefix/wh/")
    assert str(root / "tables" / "users") == "s3a://bucket/prefix/wh/tables/users"
    with pytest.raises(ValueError, match="needs a bucket"):
        storage_path("s3a:///wh")


def test_an_object_store_warehouse_needs_a_file_system_model_registry(tmp_path):
    with pytest.raises(ValidationError, match="HOMEFEED_MODELS_DIR"):
        HomefeedSettings(warehouse="s3a://bucket/wh")
    with pytest.raises(ValidationError, match="needs a file-system path"):
        HomefeedSettings(warehouse="s3a://bucket/wh", models_dir="s3a://bucket/models")
    settings = HomefeedSettings(warehouse="s3a://bucket/wh", models_dir=tmp_path / "models")
    assert settings.models_root == tmp_path / "models"
    assert str(settings.tables_dir) == "s3a://bucket/wh/tables"
    assert settings.data_docs_dir is None
    local = HomefeedSettings(warehouse=tmp_path / "wh")
    assert local.models_root == tmp_path / "wh" / "models"
    assert local.data_docs_dir == tmp_path / "wh" / "data_quality" / "docs"
    assert models_root(tmp_path / "wh", tmp_path / "elsewhere") == tmp_path / "elsewhere"


def test_spark_gets_s3a_settings_from_the_aws_variables_only_for_an_object_store(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    settings = HomefeedSettings(warehouse="s3a://bucket/wh", models_dir=tmp_path / "models")
    conf = resources_from_settings(settings)["spark"].object_storage_conf
    assert conf == {
        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.endpoint.region": "eu-west-3",
        "spark.hadoop.fs.s3a.endpoint": "http://127.0.0.1:9000",
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
    }
    assert resources_from_settings(settings)["warehouse"].models_dir == tmp_path / "models"
    assert resources_from_settings(HomefeedSettings(warehouse=tmp_path))["spark"].object_storage_conf is None


def test_the_raw_input_may_be_on_object_storage_with_a_local_warehouse(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = HomefeedSettings(warehouse=tmp_path / "wh", raw_input="s3a://landing/events/raw/")
    assert settings.raw_input == "s3a://landing/events/raw/"  # not folded into a path ("s3a:/landing/...")
    assert str(settings.raw_dir) == "s3a://landing/events/raw"
    assert settings.object_storage_conf == s3a_spark_conf(endpoint=None, region=None)  # Spark reads it through S3A
    resources = resources_from_settings(settings)
    assert resources["warehouse"].raw_input == "s3a://landing/events/raw/"
    assert str(resources["warehouse"].raw_dir) == "s3a://landing/events/raw"
    assert resources["spark"].object_storage_conf is not None
    local = HomefeedSettings(warehouse=tmp_path / "wh", raw_input="data/raw")
    assert local.raw_dir == tmp_path / "data" / "raw" and local.object_storage_conf is None
    # AWS itself: no endpoint, virtual-host requests, TLS.
    assert s3a_spark_conf(endpoint=None, region=None) == {
        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem"
    }
    assert (
        s3a_spark_conf(endpoint="https://minio:9000", region=None)["spark.hadoop.fs.s3a.connection.ssl.enabled"]
        == "true"
    )


def test_hadoop_aws_matches_the_hadoop_that_spark_ships():
    assert (
        hadoop_version(["parquet-hadoop-1.17.0.jar", "hadoop-client-api-3.5.0.jar", "hadoop-client-runtime-3.5.0.jar"])
        == "3.5.0"
    )


@pytest.fixture
def s3_bucket(monkeypatch):
    """A local S3-compatible server (moto) with a bucket; this process's clients pointed at it."""
    from benchmarks.object_storage_check import BUCKET, local_s3

    with local_s3() as variables:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        yield BUCKET


def test_duckdb_and_table_comparison_read_delta_tables_on_object_storage(s3_bucket, tmp_path):
    from deltalake import write_deltalake

    from benchmarks.cluster_check import compare_warehouses
    from jobs.duckdb_catalog import connect_warehouse, find_delta_tables

    users = pa.table({"user_id": pa.array([1, 2, 3, 4], pa.int64()), "name": ["a", "b", "c", "d"]})
    follows = pa.table({"user_id": pa.array([1, 1, 2], pa.int64()), "followed_id": pa.array([2, 3, 3], pa.int64())})
    remote, local = storage_path(f"s3a://{s3_bucket}/wh"), tmp_path / "wh"
    for root in (remote, local):
        write_deltalake(str(root / "tables" / "users"), users.slice(0, 3), mode="overwrite")
        write_deltalake(str(root / "tables" / "users"), users, mode="overwrite")  # a second version
        write_deltalake(str(root / "tables" / "follows"), follows, mode="overwrite")

    assert sorted(find_delta_tables(remote / "tables")) == ["follows", "users"]
    con = connect_warehouse(remote / "tables")
    # Followers of user 3 are users 1 and 2: names a and b; the current version of users has 4 rows.
    assert con.execute(
        "SELECT string_agg(u.name, ',' ORDER BY u.name) FROM follows f JOIN users u "
        "ON u.user_id = f.user_id WHERE f.followed_id = 3"
    ).fetchone() == ("a,b",)
    assert con.execute("SELECT count(*) FROM users").fetchone() == (4,)

    assert compare_warehouses(local, remote).equal
    write_deltalake(str(remote / "tables" / "follows"), follows.slice(0, 2), mode="overwrite")
    assert compare_warehouses(local, remote, where="on object storage").differences == {
        "tables/follows": "3 rows locally, 2 on object storage"
    }


@pytest.mark.slow
def test_the_pipeline_writes_to_object_storage_what_it_writes_locally(tmp_path):
    """A tiny world through the default build and ranked_feeds into s3a:// on a local S3 server and
    into a local folder, configured by HOMEFEED_*/AWS_* variables only: every Delta table the same;
    then `homefeed sql` and `homefeed publish` read the object-store warehouse."""
    from benchmarks.object_storage_check import object_storage_check

    endpoint_before = os.environ.get("AWS_ENDPOINT_URL")
    summary = object_storage_check(tmp_path, users=150, seed=3)

    assert summary["missing_on_object_store"] == [] and summary["extra_on_object_store"] == []
    assert summary["differences"] == {}
    assert {"tables/users", "tables/twhin_user_embeddings", "tables/candidates", "tables/ranked_feeds"} <= set(
        summary["rows"]
    )
    feed_rows = summary["rows"]["tables/ranked_feeds"]
    assert feed_rows > 0 and summary["sql"][0]["feed_rows"] == feed_rows
    assert summary["published"]["items"] >= feed_rows
    # The training set built on the object store (its representations too), and the rankers trained
    # on it registered after the fixed models of version 1.
    assert min(summary["training_rows"].values()) > 0
    assert summary["rankers"] == {"heavy_ranker": [1, 2], "light_ranker": [1, 2]}
    assert os.environ.get("AWS_ENDPOINT_URL") == endpoint_before  # the check leaves this process's environment alone


def test_a_side_raw_input_on_object_storage_is_written_and_found_like_a_local_one(s3_bucket, tmp_path):
    """The training set's per-day side input (the raw input cut at a moment) goes under the
    warehouse, on object storage too; ingestion finds and checks its files there."""
    from datetime import timedelta

    import pyarrow.parquet as pq

    from core.contract import RAW_TABLES
    from evaluation.worlds import world_end_time
    from jobs.ingest import find_raw_files
    from jobs.synthetic import WorldConfig, generate_world
    from orchestration.side_builds import truncate_raw_input

    generate_world(WorldConfig(n_users=60, seed=1), out_dir=tmp_path / "world")
    raw = tmp_path / "world" / "raw"
    cutoff = world_end_time(tmp_path / "world") - timedelta(days=3)
    local, _ = truncate_raw_input(raw, tmp_path / "local-cut", cutoff=cutoff)
    side = storage_path(f"s3a://{s3_bucket}/wh/as_of/x/raw")
    (side / "stale" / "part-00000.parquet").parent.mkdir(parents=True, exist_ok=True)
    (side / "stale" / "part-00000.parquet").write_bytes(b"left by an earlier cut")

    out, _ = truncate_raw_input(raw, side, cutoff=cutoff)

    assert sorted(p.name for p in out.iterdir()) == sorted(t.name for t in RAW_TABLES)
    for table in RAW_TABLES:
        files = find_raw_files(out, table)
        assert [str(p) for p in files.paths] == [f"s3a://{s3_bucket}/wh/as_of/x/raw/{table.name}/part-00000.parquet"]
        with files.paths[0].open("rb") as handle:
            written = pq.read_table(handle)
        assert written.equals(pq.read_table(local / table.name / "part-00000.parquet"))  # the same cut as locally
    engagements = pq.read_table(local / "engagements" / "part-00000.parquet")
    assert 0 < engagements.num_rows < pq.read_table(raw / "engagements").num_rows  # the cut dropped some

    # A raw input that lives on object storage is cut the same way (read through fsspec).
    from_store, _ = truncate_raw_input(side, tmp_path / "cut-from-store", cutoff=cutoff - timedelta(days=1))
    again, _ = truncate_raw_input(local, tmp_path / "cut-again", cutoff=cutoff - timedelta(days=1))
    for table in RAW_TABLES:
        assert pq.read_table(from_store / table.name).equals(pq.read_table(again / table.name))


def test_client_events_drain_into_a_raw_input_on_object_storage(s3_bucket, redis_client):
    """`homefeed drain-events` with HOMEFEED_RAW_INPUT=s3a://...: each file is uploaded whole (no
    hidden name left behind), the log is emptied, and the raw-input sensor's fingerprint sees it."""
    import pyarrow.parquet as pq

    from core.contract import RAW_TABLES_BY_NAME
    from jobs.ingest import find_raw_files
    from orchestration.schedules import raw_input_fingerprint
    from serving.events import ARCHIVE_DIR, EVENT_LOG, drain_event_log, queue_log_append

    raw = storage_path(f"s3a://{s3_bucket}/landing/raw")
    assert raw_input_fingerprint(raw) is None  # nothing there yet
    records = [
        {"type": "like", "tweet_id": 11, "author_id": 2, "user_id": 1, "created_at_ms": 1_767_225_600_000},
        {"type": "follow", "target_user_id": 3, "user_id": 1, "created_at_ms": 1_767_225_601_000},
        {
            "type": "impression",
            "tweet_id": 12,
            "author_id": 3,
            "dwell_ms": 40,
            "user_id": 4,
            "created_at_ms": 1_767_225_602_000,
        },
    ]
    pipe = redis_client.pipeline()
    for record in records:
        queue_log_append(pipe, record)
    pipe.execute()

    result = drain_event_log(redis_client, raw, batch_events=2)

    assert result.events == 3 and redis_client.xlen(EVENT_LOG) == 0
    assert result.rows_per_table == {"engagements": 2, "follows": 1}
    uploaded = sorted(str(p) for p in raw.rglob("*") if p.is_file())
    assert uploaded == sorted(result.files) and all(f.startswith(f"s3a://{s3_bucket}/landing/raw/") for f in uploaded)
    assert not any(p.name.startswith(".") for p in raw.rglob("*"))
    engagements = find_raw_files(raw, RAW_TABLES_BY_NAME["engagements"]).paths
    rows = [row for path in engagements for row in pq.read_table(path.open("rb")).to_pylist()]
    assert sorted((r["user_id"], r["tweet_id"], r["action"]) for r in rows) == [(1, 11, "like"), (4, 12, "impression")]
    archived = [
        row for path in sorted((raw / ARCHIVE_DIR).iterdir()) for row in pq.read_table(path.open("rb")).to_pylist()
    ]
    assert [a["type"] for a in archived] == ["like", "follow", "impression"]

    before = raw_input_fingerprint(raw)
    pipe = redis_client.pipeline()
    queue_log_append(pipe, {"type": "follow", "target_user_id": 5, "user_id": 4, "created_at_ms": 1_767_225_603_000})
    pipe.execute()
    drain_event_log(redis_client, raw)
    assert before is not None and raw_input_fingerprint(raw) not in (None, before)  # a file landed
