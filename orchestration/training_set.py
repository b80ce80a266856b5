"""`homefeed training-set`: the ranker's training examples, written as the Delta table `training_examples`.

1. The representations (RealGraph, SimClusters, TwHIN) are rebuilt from the raw input truncated at
   the first impression time of each snapshot day (or once, at the window's start), each into
   `WAREHOUSE/as_of/<time>/` (reused while the input and the cut are the same), so that no learned
   table has seen the engagements of the impressions it serves.
2. The examples are built from the warehouse's bronze tables (`jobs/training_set.py`) and
   written to `WAREHOUSE/tables/training_examples`, with the window, the representations' build
   times and the registry hash in the Delta commit's metadata and in the returned summary.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from core.heads import HEADS
from core.settings import HomefeedSettings
from features.registry import FEATURES, registry_hash
from jobs.delta_io import is_delta_table, overwrite_delta, read_delta
from jobs.training_set import (
    SPLITS,
    Representations,
    TrainingWindow,
    first_impression_of_day,
    snapshot_days,
    training_examples,
)
from orchestration.side_builds import build_eval_warehouse, truncate_raw_input

TRAINING_TABLE = "training_examples"
# The groups whose tables the representations need (bronze feeds them; graph holds RealGraph).
REPRESENTATION_SELECTION = "group:bronze or group:graph or group:simclusters or group:twhin"
BRONZE_INPUTS = ("users", "follows", "mutual_follows", "tweets", "engagements", "social_actions")


def representations_dir(warehouse: Path, as_of: datetime) -> Path:
    return warehouse / "as_of" / as_of.strftime("%Y%m%dT%H%M%SZ")


def build_representations(settings: HomefeedSettings, *, as_of: datetime, rebuild: bool = False) -> Path:
    """Build the representation assets from the raw input as known at `as_of`; return the warehouse."""
    side = representations_dir(settings.warehouse_root, as_of)
    raw_dir, fingerprint = truncate_raw_input(settings.raw_dir, side / "raw", cutoff=as_of)
    build_eval_warehouse(settings, raw_dir=raw_dir, warehouse=side / "warehouse", as_of=as_of,
                         fingerprint=fingerprint, rebuild=rebuild, selection=REPRESENTATION_SELECTION)
    return side / "warehouse"


def training_build_time(spark: SparkSession, tables_dir: Path, as_of: datetime | None) -> datetime:
    """`as_of` when given, else the newest engagement in the warehouse."""
    if as_of is not None:
        return as_of
    latest = read_delta(spark, tables_dir / "engagements").agg(F.max("created_at")).first()[0]
    if latest is None:
        raise ValueError(f"{tables_dir / 'engagements'} is empty: nothing to build a training set from")
    return latest.replace(tzinfo=UTC) if latest.tzinfo is None else latest


def build_training_set(settings: HomefeedSettings, spark: SparkSession, *, window: TrainingWindow, daily: bool = True,
                       rebuild: bool = False) -> dict:
    """Build and write `training_examples`; return a summary (rows and positives per split).
    `daily`: one representation build per snapshot day (else one, at the window's start)."""
    tables_dir = settings.tables_dir
    missing = [name for name in BRONZE_INPUTS if not is_delta_table(tables_dir / name)]
    if missing:
        raise FileNotFoundError(
            f"the warehouse {settings.warehouse} lacks {', '.join(missing)}: build them first "
            "(`homefeed run --select 'group:bronze or key:mutual_follows'`)"
        )
    days = snapshot_days(window.start, window.end)
    build_times = {day: first_impression_of_day(day, window) if daily else window.start for day in days}
    built = {as_of: _representations(settings, spark, as_of=as_of, rebuild=rebuild)
             for as_of in sorted(set(build_times.values()))}
    inputs = {name: read_delta(spark, tables_dir / name) for name in BRONZE_INPUTS}
    examples = training_examples(**inputs, representations={day: built[t] for day, t in build_times.items()},
                                 window=window)
    provenance = {"window": window.as_dict(), "representations": "daily" if daily else "window_start",
                  "representations_as_of": [t.isoformat() for t in sorted(built)],
                  "registry_hash": registry_hash(), "features": len(FEATURES)}
    overwrite_delta(examples, tables_dir / TRAINING_TABLE, user_metadata=json.dumps(provenance))
    written = read_delta(spark, tables_dir / TRAINING_TABLE)
    return {**provenance, "table": str(tables_dir / TRAINING_TABLE), **split_summary(written)}


def _representations(settings: HomefeedSettings, spark: SparkSession, *, as_of: datetime, rebuild: bool) -> Representations:
    side_tables = build_representations(settings, as_of=as_of, rebuild=rebuild) / "tables"
    if read_delta(spark, side_tables / "engagements").isEmpty():
        raise ValueError(
            f"no engagement is logged before {as_of.isoformat()}, so there is nothing to build the "
            "representations from: shorten the window (--days) or move --as-of later"
        )
    return Representations(
        as_of=as_of,
        realgraph=read_delta(spark, side_tables / "realgraph"),
        simclusters_interested_in=read_delta(spark, side_tables / "simclusters_interested_in"),
        twhin_user_embeddings=read_delta(spark, side_tables / "twhin_user_embeddings"),
        twhin_tweet_embeddings=read_delta(spark, side_tables / "twhin_tweet_embeddings"),
    )


def split_summary(examples: DataFrame) -> dict:
    """Rows, users and the positive rate of every label, per split."""
    rows = examples.groupBy("split").agg(
        F.count(F.lit(1)).alias("rows"), F.countDistinct("user_id").alias("users"),
        *[F.avg(label).alias(label) for label in HEADS],
    ).collect()
    by_split = {r["split"]: r for r in rows}
    return {
        "rows": {split: int(by_split[split]["rows"]) if split in by_split else 0 for split in SPLITS},
        "users": {split: int(by_split[split]["users"]) if split in by_split else 0 for split in SPLITS},
        "positive_rate": {
            split: {label: round(float(by_split[split][label] or 0.0), 5) for label in HEADS}
            for split in SPLITS if split in by_split
        },
    }
