"""The ingestion assets through Dagster on a tiny world: materialization, quarantine, idempotent
rerun, and the same tables seen by Spark, deltalake and DuckDB."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from deltalake import DeltaTable
from raw_world import AS_OF, at, tiny_world, write_world

from cli.main import main
from core.contract import RAW_TABLES
from jobs.delta_io import rows_in_table
from jobs.duckdb_catalog import connect_warehouse
from orchestration.run import run_assets

BROKEN_FOLLOW = dict(follower_id=3, followee_id=3, created_at=at(0))
DANGLING_ENGAGEMENT = dict(user_id=1, tweet_id=4242, action="like", created_at=at(1), dwell_ms=None)


# The tiny world's tweets are a month older than its build time and its graph is too small for
# some derived tables to have rows: the checks that would (rightly) flag that are relaxed here.
TINY_WORLD_BOUNDS = {"freshness_hours": 1e6, "min_rows": 0}


def _world_with_broken_rows() -> dict[str, list[dict]]:
    world = tiny_world()
    world["follows"].append(BROKEN_FOLLOW)
    world["engagements"].append(DANGLING_ENGAGEMENT)
    return world


def _table_rows(spark, path: Path) -> list[tuple]:
    return sorted(tuple(r) for r in spark.read.format("delta").load(str(path)).collect())


@pytest.fixture(scope="module")
def built(settings, spark, tmp_path_factory):
    """Run every asset once on the tiny world; returns (settings, outcome)."""
    raw = write_world(tmp_path_factory.mktemp("raw") / "raw", _world_with_broken_rows())
    run_settings = settings.model_copy(update={"raw_input": raw, "as_of": AS_OF, "dq_bounds": TINY_WORLD_BOUNDS})
    outcome = run_assets(run_settings)
    return run_settings, outcome


def test_every_asset_materializes(built):
    run_settings, outcome = built
    assert outcome.success, outcome.failures
    expected = {t.name for t in RAW_TABLES} | {f"quarantine_{t.name}" for t in RAW_TABLES}
    assert expected <= set(outcome.materialized)
    assert {f"ingest_{t.name}" for t in RAW_TABLES} <= set(outcome.step_seconds)
    # The default build reaches the feature tables; the training set runs on its own, and the full
    # user x candidate tables only on demand (ranked_feeds retrieves and scores in one pass).
    assert {
        "realgraph",
        "simclusters_interested_in",
        "twhin_user_embeddings",
        "user_features",
        "author_features",
        "tweet_features",
        "user_author_features",
    } <= set(outcome.materialized)
    assert not {"training_examples", "candidates", "user_tweet_features"} & set(outcome.materialized)


def test_tables_hold_the_valid_rows_and_quarantine_the_rest(built, spark):
    run_settings, _ = built
    world = tiny_world()
    for table in RAW_TABLES:
        path = run_settings.tables_dir / table.name
        assert spark.read.format("delta").load(str(path)).count() == len(world[table.name]), table.name
    con = connect_warehouse(run_settings.tables_dir)
    rules = con.execute("SELECT source_table, rule, record FROM quarantine ORDER BY ALL").fetchall()
    assert [(s, r) for s, r, _ in rules] == [
        ("engagements", "dangling_tweet_id"),
        ("follows", "self_reference:follower_id=followee_id"),
    ]
    assert json.loads(rules[0][2])["tweet_id"] == "4242"


def test_spark_deltalake_and_duckdb_agree(built, spark):
    run_settings, _ = built
    con = connect_warehouse(run_settings.tables_dir)
    for table in RAW_TABLES:
        path = run_settings.tables_dir / table.name
        spark_count = spark.read.format("delta").load(str(path)).count()
        delta_count = DeltaTable(str(path)).to_pyarrow_table().num_rows
        (duck_count,) = con.execute(f'SELECT count(*) FROM "{table.name}"').fetchone()
        assert spark_count == delta_count == duck_count, table.name
        protocol = DeltaTable(str(path)).protocol()
        assert "deletionVectors" not in (protocol.writer_features or []), table.name


def test_rerun_leaves_every_table_identical(built, spark):
    run_settings, _ = built
    paths = [p for p in sorted(run_settings.tables_dir.iterdir()) if (p / "_delta_log").is_dir()]
    before = {p.name: _table_rows(spark, p) for p in paths}

    outcome = run_assets(run_settings, checks=False)  # the tables are the question here, not their checks

    assert outcome.success, outcome.failures
    assert {p.name: _table_rows(spark, p) for p in paths} == before


def test_failed_run_names_the_step_and_keeps_old_tables(built, spark, tmp_path, capsys):
    run_settings, _ = built
    warehouse = tmp_path / "warehouse"
    shutil.copytree(run_settings.warehouse, warehouse)
    raw = write_world(tmp_path / "raw", tiny_world())
    for part in (raw / "follows").iterdir():
        part.write_bytes(b"not parquet at all")
    follows = warehouse / "tables" / "follows"
    follows_before = (DeltaTable(str(follows)).version(), _table_rows(spark, follows))

    code = main(["run", "--input", str(raw), "--warehouse", str(warehouse)])

    err = capsys.readouterr().err
    assert code == 1
    assert "FAILED step ingest_follows: RawInputError: follows:" in err, err[-2000:]
    assert "not a readable Parquet file" in err
    assert (DeltaTable(str(follows)).version(), _table_rows(spark, follows)) == follows_before


def test_a_cli_run_is_recorded_in_the_dagster_instance_the_ui_opens(settings, tmp_path, monkeypatch, capsys):
    """`homefeed run` writes its run, each table's materialization with its row count and each check's
    result into the instance of HOMEFEED_DAGSTER_HOME, the folder `make dagster` serves."""
    home = tmp_path / "dagster_home"
    monkeypatch.setenv("HOMEFEED_DAGSTER_HOME", str(home))
    monkeypatch.setenv("HOMEFEED_DQ_BOUNDS", json.dumps(TINY_WORLD_BOUNDS))
    monkeypatch.setenv("HOMEFEED_AS_OF", AS_OF.isoformat())
    raw = write_world(tmp_path / "raw", tiny_world())
    world = tiny_world()

    code = main(["run", "--input", str(raw), "--warehouse", str(tmp_path / "warehouse"), "--select", "group:bronze"])

    assert code == 0, capsys.readouterr().err[-2000:]
    instance = dg.DagsterInstance.from_config(str(home))
    (run,) = instance.get_runs()
    assert run.status == dg.DagsterRunStatus.SUCCESS
    for table in RAW_TABLES:
        event = instance.get_latest_materialization_event(dg.AssetKey(table.name))
        assert event is not None and event.run_id == run.run_id, table.name
        assert event.asset_materialization.metadata["dagster/row_count"].value == len(world[table.name]), table.name
        check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey(table.name), "quality")]
        )
        assert check[dg.AssetCheckKey(dg.AssetKey(table.name), "quality")].status.value == "SUCCEEDED", table.name


def test_sql_command_prints_json_rows(built, capsys):
    run_settings, _ = built
    code = main(
        [
            "sql",
            "SELECT user_id, handle FROM users ORDER BY user_id",
            "--warehouse",
            str(run_settings.warehouse),
            "--format",
            "json",
        ]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out) == [
        {"user_id": u["user_id"], "handle": u["handle"]} for u in tiny_world()["users"]
    ]


def test_sql_command_reports_a_bad_query(built, capsys):
    run_settings, _ = built
    code = main(["sql", "SELECT nope FROM users", "--warehouse", str(run_settings.warehouse)])
    assert code == 1
    assert "nope" in capsys.readouterr().err


def test_duckdb_database_file_keeps_the_views(built, tmp_path):
    import duckdb

    run_settings, _ = built
    db = tmp_path / "homefeed.duckdb"
    assert main(["duckdb", "--warehouse", str(run_settings.warehouse), "--db", str(db)]) == 0
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM tweets").fetchone() == (len(tiny_world()["tweets"]),)
    assert con.execute("SELECT count(*) FROM quarantine").fetchone() == (2,)


def test_definitions_load_with_resources():
    from orchestration.definitions import defs

    definitions = defs()
    assert isinstance(definitions, dg.Definitions)
    graph = definitions.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"users", "follows", "tweets", "engagements", "quarantine_users"} <= keys
    assert dg.AssetKey("users") in graph.get(dg.AssetKey("engagements")).parent_keys
    build_all = {k.to_user_string() for k in definitions.resolve_job_def("build_all").asset_layer.executable_asset_keys}
    assert {"user_features", "user_author_features", "follow_graph_two_hop"} <= build_all
    assert not {"training_examples", "rankers", "ranked_feeds", "candidates", "user_tweet_features"} & build_all
    on_demand = definitions.resolve_job_def("candidate_tables")
    assert {k.to_user_string() for k in on_demand.asset_layer.executable_asset_keys} == {
        "candidates",
        "user_tweet_features",
    }
    training = definitions.resolve_job_def("training_set")
    assert {k.to_user_string() for k in training.asset_layer.executable_asset_keys} == {"training_examples", "rankers"}
    ranking = definitions.resolve_job_def("rank_feeds")
    assert {k.to_user_string() for k in ranking.asset_layer.executable_asset_keys} == {
        "ranked_feeds",
        "ranked_feeds_sample",
    }


def test_a_spark_failure_is_reported_by_its_exception_lines_without_the_jvm_frames():
    from orchestration.errors import without_jvm_frames

    head = (
        "An error occurred while calling o412.save.\n: org.apache.spark.SparkException: Job aborted due to stage "
        "failure: Task 3 in stage 41.0 failed 1 times: java.lang.OutOfMemoryError: Java heap space"
    )
    message = (
        f"{head}\n\tat java.base/java.util.Arrays.copyOf(Arrays.java:3537)\n"
        "\tat org.apache.spark.sql.execution.Sort$$anon$1.apply(Sort.scala:12)\n\t... 17 more\n"
        "Caused by: java.lang.OutOfMemoryError: Java heap space\n\tat org.apache.A$B.<init>(A.scala:5)\n"
    )
    assert without_jvm_frames(message) == f"{head}\nCaused by: java.lang.OutOfMemoryError: Java heap space"
    # Lines of other messages that only start like a frame stay.
    assert without_jvm_frames("bad value\n  at position 3") == "bad value\n  at position 3"


def test_a_group_selection_parses_without_dagsters_beta_warning():
    import warnings

    from orchestration.definitions import defs
    from orchestration.run import selection_from_string

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        selected = selection_from_string("group:training")
    graph = defs().resolve_asset_graph()
    assert {k.to_user_string() for k in selected.resolve(graph)} == {"training_examples", "rankers"}


def test_a_generated_world_meets_the_contract_entirely(generated_build):
    """Every row the synthetic generator writes passes ingestion: nothing is quarantined."""
    run_settings, outcome, summary = generated_build
    assert outcome.success, (outcome.failures, outcome.failed_checks)
    for table in RAW_TABLES:
        assert rows_in_table(run_settings.tables_dir / f"quarantine_{table.name}") == 0, table.name
        assert rows_in_table(run_settings.tables_dir / table.name) == summary.rows_per_table[table.name]


def test_every_table_of_a_generated_world_passes_its_checks(generated_build):
    """The blocking data-quality checks ran on every table of the default build, and all passed."""
    from data_quality.specs import TABLE_SPECS

    _, outcome, _ = generated_build
    built_tables = {name for name in outcome.materialized if name in TABLE_SPECS}
    assert len(built_tables) == len(TABLE_SPECS) - 2  # all but training_examples and ranked_feeds
    assert set(outcome.checks_passed) == built_tables and not outcome.failed_checks


def test_raw_input_sensor_requests_a_build_when_input_lands_and_settles(tmp_path):
    import os

    from orchestration.resources import WarehouseResource
    from orchestration.schedules import raw_input_fingerprint, raw_input_sensor

    raw = tmp_path / "raw"
    resources = {"warehouse": WarehouseResource(path=str(tmp_path / "warehouse"), raw_input=str(raw))}

    instance = dg.DagsterInstance.ephemeral()

    def evaluate(cursor):
        context = dg.build_sensor_context(cursor=cursor, resources=resources, instance=instance)
        return raw_input_sensor(context), context.cursor

    result, _ = evaluate(None)
    assert isinstance(result, dg.SkipReason) and "no raw input" in result.skip_message
    (raw / "users").mkdir(parents=True)
    (raw / "users" / "part-0.parquet").write_bytes(b"first")
    landing, cursor = evaluate(None)
    assert isinstance(landing, dg.SkipReason) and "settle" in landing.skip_message  # seen once: may still be landing
    settled, cursor = evaluate(cursor)
    assert isinstance(settled, dg.RunRequest) and settled.run_key == f"raw-input-{raw_input_fingerprint(raw)}"
    unchanged, same = evaluate(cursor)
    assert isinstance(unchanged, dg.SkipReason) and same == cursor
    (raw / "engagements").mkdir()
    (raw / "engagements" / "part-0.parquet").write_bytes(b"a new day")
    landing, cursor = evaluate(cursor)
    assert isinstance(landing, dg.SkipReason)
    (raw / "engagements" / "part-0.parquet").write_bytes(b"a new day, still growing")
    growing, cursor = evaluate(cursor)
    assert isinstance(growing, dg.SkipReason)  # changed again: wait again
    landed, cursor = evaluate(cursor)
    assert isinstance(landed, dg.RunRequest) and landed.run_key != settled.run_key
    # While a daily build runs, new input waits for it (the cursor is kept) instead of starting another.
    (raw / "tweets").mkdir()
    (raw / "tweets" / "part-0.parquet").write_bytes(b"more")
    landing, cursor = evaluate(cursor)
    running = instance.add_run(dg.DagsterRun(job_name="daily_build", status=dg.DagsterRunStatus.STARTED))
    waiting, kept = evaluate(cursor)
    assert isinstance(waiting, dg.SkipReason) and running.run_id in waiting.skip_message and kept == cursor
    instance.handle_run_event(
        running.run_id, dg.DagsterEvent(event_type_value=dg.DagsterEventType.RUN_SUCCESS.value, job_name="daily_build")
    )
    after, cursor = evaluate(cursor)
    assert isinstance(after, dg.RunRequest)
    # A file rewritten in place (same name and size, another time) is new input too.
    os.utime(raw / "users" / "part-0.parquet", ns=(1, 1))
    _, cursor = evaluate(cursor)
    rewritten, _ = evaluate(cursor)
    assert isinstance(rewritten, dg.RunRequest)


def test_daily_build_job_and_schedule_cover_ingest_to_ranked_feeds():
    from core.settings import load_settings
    from orchestration.definitions import build_definitions

    definitions = build_definitions(load_settings())
    daily = definitions.resolve_job_def("daily_build")
    keys = {k.to_user_string() for k in daily.asset_layer.executable_asset_keys}
    assert {"users", "engagements", "user_features", "ranked_feeds", "ranked_feeds_sample"} <= keys
    assert not keys & {"training_examples", "rankers", "candidates", "user_tweet_features"}
    assert {k.asset_key.to_user_string() for k in daily.asset_layer.asset_graph.asset_check_keys} >= {
        "ranked_feeds",
        "users",
    }
    (schedule,) = definitions.schedules
    assert schedule.cron_schedule == "0 4 * * *" and schedule.job_name == "daily_build"
    with dg.instance_for_test() as instance:
        assert isinstance(schedule(dg.build_schedule_context(instance=instance)), dg.RunRequest)
        running = instance.add_run(dg.DagsterRun(job_name="daily_build", status=dg.DagsterRunStatus.STARTED))
        skipped = schedule(dg.build_schedule_context(instance=instance))
        assert isinstance(skipped, dg.SkipReason) and running.run_id in skipped.skip_message
        # A run left "started" by a process that died a day ago holds nothing back.
        from orchestration.schedules import STALE_RUN_AFTER, build_in_progress

        later = datetime.now(UTC) + STALE_RUN_AFTER + timedelta(minutes=1)
        assert build_in_progress(instance) == running.run_id and build_in_progress(instance, now=later) is None
