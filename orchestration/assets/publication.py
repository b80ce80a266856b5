"""Publication to Redis: the `published_feeds` asset (after `ranked_feeds` and its blocking check)
and the `rollback_publication` job."""

import dagster as dg

from jobs.publish import connect, rollback
from orchestration.publication import FEEDS_TABLE, check_feeds_table, publish_table
from orchestration.resources import QualityResource, RedisResource, SparkResource, WarehouseResource

PUBLICATION_GROUP = "publication"


@dg.asset(name="published_feeds", group_name=PUBLICATION_GROUP, kinds={"redis"}, deps=[FEEDS_TABLE],
          description="The ranked feeds in Redis as a new version, verified, then made current "
                      "(docs/redis_layout.md). Runs the ranked_feeds suite itself first: the publish job "
                      "runs without the ranked_feeds asset, and so without its check.")
def published_feeds_asset(spark: SparkResource, warehouse: WarehouseResource, quality: QualityResource,
                          redis: RedisResource) -> dg.MaterializeResult:
    check_feeds_table(spark.get_session(), warehouse.tables_dir, as_of=warehouse.now(), bounds=quality.bounds())
    result = publish_table(redis.url, warehouse.table_path(FEEDS_TABLE), grace_seconds=redis.grace_seconds)
    return dg.MaterializeResult(metadata={
        "version": result.version, "previous_version": result.previous_version or 0, "users": result.users,
        "items": result.items, "bytes": result.bytes, "seconds": result.seconds, "checksum": result.checksum,
        "published_at": result.published_at,
    })


@dg.op(description="Make the previous published version current again.")
def rollback_op(context: dg.OpExecutionContext, redis: RedisResource) -> dict:
    pointer = rollback(connect(redis.url))
    context.log.info(f"rolled back to version {pointer['version']} (from {pointer['rolled_back_from']})")
    return pointer


@dg.job(name="rollback_publication", description="Serve the previous published version again.")
def rollback_job():
    rollback_op()


PUBLICATION_ASSETS = [published_feeds_asset]
