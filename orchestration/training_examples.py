"""Reading and writing around the `training_examples` asset: its window, the representation
snapshots it reads (one per cut, `orchestration.asset_variants`), the table's Delta commit with its
provenance, and the summary of what was written.

The examples themselves are the pure Spark transform `jobs.training_set.training_examples`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from core.delta_commits import last_commit_metadata
from core.heads import HEADS
from core.storage import is_delta_table
from features.registry import FEATURES, registry_hash
from jobs.delta_io import overwrite_delta, read_delta
from jobs.training_set import (
    SPLITS,
    Representations,
    TrainingWindow,
    first_impression_of_day,
    snapshot_days,
    training_examples,
)
from orchestration.asset_variants import partition_key_of_cut, snapshot_warehouse_dir

TRAINING_TABLE = "training_examples"
BRONZE_INPUTS = ("users", "follows", "mutual_follows", "tweets", "engagements", "social_actions")
# The tables of a representation snapshot the training set reads (engagements: is there any history?).
REPRESENTATION_TABLES = ("realgraph", "simclusters_interested_in", "twhin_user_embeddings", "twhin_tweet_embeddings")
SNAPSHOT_READS = (*REPRESENTATION_TABLES, "engagements")


def require_bronze_inputs(tables_dir: Path, warehouse: object) -> None:
    missing = [name for name in BRONZE_INPUTS if not is_delta_table(tables_dir / name)]
    if missing:
        raise FileNotFoundError(
            f"the warehouse {warehouse} lacks {', '.join(missing)}: build them first "
            "(`homefeed run --select 'group:bronze or key:mutual_follows'`)"
        )


def training_build_time(spark: SparkSession, tables_dir: Path, as_of: datetime | None) -> datetime:
    """`as_of` when given, else the newest engagement in the warehouse."""
    if as_of is not None:
        return as_of
    latest = read_delta(spark, tables_dir / "engagements").agg(F.max("created_at")).first()[0]
    if latest is None:
        raise ValueError(f"{tables_dir / 'engagements'} is empty: nothing to build a training set from")
    return latest.replace(tzinfo=UTC) if latest.tzinfo is None else latest


def representation_cuts(window: TrainingWindow, *, daily: bool) -> dict[datetime, datetime]:
    """Snapshot day -> the cut its representations are built at: the day's first impression time
    (`daily`), else the window's start for every day."""
    return {
        day: first_impression_of_day(day, window) if daily else window.start
        for day in snapshot_days(window.start, window.end)
    }


def missing_snapshots(warehouse_root: Path, cuts: set[datetime]) -> list[str]:
    """The partition keys of the cuts whose snapshot lacks a table the training set reads."""
    return [
        partition_key_of_cut(cut)
        for cut in sorted(cuts)
        if not all(is_delta_table(snapshot_tables(warehouse_root, cut) / name) for name in SNAPSHOT_READS)
    ]


def snapshot_tables(warehouse_root: Path, cut: datetime) -> Path:
    return snapshot_warehouse_dir(warehouse_root, cut) / "tables"


def read_representations(spark: SparkSession, warehouse_root: Path, cut: datetime) -> Representations:
    """The representation snapshot of `cut`; refuses one built from an input with no engagement."""
    tables = snapshot_tables(warehouse_root, cut)
    if read_delta(spark, tables / "engagements").isEmpty():
        raise ValueError(
            f"no engagement is logged before {cut.isoformat()}, so there is nothing to build the "
            "representations from: shorten the window (--days) or move --as-of later"
        )
    return Representations(as_of=cut, **{name: read_delta(spark, tables / name) for name in REPRESENTATION_TABLES})


def write_training_examples(
    spark: SparkSession,
    tables_dir: Path,
    *,
    window: TrainingWindow,
    daily: bool,
    representations: dict[datetime, Representations],
) -> dict:
    """Build the examples from the bronze tables and each day's representations, write them with
    their provenance in the Delta commit's userMetadata; return the provenance."""
    inputs = {name: read_delta(spark, tables_dir / name) for name in BRONZE_INPUTS}
    examples = training_examples(**inputs, representations=representations, window=window)
    provenance = {
        "window": window.as_dict(),
        "representations": "daily" if daily else "window_start",
        "representations_as_of": [t.isoformat() for t in sorted({r.as_of for r in representations.values()})],
        "registry_hash": registry_hash(),
        "features": len(FEATURES),
    }
    overwrite_delta(examples, tables_dir / TRAINING_TABLE, user_metadata=json.dumps(provenance))
    return provenance


def training_set_summary(spark: SparkSession, tables_dir: Path) -> dict:
    """The written table's provenance (its last commit), path, and rows, users and positive rates per split."""
    path = tables_dir / TRAINING_TABLE
    return {**last_commit_metadata(path), "table": str(path), **split_summary(read_delta(spark, path))}


def split_summary(examples: DataFrame) -> dict:
    """Rows, users and the positive rate of every label, per split."""
    rows = (
        examples.groupBy("split")
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.countDistinct("user_id").alias("users"),
            *[F.avg(label).alias(label) for label in HEADS],
        )
        .collect()
    )
    by_split = {r["split"]: r for r in rows}
    return {
        "rows": {split: int(by_split[split]["rows"]) if split in by_split else 0 for split in SPLITS},
        "users": {split: int(by_split[split]["users"]) if split in by_split else 0 for split in SPLITS},
        "positive_rate": {
            split: {label: round(float(by_split[split][label] or 0.0), 5) for label in HEADS}
            for split in SPLITS
            if split in by_split
        },
    }
