"""The training set as a Dagster asset: `training_examples` (group `training`).

It reads the representation snapshots of its window's cuts (the partitions of `representations_as_of`,
group `training_representations`) and refuses to run without them; `homefeed training-set`,
`homefeed run --select group:training` and `orchestration.training_set.build_training_set` build the
missing ones first, one run per partition. Not part of the default build (`homefeed run`,
`homefeed demo`, the `build_all` job). See docs/training_set.md.
"""

from datetime import datetime

import dagster as dg

from jobs.delta_io import read_delta
from jobs.training_set import TrainingWindow
from orchestration.asset_variants import REPRESENTATIONS_AS_OF, SNAPSHOT, SNAPSHOT_GROUP
from orchestration.resources import SparkResource, WarehouseResource
from orchestration.training_examples import (
    BRONZE_INPUTS,
    SNAPSHOT_READS,
    TRAINING_TABLE,
    missing_snapshots,
    read_representations,
    representation_cuts,
    require_bronze_inputs,
    split_summary,
    training_build_time,
    write_training_examples,
)

TRAINING_GROUP = "training"


class TrainingSetParams(dg.Config):
    """The window: the last `days` of impressions whose label window closed by the build time."""

    days: float = 4.0
    validation_days: float = 1.0
    test_days: float = 1.0
    # One representation build per day of the window (what serving sees), or one at its start.
    daily_representations: bool = True
    # Rebuild the window's snapshots even if current (read by the code that builds them first).
    rebuild_representations: bool = False

    def window(self, build_time: datetime) -> TrainingWindow:
        return TrainingWindow.ending_at(
            build_time, days=self.days, validation_days=self.validation_days, test_days=self.test_days
        )


def missing_snapshots_message(
    keys: list[str], warehouse: WarehouseResource, build_time: datetime, config: TrainingSetParams
) -> str:
    """Which partitions are missing, and the command that builds them (and then this table)."""
    representations = "" if config.daily_representations else " --representations window-start"
    return (
        f"the representation snapshots of this window are not built: partitions {', '.join(keys)} of "
        f"`{REPRESENTATIONS_AS_OF.name}` (group `{SNAPSHOT_GROUP}`) lack tables in {warehouse.root / 'as_of'}. "
        f"Build them, then this table, with `homefeed training-set --input {warehouse.raw_input} "
        f"--warehouse {warehouse.path} --as-of {build_time.isoformat()} --days {config.days:g} "
        f"--validation-days {config.validation_days:g} --test-days {config.test_days:g}{representations}` "
        "(or `homefeed run --select group:training`)"
    )


@dg.asset(
    name=TRAINING_TABLE,
    group_name=TRAINING_GROUP,
    kinds={"spark", "delta"},
    deps=[*BRONZE_INPUTS, *SNAPSHOT.keys(SNAPSHOT_READS)],
)
def training_examples_asset(
    context: dg.AssetExecutionContext,
    config: TrainingSetParams,
    spark: SparkResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    """One row per impression of the window: its labels and every registered feature as of the
    impression; time split into train / validation / test."""
    session = spark.get_session()
    require_bronze_inputs(warehouse.tables_dir, warehouse.path)
    build_time = training_build_time(session, warehouse.tables_dir, warehouse.now() if warehouse.as_of else None)
    window = config.window(build_time)
    context.log.info(f"training window {window.as_dict()}")
    cuts = representation_cuts(window, daily=config.daily_representations)
    missing = missing_snapshots(warehouse.root, set(cuts.values()))
    if missing:
        raise FileNotFoundError(missing_snapshots_message(missing, warehouse, build_time, config))
    built = {cut: read_representations(session, warehouse.root, cut) for cut in sorted(set(cuts.values()))}
    provenance = write_training_examples(
        session,
        warehouse.tables_dir,
        window=window,
        daily=config.daily_representations,
        representations={day: built[cut] for day, cut in cuts.items()},
    )
    summary = split_summary(read_delta(session, warehouse.table_path(TRAINING_TABLE)))
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": sum(summary["rows"].values()),
            "path": dg.MetadataValue.path(str(warehouse.table_path(TRAINING_TABLE))),
            "window": dg.MetadataValue.json(provenance["window"]),
            "rows_per_split": dg.MetadataValue.json(summary["rows"]),
            "positive_rate": dg.MetadataValue.json(summary["positive_rate"]),
            "representations_as_of": dg.MetadataValue.json(provenance["representations_as_of"]),
            "registry_hash": provenance["registry_hash"],
            "features": provenance["features"],
        }
    )


TRAINING_ASSETS = [training_examples_asset]
