"""Publishing the warehouse's ranked feeds, and what serving reads with them, to Redis (`homefeed publish`, the `published_feeds` asset)
and rolling back (`homefeed rollback`, the `rollback_publication` job).

Nothing is published unless every table it reads passes its data-quality suite: the CLI runs them
all first; in Dagster, the tables built and checked (blocking checks) in the same run are not
checked again, the others are.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from core.delta_commits import last_commit_metadata
from jobs.publish import DEFAULT_GRACE_SECONDS, PublishError, PublishResult, connect, publish_warehouse
from jobs.published_datasets import DATASETS, FEEDS_TABLE

# Every table a publication reads, ranked_feeds first (the one most likely to fail its bounds).
PUBLISHED_TABLES = (FEEDS_TABLE, *sorted({t for d in DATASETS for t in d.tables} - {FEEDS_TABLE}))


def table_build_metadata(table_path: Path) -> dict[str, str]:
    """What the table was built with (its last commit's userMetadata: build time, model versions,
    feature registry hash) and its Delta version, as strings for the Redis pointer."""
    from deltalake import DeltaTable

    built_with = last_commit_metadata(table_path)
    return {
        "table_version": str(DeltaTable(str(table_path)).version()),
        **{f"built_{k}": str(v) for k, v in built_with.items()},
    }


def publish_to_redis(
    redis_url: str, tables_dir: Path, *, cluster: bool = False, grace_seconds: int = DEFAULT_GRACE_SECONDS
) -> PublishResult:
    """Every published dataset of the warehouse, as of the moment its ranked feeds were built (the
    ranked_feeds version whose build details are read here is the one published). `cluster`:
    `redis_url` names one node of a Redis Cluster."""
    from jobs.delta_io import is_delta_table

    feeds = tables_dir / FEEDS_TABLE
    if not is_delta_table(feeds):
        raise PublishError(f"{feeds} does not exist: build it first (homefeed run --select key:ranked_feeds)")
    metadata = table_build_metadata(feeds)
    as_of = datetime.fromisoformat(metadata["built_as_of"]) if "built_as_of" in metadata else None
    return publish_warehouse(
        connect(redis_url, cluster=cluster),
        tables_dir,
        as_of=as_of,
        grace_seconds=grace_seconds,
        metadata=metadata,
        versions={FEEDS_TABLE: int(metadata["table_version"])},
    )


def check_published_tables(spark, tables_dir: Path, *, as_of: datetime, bounds, passed: set[str] = frozenset()) -> None:
    """The suite of every table a publication reads, except those in `passed` (checked and passed
    already, in the same run); raises PublishError naming the failed expectations."""
    from data_quality.specs import TABLE_SPECS
    from data_quality.validation import check_table
    from jobs.delta_io import read_delta

    read = lambda name: read_delta(spark, tables_dir / name)  # noqa: E731
    failures = []
    for table in PUBLISHED_TABLES:
        if table in passed:
            continue
        result = check_table(read(table), TABLE_SPECS[table], read, as_of=as_of, bounds=bounds)
        failures += [f"  {table}: {o.line()}" for o in result.failures]
    if failures:
        raise PublishError(
            "the tables to publish fail their data-quality suites; nothing was published:\n" + "\n".join(failures)
        )
