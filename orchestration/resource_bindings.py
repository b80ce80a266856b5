"""The resources every Dagster run gets, built from the one settings object: the keys assets and
checks ask for (`spark`, `warehouse`, `twhin`, `quality`, `redis`) and the `io_manager` that loads
and writes the warehouse's Delta tables."""

import json

import dagster as dg

from core.settings import HomefeedSettings
from orchestration.delta_io_manager import DeltaTableIOManager
from orchestration.resources import QualityResource, RedisResource, SparkResource, TwhinResource, WarehouseResource


def resources_from_settings(settings: HomefeedSettings) -> dict[str, dg.ConfigurableResource]:
    spark = SparkResource(
        master=settings.spark_master,
        cache_dir=str(settings.cache_dir),
        driver_memory=settings.spark_driver_memory,
        shuffle_partitions=settings.spark_shuffle_partitions,
        object_storage_conf=settings.object_storage_conf,
        extra_conf=dict(settings.spark_conf),
    )
    warehouse = WarehouseResource(
        path=str(settings.warehouse),
        raw_input=str(settings.raw_input),
        as_of=settings.as_of.isoformat() if settings.as_of else None,
        models=str(settings.models_dir) if settings.models_dir else None,
    )
    return {
        "spark": spark,
        "warehouse": warehouse,
        "io_manager": DeltaTableIOManager(spark=spark, warehouse=warehouse),
        "twhin": TwhinResource(device=settings.twhin_device, threads=settings.twhin_threads),
        "quality": QualityResource(bounds_json=json.dumps(settings.dq_bounds)),
        "redis": RedisResource(
            url=settings.redis_url, grace_seconds=settings.publish_grace_seconds, cluster=settings.redis_cluster
        ),
    }
