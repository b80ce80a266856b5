"""Publishing the warehouse's ranked feeds, and what serving reads with them, to Redis (`homefeed publish`, the `published_feeds` asset)
and rolling back (`homefeed rollback`, the `rollback_publication` job).

The CLI path runs the `ranked_feeds` data-quality suite first and refuses to publish a table that
fails it; in Dagster the table's blocking asset check does the same before `published_feeds` runs.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from jobs.publish import DEFAULT_GRACE_SECONDS, PublishError, PublishResult, connect, publish_warehouse
from jobs.published_datasets import FEEDS_TABLE


def table_build_metadata(table_path: Path) -> dict[str, str]:
    """What the table was built with (its last commit's userMetadata: build time, model versions,
    feature registry hash) and its Delta version, as strings for the Redis pointer."""
    from deltalake import DeltaTable

    table = DeltaTable(str(table_path))
    commit = table.history(1)[0]
    built_with = json.loads(commit.get("userMetadata") or "{}")
    return {"table_version": str(table.version()), **{f"built_{k}": str(v) for k, v in built_with.items()}}


def publish_to_redis(redis_url: str, tables_dir: Path, *, grace_seconds: int = DEFAULT_GRACE_SECONDS) -> PublishResult:
    """Every published dataset of the warehouse, as of the moment its ranked feeds were built."""
    from jobs.delta_io import is_delta_table

    feeds = tables_dir / FEEDS_TABLE
    if not is_delta_table(feeds):
        raise PublishError(f"{feeds} does not exist: build it first (homefeed run --select key:ranked_feeds)")
    metadata = table_build_metadata(feeds)
    as_of = datetime.fromisoformat(metadata["built_as_of"]) if "built_as_of" in metadata else None
    return publish_warehouse(connect(redis_url), tables_dir, as_of=as_of, grace_seconds=grace_seconds,
                             metadata=metadata)


def check_feeds_table(spark, tables_dir: Path, *, as_of: datetime, bounds) -> None:
    """The ranked_feeds suite; raises PublishError naming the failed expectations."""
    from data_quality.specs import TABLE_SPECS
    from data_quality.validation import check_table
    from jobs.delta_io import read_delta

    read = lambda name: read_delta(spark, tables_dir / name)  # noqa: E731
    result = check_table(read(FEEDS_TABLE), TABLE_SPECS[FEEDS_TABLE], read, as_of=as_of, bounds=bounds)
    if not result.success:
        lines = "\n".join(f"  {o.line()}" for o in result.failures)
        raise PublishError(f"{FEEDS_TABLE} fails its data-quality suite; nothing was published:\n{lines}")
