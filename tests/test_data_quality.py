"""The data-quality suites: every table of a generated world passes its suite (test_pipeline), and
here, a deliberately broken copy of each fails on the expectations its breakage violates.

Each table is broken in one row per kind of check its spec declares (a null where none may be, a
value out of range, a value outside its set, a dangling reference, a rank out of sequence, a pair
that must differ made equal, a duplicated key), and every one of those expectations must fail.
The distribution, coverage and freshness checks are broken through their thresholds below.
"""

from __future__ import annotations

from datetime import UTC, timedelta
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from core.quality_bounds import QualityBounds
from data_quality.specs import TABLE_SPECS, TableSpec
from data_quality.validation import check_table, check_tables
from jobs.delta_io import is_delta_table, read_delta
from jobs.spark_session import session_conf

ROW = "_test_row"
MISSING_ID = 10**15  # no table has an id this large


def _reader(spark, tables_dir):
    return lambda name: read_delta(spark, tables_dir / name)


def _numeric(dtype: str) -> bool:
    return dtype in ("bigint", "int", "double", "float")


def breakages(spec: TableSpec) -> list[tuple[str, object, str]]:
    """(column, Spark expression of the bad value, words of the expectation that must fail), one per
    kind of check the spec declares."""
    columns = {c.name: c for c in spec.columns}
    used = set()
    out = []

    def add(column, value, expectation):
        if column not in used:
            used.add(column)
            out.append((column, value, expectation))

    for ref in spec.references:
        if not ref.forbidden and _numeric(columns[ref.columns[0]].dtype):
            add(
                ref.columns[0],
                F.lit(MISSING_ID).cast(columns[ref.columns[0]].dtype),
                f"exists in {ref.table}({', '.join(ref.target_columns)})",
            )
            break
    for rank in spec.ranks:
        add(rank.rank, F.col(rank.rank) + 100_000, f"{rank.rank} counts 1, 2, 3")
    for a, b in spec.distinct_columns:
        if a not in used and b not in used:
            add(b, F.col(a), f"{a} differs from {b}")
    for bound in spec.bounds:
        if bound.min is not None and bound.column not in used:
            add(bound.column, F.lit(bound.min - 1).cast(columns[bound.column].dtype), f"{bound.column} within [")
            break
    for in_set in spec.sets:
        dtype = columns[in_set.column].dtype
        bogus = (
            F.array(F.lit("bogus"))
            if dtype.startswith("array<")
            else F.lit(7).cast(dtype)
            if _numeric(dtype)
            else F.lit("bogus")
        )
        words = f"every element of {in_set.column}" if dtype.startswith("array<") else f"{in_set.column} is one of"
        add(in_set.column, bogus, words)
        break
    for column in spec.columns:
        if not column.nullable and column.name not in spec.key and column.name not in used:
            add(column.name, F.lit(None).cast(column.dtype), f"{column.name} is never null")
            break
    return out


def broken_copy(table: DataFrame, spec: TableSpec, changes) -> DataFrame:
    """`table` with change i applied to its (i+1)-th row, plus a duplicate of its last row when the
    spec has a key."""
    order = [F.col(c) for c in (spec.key or spec.column_names) if not c.startswith("_")]
    numbered = table.withColumn(ROW, F.row_number().over(Window.orderBy(*order)))
    for i, (column, value, _) in enumerate(changes):
        numbered = numbered.withColumn(column, F.when(F.col(ROW) == i + 1, value).otherwise(F.col(column)))
    broken = numbered.drop(ROW)
    if spec.key:
        last = numbered.where(F.col(ROW) == len(changes) + 1).drop(ROW)
        broken = broken.unionByName(last)
    return broken


def _failed(result) -> list[str]:
    return [o.description for o in result.failures]


BUILT_TABLES = sorted(set(TABLE_SPECS) - {"training_examples", "ranked_feeds"})


@pytest.mark.parametrize("name", BUILT_TABLES)
def test_a_broken_table_fails_on_the_expectations_it_violates(spark, generated_build, name):
    run_settings, outcome, _ = generated_build
    assert name in outcome.checks_passed  # the good table passed (the run's blocking check)
    spec, read = TABLE_SPECS[name], _reader(spark, run_settings.tables_dir)
    table = read(name)
    as_of = run_settings.as_of
    if table.isEmpty():
        # Nothing to break in place (a quarantine table of a clean world): one row of nulls.
        table = spark.createDataFrame([tuple(None for _ in table.columns)], table.schema)
        expected = [f"{c.name} is never null" for c in spec.columns if not c.nullable]
    else:
        changes = breakages(spec)
        table = broken_copy(table, spec, changes)
        expected = [words for _, _, words in changes]
        if spec.key:
            expected.append("is unique")
    result = check_table(table, spec, read, as_of=as_of)
    assert not result.success
    failed = _failed(result)
    for words in expected:
        assert any(words in description for description in failed), (words, failed)


