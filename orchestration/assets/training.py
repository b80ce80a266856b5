"""The training set as a Dagster asset: `training_examples` (group `training`).

Not part of the default build (`homefeed run`, `homefeed demo`, the `build_all` job): it rebuilds the
representations as of each day of its window in side warehouses, more passes over the graph jobs.
Materialize it with the `training_set` job, `homefeed run --select group:training`, or
`homefeed training-set`. See docs/training_set.md.
"""

import dagster as dg

from jobs.training_set import TrainingWindow
from orchestration.resources import SparkResource, TwhinResource, WarehouseResource, settings_from_resources
from orchestration.training_set import BRONZE_INPUTS, TRAINING_TABLE, build_training_set, training_build_time

TRAINING_GROUP = "training"


class TrainingSetParams(dg.Config):
    """The window: the last `days` of impressions whose label window closed by the build time."""

    days: float = 4.0
    validation_days: float = 1.0
    test_days: float = 1.0
    # One representation build per day of the window (what serving sees), or one at its start.
    daily_representations: bool = True
    rebuild_representations: bool = False


@dg.asset(name=TRAINING_TABLE, group_name=TRAINING_GROUP, kinds={"spark", "delta"}, deps=list(BRONZE_INPUTS))
def training_examples_asset(
    context: dg.AssetExecutionContext, config: TrainingSetParams, spark: SparkResource,
    warehouse: WarehouseResource, twhin: TwhinResource,
) -> dg.MaterializeResult:
    """One row per impression of the window: its labels and every registered feature as of the
    impression; time split into train / validation / test."""
    session = spark.get_session()
    build_time = training_build_time(session, warehouse.tables_dir, warehouse.now() if warehouse.as_of else None)
    window = TrainingWindow.ending_at(build_time, days=config.days, validation_days=config.validation_days,
                                      test_days=config.test_days)
    context.log.info(f"training window {window.as_dict()}")
    summary = build_training_set(settings_from_resources(spark, warehouse, twhin), session, window=window,
                                 daily=config.daily_representations, rebuild=config.rebuild_representations)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": sum(summary["rows"].values()),
        "path": dg.MetadataValue.path(summary["table"]),
        "window": dg.MetadataValue.json(summary["window"]),
        "rows_per_split": dg.MetadataValue.json(summary["rows"]),
        "positive_rate": dg.MetadataValue.json(summary["positive_rate"]),
        "representations_as_of": dg.MetadataValue.json(summary["representations_as_of"]),
        "registry_hash": summary["registry_hash"],
        "features": summary["features"],
    })


TRAINING_ASSETS = [training_examples_asset]
