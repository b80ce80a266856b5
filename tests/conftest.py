"""Shared fixtures: one Spark session with Delta for the whole test session."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

# Spark returns naive timestamps in the process's local zone; make that UTC like the session's.
os.environ["TZ"] = "UTC"
time.tzset()

REPO_ROOT = Path(__file__).resolve().parents[1]
HIGGS_DIR = REPO_ROOT.parent / "shared" / "datasets" / "higgs-twitter"


@pytest.fixture(scope="session", autouse=True)
def dagster_home(tmp_path_factory):
    """The Dagster instance the CLI records its runs in, for this test session (not the repository's)."""
    home = tmp_path_factory.mktemp("dagster_home")
    os.environ["HOMEFEED_DAGSTER_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def settings(tmp_path_factory, dagster_home):
    from core.settings import load_settings

    # Tests get their own warehouse; the jar cache is the user's (filled by `make setup`).
    return load_settings(
        warehouse=tmp_path_factory.mktemp("warehouse"),
        spark_master=os.environ.get("HOMEFEED_SPARK_MASTER", "local[2]"),
        spark_shuffle_partitions=2,
        spark_driver_memory="4g",  # the default; the training-set builds hold many broadcast joins
    )


@pytest.fixture(scope="session")
def spark(settings):
    from jobs.spark_session import build_spark_session

    session = build_spark_session(
        master=settings.spark_master,
        jars_cache_dir=settings.cache_dir,
        app_name="homefeed-tests",
        driver_memory=settings.spark_driver_memory,
        shuffle_partitions=settings.spark_shuffle_partitions,
    )
    yield session
    session.stop()


@pytest.fixture(scope="session")
def generated_build(settings, spark, tmp_path_factory):
    """A 300-user generated world through the default build and the full candidate tables (every
    asset up to the feature tables, each with its data-quality check) as of the world's end: (run
    settings, outcome, generation summary)."""
    from evaluation.worlds import world_end_time
    from jobs.synthetic import WorldConfig, generate_world
    from orchestration.jobs import WITH_CANDIDATE_TABLES_SELECTION
    from orchestration.run import run_assets

    world = tmp_path_factory.mktemp("generated") / "world"
    summary = generate_world(WorldConfig(n_users=300, seed=3), out_dir=world)
    run_settings = settings.model_copy(
        update={
            "raw_input": world / "raw",
            "warehouse": world.parent / "warehouse",
            "as_of": world_end_time(world),
        }
    )
    return run_settings, run_assets(run_settings, selection=WITH_CANDIDATE_TABLES_SELECTION), summary


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A real redis-server for the session (persistence off), stopped at the end."""
    from core.redis_server import start_redis

    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server):
    """A client of the session's Redis, emptied before each test."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    return client


@pytest.fixture(scope="session")
def ranked_build(settings, spark, generated_build, tmp_path_factory):
    """ranked_feeds of the generated world (in a copy of its warehouse), scored by small test models,
    through Dagster with the table's blocking check."""
    import shutil

    from models.fixed_rankers import register_fixed_rankers
    from orchestration.run import run_assets

    run_settings, _, _ = generated_build
    warehouse = tmp_path_factory.mktemp("ranked") / "warehouse"
    shutil.copytree(run_settings.tables_dir, warehouse / "tables")
    register_fixed_rankers(warehouse, reason="test")
    ranked_settings = run_settings.model_copy(update={"warehouse": warehouse})
    return ranked_settings, run_assets(ranked_settings, selection="key:ranked_feeds")


@pytest.fixture(scope="module")
def published_redis(tmp_path_factory, ranked_build):
    """A Redis of the module's own holding one publication of the ranked test world: (server, version)."""
    from core.redis_server import start_redis
    from orchestration.publication import publish_to_redis

    server = start_redis(tmp_path_factory.mktemp("published-redis"))
    settings, _ = ranked_build
    result = publish_to_redis(server.url, settings.tables_dir)
    yield server, result.version
    server.stop()


def start_test_api(
    redis_url: str,
    workdir: Path,
    *,
    secret: str,
    env: str = "production",
    cluster: bool = False,
    environment: dict[str, str] | None = None,
):
    """The real app under uvicorn in a process of its own, reading `redis_url` (`cluster`: one node
    of a Redis Cluster; `environment`: more HOMEFEED_* settings)."""
    from core.redis_server import free_port
    from serving.api_server import start_api

    return start_api(
        port=free_port(),
        log_path=workdir / "api.log",
        environment={
            "HOMEFEED_REDIS_URL": redis_url,
            "HOMEFEED_REDIS_CLUSTER": str(int(cluster)),
            "HOMEFEED_SECRET": secret,
            "HOMEFEED_ENV": env,
            **(environment or {}),
        },
    )
