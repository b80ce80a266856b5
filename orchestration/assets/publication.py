"""Publication to Redis: the `published_feeds` asset (after `ranked_feeds` and its blocking check)
and the `rollback_publication` job."""

import dagster as dg

from jobs.publish import connect, rollback
from jobs.published_datasets import DATASETS
from orchestration.publication import FEEDS_TABLE, check_feeds_table, publish_to_redis
from orchestration.resources import QualityResource, RedisResource, SparkResource, WarehouseResource

PUBLICATION_GROUP = "publication"
PUBLISHED_TABLES = sorted({table for dataset in DATASETS for table in dataset.tables})


@dg.asset(name="published_feeds", group_name=PUBLICATION_GROUP, kinds={"redis"}, deps=PUBLISHED_TABLES,
          description="The ranked feeds, and the profiles, follow sets, timelines, tweets, lists, who-to-follow "
                      "and popular tweets served with them, in Redis as a new version, verified, then made current "
                      "(docs/redis_layout.md). Runs the ranked_feeds suite itself first unless ranked_feeds was "
                      "built (and so checked) in the same run.")
def published_feeds_asset(context: dg.AssetExecutionContext, spark: SparkResource, warehouse: WarehouseResource,
                          quality: QualityResource, redis: RedisResource) -> dg.MaterializeResult:
    if not _materialized_in_this_run(context, FEEDS_TABLE):  # else its blocking check has passed already
        check_feeds_table(spark.get_session(), warehouse.tables_dir, as_of=warehouse.now(), bounds=quality.bounds())
    result = publish_to_redis(redis.url, warehouse.tables_dir, grace_seconds=redis.grace_seconds)
    return dg.MaterializeResult(metadata={
        "version": result.version, "previous_version": result.previous_version or 0, "users": result.users,
        "items": result.items, "keys": result.keys, **{f"keys_{k}": n for k, n in result.keys_per_dataset.items()},
        "bytes": result.bytes, "seconds": result.seconds, "checksum": result.checksum,
        "published_at": result.published_at,
    })


def _materialized_in_this_run(context: dg.AssetExecutionContext, asset: str) -> bool:
    event = context.instance.get_latest_materialization_event(dg.AssetKey(asset))
    return event is not None and event.run_id == context.run_id


@dg.op(description="Make the previous published version current again.")
def rollback_op(context: dg.OpExecutionContext, redis: RedisResource) -> dict:
    pointer = rollback(connect(redis.url))
    context.log.info(f"rolled back to version {pointer['version']} (from {pointer['rolled_back_from']})")
    return pointer


@dg.job(name="rollback_publication", description="Serve the previous published version again.")
def rollback_job():
    rollback_op()


PUBLICATION_ASSETS = [published_feeds_asset]
