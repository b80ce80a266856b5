"""The pipeline on a Spark standalone cluster (a master and two workers on loopback) writes the same
tables as a local-mode build; and the pieces of that check: starting the cluster, comparing tables."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake
from pydantic import ValidationError

from benchmarks.cluster_check import build_environment, compare_warehouses, table_difference, values_match
from core.redis_server import free_port
from core.settings import HomefeedSettings, load_settings
from jobs.spark_cluster import (
    ClusterStartError,
    StandaloneCluster,
    alive_workers,
    cluster_environment,
    java_home,
    master_command,
    wait_for_workers,
    worker_command,
)
from jobs.spark_session import driver_address_conf
from orchestration.resource_bindings import resources_from_settings

NAN = float("nan")


def test_daemon_commands_bind_loopback_and_size_the_worker():
    spark = Path("/spark")
    assert master_command(spark, port=7077, webui_port=8080) == [
        "/spark/bin/spark-class",
        "org.apache.spark.deploy.master.Master",
        "--host",
        "127.0.0.1",
        "--port",
        "7077",
        "--webui-port",
        "8080",
    ]
    worker = worker_command(spark, "spark://127.0.0.1:7077", cores=1, memory="1g", webui_port=8081, work_dir=Path("/w"))
    assert worker[:3] == ["/spark/bin/spark-class", "org.apache.spark.deploy.worker.Worker", "spark://127.0.0.1:7077"]
    assert " ".join(worker[3:]) == "--host 127.0.0.1 --cores 1 --memory 1g --webui-port 8081 --work-dir /w"


def test_only_alive_workers_count():
    state = {"workers": [{"state": "ALIVE"}, {"state": "DEAD"}, {"state": "ALIVE"}]}
    assert alive_workers(state) == 2
    assert alive_workers({}) == 0


def test_executors_get_this_python_spark_and_java():
    environment = cluster_environment(
        {"PATH": "/bin", "PYSPARK_PYTHON": "python3"},
        spark=Path("/spark"),
        java=Path("/jdk"),
        python="/venv/bin/python",
    )
    assert environment["PYSPARK_PYTHON"] == "/venv/bin/python"
    assert (environment["SPARK_HOME"], environment["JAVA_HOME"]) == ("/spark", "/jdk")
    assert environment["SPARK_LOCAL_IP"] == "127.0.0.1" and environment["PATH"] == "/bin"


def test_java_home_is_the_variable_else_the_jdk_of_java_on_path(tmp_path):
    assert java_home({"JAVA_HOME": "/opt/jdk"}) == Path("/opt/jdk")
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\n")
    java.chmod(0o755)
    assert java_home({"PATH": str(java.parent)}) == tmp_path / "jdk"
    assert java_home({"PATH": str(tmp_path)}) is None


def test_a_daemon_that_exits_fails_the_start_at_once_with_its_log(tmp_path):
    log = tmp_path / "worker-0.log"
    log.write_text("starting\njava.net.BindException: Address already in use\n")
    cluster = StandaloneCluster("spark://127.0.0.1:1", free_port(), [subprocess.Popen(["true"])], [log])
    cluster.processes[0].wait()
    with pytest.raises(ClusterStartError, match="worker-0 exited; 0 of 2 workers alive") as error:
        wait_for_workers(cluster, workers=2, timeout_seconds=60)
    assert "BindException" in str(error.value)


@pytest.mark.parametrize(
    "master, on_loopback",
    [
        ("local[2]", True),
        ("spark://127.0.0.1:7077", True),
        ("spark://localhost:7077,127.0.0.1:7078", True),
        ("spark://10.0.0.5:7077", False),
        ("spark://127.0.0.1:7077,10.0.0.5:7077", False),
        ("yarn", False),
    ],
)
def test_the_driver_is_on_loopback_only_when_its_executors_are(master, on_loopback):
    conf = driver_address_conf(master)
    assert (conf.get("spark.driver.host") == "127.0.0.1") is on_loopback
    assert on_loopback or conf == {}


def test_spark_conf_setting_reaches_the_spark_resource(monkeypatch):
    monkeypatch.setenv("HOMEFEED_SPARK_CONF", '{"spark.executor.memory": "2g"}')
    assert resources_from_settings(load_settings())["spark"].extra_conf == {"spark.executor.memory": "2g"}
    monkeypatch.setenv("HOMEFEED_SPARK_CONF", '{"executor.memory": "2g"}')
    with pytest.raises(ValidationError, match="spark_conf"):
        HomefeedSettings()


def test_builds_differ_only_in_their_settings(tmp_path):
    local = build_environment(
        {"PATH": "/bin"}, master="local[2]", warehouse=tmp_path / "a", raw_input=tmp_path / "raw", spark_conf={}
    )
    cluster = build_environment(
        {"PATH": "/bin"},
        master="spark://127.0.0.1:1",
        warehouse=tmp_path / "b",
        raw_input=tmp_path / "raw",
        spark_conf={"spark.executor.memory": "1g"},
    )
    differing = {name for name in local.keys() | cluster.keys() if local.get(name) != cluster.get(name)}
    assert differing == {"HOMEFEED_SPARK_MASTER", "HOMEFEED_WAREHOUSE", "HOMEFEED_SPARK_CONF"}
    assert json.loads(cluster["HOMEFEED_SPARK_CONF"]) == {"spark.executor.memory": "1g"}


def test_values_match_within_float_tolerance_all_the_way_down():
    assert values_match(1.0, 1.0 + 1e-12) and values_match(NAN, NAN) and values_match(None, None)
    assert not values_match(1.0, 1.001) and not values_match(NAN, 1.0) and not values_match(None, 0.0)
    assert values_match([1.0, {"a": 2.0}], [1.0 + 1e-12, {"a": 2.0}])
    assert not values_match([1.0], [1.0, 2.0]) and not values_match({"a": 1}, {"b": 1})


def test_table_difference_ignores_row_order_and_summation_noise():
    local = pa.table({"id": [1, 2, 3], "score": [0.1 + 0.2, 0.5, NAN], "tags": [["a"], [], None]})
    shuffled = pa.table({"id": [3, 1, 2], "score": [NAN, 0.3, 0.5], "tags": [None, ["a"], []]})
    assert table_difference(local, shuffled) is None
    assert table_difference(local, local.slice(0, 2)) == "3 rows locally, 2 on the cluster"
    assert (
        table_difference(local, local.set_column(1, "score", pa.array([0.3, 0.6, NAN])))
        == "sorted row 1: score 0.5 locally, 0.6 on the cluster"
    )
    assert "columns" in table_difference(local, local.drop_columns(["tags"]))


def _warehouse(root: Path, tables: dict[str, pa.Table]) -> Path:
    for name, table in tables.items():
        write_deltalake(str(root / "tables" / name), table)
    return root


def test_compare_warehouses_catches_a_missing_an_extra_and_a_different_table(tmp_path):
    users = pa.table({"user_id": [1, 2]})
    follows = pa.table({"follower_id": [1], "followee_id": [2]})
    local = _warehouse(tmp_path / "local", {"users": users, "follows": follows, "as_of/x/tables/users": users})
    same = _warehouse(tmp_path / "same", {"follows": follows, "users": users, "as_of/x/tables/users": users})
    other = _warehouse(
        tmp_path / "other", {"users": pa.table({"user_id": [1, 3]}), "lists": users, "as_of/x/tables/users": users}
    )

    assert compare_warehouses(local, same).equal
    assert compare_warehouses(local, same).rows == {
        "tables/as_of/x/tables/users": 2,
        "tables/follows": 1,
        "tables/users": 2,
    }
    comparison = compare_warehouses(local, other)
    assert not comparison.equal
    assert comparison.missing == ("tables/follows",) and comparison.extra == ("tables/lists",)
    assert list(comparison.differences) == ["tables/users"]


@pytest.mark.slow
def test_the_pipeline_on_a_standalone_cluster_writes_what_local_mode_writes(tmp_path):
    """A tiny world through the default build and ranked_feeds, once with local[2] and once on a
    master and two one-core workers, configured by HOMEFEED_* variables only: every Delta table the
    same (floats within 1e-6)."""
    from benchmarks.cluster_check import cluster_check

    summary = cluster_check(tmp_path, users=150, seed=3)

    assert summary["missing_on_cluster"] == [] and summary["extra_on_cluster"] == []
    assert summary["differences"] == {}
    tables = set(summary["rows"])
    # Every stage of the build, the Python (Arrow / pandas) UDF ones on the executors included.
    assert {
        "tables/users",
        "tables/realgraph",
        "tables/simclusters_interested_in",
        "tables/twhin_user_embeddings",
        "tables/candidates",
        "tables/user_tweet_features",
        "tables/ranked_feeds",
    } <= tables
    assert summary["rows"]["tables/ranked_feeds"] > 0 and summary["rows"]["tables/candidates"] > 0