def test_a_column_of_the_wrong_type_or_a_missing_one_fails_the_schema(spark, generated_build):
    run_settings, _, _ = generated_build
    read = _reader(spark, run_settings.tables_dir)
    spec = TABLE_SPECS["user_follow_counts"]
    retyped = read("user_follow_counts").withColumn("follower_count", F.col("follower_count").cast("double"))
    failed = _failed(check_table(retyped, spec, read, as_of=run_settings.as_of))
    assert any("follower_count is bigint" in d for d in failed), failed
    dropped = read("user_follow_counts").drop("mutual_count")
    failed = _failed(check_table(dropped, spec, read, as_of=run_settings.as_of))
    assert any("has exactly its declared columns" in d for d in failed), failed


def test_engagements_per_impression_may_exceed_one_but_a_single_action_rate_only_rarely(spark, generated_build):
    """engagement_rate_7d counts every positive action of an impression (liked and clicked: 2), so
    above 1 is valid; like_rate_7d, one action, may pass 1 in 0.1% of rows (an impression just
    before the window), not in one of the 300-user world's users (0.33%)."""
    run_settings, _, _ = generated_build
    read = _reader(spark, run_settings.tables_dir)
    first = read("user_features").agg(F.min("user_id")).first()[0]
    table = (
        read("user_features")
        .withColumn("engagement_rate_7d", F.when(F.col("user_id") == first, 2.5).otherwise(F.col("engagement_rate_7d")))
        .withColumn("like_rate_7d", F.when(F.col("user_id") == first, 1.5).otherwise(F.col("like_rate_7d")))
    )
    failed = _failed(check_table(table, TABLE_SPECS["user_features"], read, as_of=run_settings.as_of))
    assert [d for d in failed if "rate_7d" in d] == ["like_rate_7d within [-, 1] for at least 99.9% of rows"], failed


def test_stale_tweets_fail_freshness(spark, generated_build):
    run_settings, _, _ = generated_build
    read = _reader(spark, run_settings.tables_dir)
    newest = read("tweets").agg(F.max("created_at")).first()[0]
    # The newest tweet is within the bound at the build time, and not 49 hours later.
    later = run_settings.as_of + timedelta(hours=49)
    assert check_table(read("tweets"), TABLE_SPECS["tweets"], read, as_of=run_settings.as_of).success
    failed = _failed(check_table(read("tweets"), TABLE_SPECS["tweets"], read, as_of=later))
    assert failed == ["the newest created_at is at most 48 h before the build time (freshness_hours)"], (newest, failed)


def test_pool_sizes_and_coverage_outside_their_bounds_fail(spark, generated_build):
    run_settings, _, _ = generated_build
    read = _reader(spark, run_settings.tables_dir)
    candidates = read("candidates")
    pools = candidates.groupBy("user_id").count().agg(F.avg("count")).first()[0]
    active = (
        read("engagements")
        .where(
            (F.col("created_at") >= F.lit(run_settings.as_of - timedelta(days=7)))
            & (F.col("created_at") < F.lit(run_settings.as_of))
        )
        .select("user_id")
        .distinct()
    )
    covered = active.join(candidates.select("user_id").distinct(), "user_id").count() / active.count()
    strict = QualityBounds(candidates_per_user=(pools + 1, pools + 2), candidate_user_share=min(covered + 0.01, 1.01))
    failed = _failed(check_table(candidates, TABLE_SPECS["candidates"], read, as_of=run_settings.as_of, bounds=strict))
    assert len(failed) == 2, failed
    assert failed[0].startswith("the mean rows per (user_id) is within") and "active_users_with_candidates" in failed[1]
    # Bounds just around the measured values pass.
    loose = QualityBounds(candidates_per_user=(pools - 1, pools + 1), candidate_user_share=covered - 0.01)
    assert check_table(candidates, TABLE_SPECS["candidates"], read, as_of=run_settings.as_of, bounds=loose).success


def test_a_candidate_from_a_blocked_author_fails(spark, generated_build, tmp_path):
    run_settings, _, _ = generated_build
    read = _reader(spark, run_settings.tables_dir)
    candidate = read("candidates").orderBy("user_id", "tweet_id").first()
    block = spark.createDataFrame(
        [(candidate.user_id, candidate.author_id, "block", run_settings.as_of)], read("social_actions").schema
    )
    blocked = read("social_actions").unionByName(block)
    reader = lambda name: blocked if name == "social_actions" else read(name)  # noqa: E731
    result = check_table(read("candidates"), TABLE_SPECS["candidates"], reader, as_of=run_settings.as_of)
    (failure,) = result.failures
    assert failure.description.startswith("(user_id, author_id) matches no row of social_actions")
    from_author = (
        read("candidates")
        .where((F.col("user_id") == candidate.user_id) & (F.col("author_id") == candidate.author_id))
        .count()
    )
    assert failure.unexpected_count == from_author
    assert set(failure.examples) == {f"user_id={candidate.user_id} author_id={candidate.author_id}"}


