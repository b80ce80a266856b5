"""Publication to Redis: the `published_feeds` asset (after the blocking checks of the tables it
reads) and the `rollback_publication` job."""

import dagster as dg

from jobs.publish import connect, rollback
from orchestration.assets.quality import QUALITY_CHECK
from orchestration.publication import PUBLISHED_TABLES, check_published_tables, publish_to_redis
from orchestration.resources import QualityResource, RedisResource, SparkResource, WarehouseResource

PUBLICATION_GROUP = "publication"


@dg.asset(
    name="published_feeds",
    group_name=PUBLICATION_GROUP,
    kinds={"redis"},
    deps=list(PUBLISHED_TABLES),
    description="The ranked feeds, and the profiles, follow sets, timelines, tweets, lists, who-to-follow "
    "and popular tweets served with them, in Redis as a new version, verified, then made current "
    "(docs/redis_layout.md). First runs the data-quality suite of every table it reads, except "
    "those built and checked (blocking checks) in the same run.",
)
def published_feeds_asset(
    context: dg.AssetExecutionContext,
    spark: SparkResource,
    warehouse: WarehouseResource,
    quality: QualityResource,
    redis: RedisResource,
) -> dg.MaterializeResult:
    check_published_tables(
        spark.get_session(),
        warehouse.tables_dir,
        as_of=warehouse.now(),
        bounds=quality.bounds(),
        passed=_checks_passed_in_this_run(context, PUBLISHED_TABLES),
    )
    result = publish_to_redis(redis.url, warehouse.tables_dir, cluster=redis.cluster, grace_seconds=redis.grace_seconds)
    return dg.MaterializeResult(
        metadata={
            "version": result.version,
            "previous_version": result.previous_version or 0,
            "users": result.users,
            "items": result.items,
            "keys": result.keys,
            **{f"keys_{k}": n for k, n in result.keys_per_dataset.items()},
            "bytes": result.bytes,
            "seconds": result.seconds,
            "checksum": result.checksum,
            "published_at": result.published_at,
        }
    )


def _checks_passed_in_this_run(context: dg.AssetExecutionContext, tables) -> set[str]:
    """The tables whose blocking quality check ran and passed in this run (built in it, so checked)."""
    keys = [dg.AssetCheckKey(dg.AssetKey(table), QUALITY_CHECK) for table in tables]
    latest = context.instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    return {
        key.asset_key.to_user_string()
        for key, record in latest.items()
        if record.run_id == context.run_id and record.status.value == "SUCCEEDED"
    }


@dg.op(description="Make the previous published version current again.")
def rollback_op(context: dg.OpExecutionContext, redis: RedisResource) -> dict:
    pointer = rollback(connect(redis.url, cluster=redis.cluster))
    context.log.info(f"rolled back to version {pointer['version']} (from {pointer['rolled_back_from']})")
    return pointer


@dg.job(name="rollback_publication", description="Serve the previous published version again.")
def rollback_job():
    rollback_op()


PUBLICATION_ASSETS = [published_feeds_asset]