def test_check_tables_reports_a_missing_table_and_writes_the_html(spark, generated_build, tmp_path):
    run_settings, _, _ = generated_build
    tables_dir = run_settings.tables_dir
    results = check_tables(
        ["users", "ranked_feeds"],
        _reader(spark, tables_dir),
        as_of=run_settings.as_of,
        docs_dir=tmp_path / "docs",
        exists=lambda name: is_delta_table(tables_dir / name),
    )
    assert [(r.table, r.success) for r in results] == [("users", True), ("ranked_feeds", False)]
    assert results[1].error == "ranked_feeds does not exist"
    index = tmp_path / "docs" / "index.html"
    assert index.is_file() and "users.rows" in index.read_text()


def test_check_command_exits_nonzero_and_names_the_failure(generated_build, tmp_path, capsys):
    """`homefeed check` on a copy of the warehouse whose users table lost a row the follows point at."""
    import shutil

    from deltalake import DeltaTable, write_deltalake

    from cli.main import main

    run_settings, _, _ = generated_build
    warehouse = tmp_path / "warehouse"
    for name in ("users", "follows"):
        shutil.copytree(run_settings.tables_dir / name, warehouse / "tables" / name)
    users = DeltaTable(str(warehouse / "tables" / "users")).to_pyarrow_table()
    gone = users["user_id"][0].as_py()
    write_deltalake(str(warehouse / "tables" / "users"), users.slice(1), mode="overwrite")
    code = main(["check", "--warehouse", str(warehouse), "--input", str(run_settings.raw_input)])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "ok   users" in out and "FAIL follows" in out
    assert f"follower_id={gone}" in out or f"followee_id={gone}" in out
    assert "1/2 tables passed" in out
    assert (
        code == 1
        and main(["check", "--warehouse", str(warehouse), "--table", "users", "--input", str(run_settings.raw_input)])
        == 0
    )


def test_bounds_overrides_are_validated():
    assert QualityBounds.with_overrides({"feed_length": [1, 2], "freshness_hours": 3}).feed_length == (1.0, 2.0)
    with pytest.raises(ValueError, match="unknown data-quality bounds"):
        QualityBounds.with_overrides({"feed_lenght": [1, 2]})
    with pytest.raises(ValueError, match="is a .min, max. pair"):
        QualityBounds.with_overrides({"feed_length": 3})


def test_every_table_spec_declares_existing_types():
    known = {"bigint", "int", "double", "float", "boolean", "string", "timestamp"}
    for spec in TABLE_SPECS.values():
        for column in spec.columns:
            assert column.dtype in known or column.dtype.startswith("array<"), (spec.name, column)


def test_ranked_feeds_of_a_generated_world_pass_and_a_broken_copy_fails(spark, ranked_build):
    ranked_settings, outcome = ranked_build
    assert outcome.success, (outcome.failures, outcome.failed_checks)
    assert outcome.checks_passed == ("ranked_feeds",)
    spec, read = TABLE_SPECS["ranked_feeds"], _reader(spark, ranked_settings.tables_dir)
    changes = breakages(spec)
    assert [column for column, _, _ in changes] == ["user_id", "rank", "p_like", "sources", "author_id"]
    result = check_table(broken_copy(read("ranked_feeds"), spec, changes), spec, read, as_of=ranked_settings.as_of)
    failed = _failed(result)
    for words in [w for _, _, w in changes] + ["is unique"]:
        assert any(words in d for d in failed), (words, failed)


def test_feed_shares_outside_their_bounds_fail(spark, ranked_build):
    ranked_settings, _ = ranked_build
    read = _reader(spark, ranked_settings.tables_dir)
    feeds = read("ranked_feeds")
    in_network = feeds.agg(F.avg(F.col("is_in_network").cast("double"))).first()[0]
    strict = QualityBounds(feed_in_network_share=(in_network + 0.01, 1.0))
    failed = _failed(check_table(feeds, TABLE_SPECS["ranked_feeds"], read, as_of=ranked_settings.as_of, bounds=strict))
    assert failed == [
        f"the share of rows where is_in_network is within [{in_network + 0.01:g}, 1] (feed_in_network_share)"
    ], failed


def test_check_command_passes_on_the_generated_world(generated_build, capsys):
    """What a deployment's CI runs: `homefeed check` over the whole warehouse, JSON out, exit 0."""
    import json

    from cli.main import main

    run_settings, outcome, _ = generated_build
    code = main(["check", "--warehouse", str(run_settings.warehouse), "--input", str(run_settings.raw_input), "--json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 0 and document["success"], [t for t in document["tables"] if not t["success"]]
    assert sorted(t["table"] for t in document["tables"]) == sorted(outcome.checks_passed)
    assert document["as_of"] == run_settings.as_of.isoformat()
    assert Path(document["docs"]).is_file()


def _feed_like_spec() -> TableSpec:
    from data_quality.specs import ColumnSpec, ContiguousRank

    return TableSpec(
        name="feed_like",
        columns=(ColumnSpec("user_id", "bigint"), ColumnSpec("tweet_id", "bigint"), ColumnSpec("rank", "int")),
        key=("user_id", "tweet_id"),
        ranks=(ContiguousRank("rank", ("user_id",)),),
    )


def test_a_duplicated_key_is_reported_with_its_key_and_the_check_times_its_phases(spark):
    from datetime import datetime

    spec = _feed_like_spec()
    rows = [(1, 10, 1), (1, 11, 2), (2, 10, 1), (2, 12, 2), (2, 12, 3)]  # user 2 holds tweet 12 twice
    table = spark.createDataFrame(rows, "user_id bigint, tweet_id bigint, rank int")
    result = check_table(table, spec, lambda name: None, as_of=datetime(2026, 1, 1, tzinfo=UTC))
    (failure,) = result.failures
    assert failure.description == "(user_id, tweet_id) is unique"
    assert failure.unexpected_count == 2 and failure.examples == ["user_id=2 tweet_id=12"] * 2
    assert set(result.phase_seconds) == {"rows_view", "feed_like.rows"}
    assert all(seconds >= 0 for seconds in result.phase_seconds.values())


def test_the_key_check_rides_on_the_rank_windows_shuffle(spark):
    """A feed's ranks are numbered per user and its key is (user, tweet): one shuffle by user serves
    both windows (Spark's plan), where a check of the key alone shuffles by the key."""
    from datetime import datetime

    from data_quality.views import rows_view

    as_of = datetime(2026, 1, 1, tzinfo=UTC)
    table = spark.createDataFrame([(1, 10, 1)], "user_id bigint, tweet_id bigint, rank int")

    def shuffles(spec: TableSpec) -> list[str]:
        plan = rows_view(table, spec, lambda name: None, as_of=as_of)._jdf.queryExecution().executedPlan().toString()
        return [line.strip() for line in plan.splitlines() if "Exchange hashpartitioning" in line]

    spec = _feed_like_spec()
    (both,) = shuffles(spec)
    assert "hashpartitioning(user_id" in both and "tweet_id" not in both
    from dataclasses import replace

    (key_only,) = shuffles(replace(spec, ranks=()))
    assert "hashpartitioning(user_id" in key_only and "tweet_id" in key_only


def test_the_run_reports_where_each_check_spent_its_time(generated_build):
    _, outcome, _ = generated_build
    assert set(outcome.check_phase_seconds) == set(outcome.checks_passed)
    for table, phases in outcome.check_phase_seconds.items():
        assert {"rows_view", f"{table}.rows"} <= set(phases), (table, phases)


def test_a_reference_with_few_keys_is_joined_by_broadcast_whatever_spark_estimates(spark):
    """Spark's size estimate of a key set can be over its broadcast threshold while the keys are few
    (840K tweets at 100K users): the reference is then broadcast rather than shuffling the table."""
    from datetime import datetime

    from data_quality.specs import ColumnSpec, Reference
    from data_quality.views import rows_view

    tweets = spark.createDataFrame([(10, 1), (11, 2)], "tweet_id bigint, author_id bigint")
    table = spark.createDataFrame([(1, 10, 1), (1, 10, 2)], "user_id bigint, tweet_id bigint, author_id bigint")
    spec = TableSpec(
        name="pairs",
        columns=tuple(ColumnSpec(c, "bigint") for c in table.columns),
        references=(Reference("tweet_author", ("tweet_id", "author_id"), "tweets", ("tweet_id", "author_id")),),
    )
    # As if every estimate were too big.
    with session_conf(spark, {"spark.sql.autoBroadcastJoinThreshold": "-1"}):
        view = rows_view(table, spec, lambda name: tweets, as_of=datetime(2026, 1, 1, tzinfo=UTC))
        plan = view._jdf.queryExecution().executedPlan().toString()
        assert "BroadcastHashJoin" in plan and "SortMergeJoin" not in plan, plan
        assert view.where(F.col("_dq_ref_tweet_author").isNotNull()).count() == 1  # tweet 10 is author 1's, not 2's
