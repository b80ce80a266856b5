"""`homefeed eval candidates`: candidate pools measured against what users engaged with next.

The world is cut at build time T = world end - `horizon` (jobs.candidate_eval): rows stamped after T
are removed from the raw input, every asset is built from the rest as of T into
`WORLD/eval-candidates/warehouse`, and the pool is scored against the explicit engagements of
(T, T + horizon] on tweets that were live at T.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.settings import HomefeedSettings
from evaluation.worlds import read_warehouse_table, world_end_time
from jobs.candidate_eval import (
    heldout_positives,
    pool_recall,
    pool_size_summary,
    popularity_same_size_recall,
)
from orchestration.jobs import WITH_CANDIDATE_TABLES_SELECTION
from orchestration.side_builds import build_eval_warehouse, truncate_raw_input

DEFAULT_HORIZON = timedelta(hours=24)
ACTIVE_DAYS = 7


def prepare_truncated_input(world_dir: Path, eval_dir: Path, *, cutoff: datetime) -> tuple[Path, str]:
    """Write the world's raw tables as known at `cutoff` to `eval_dir/raw`; return it and a fingerprint."""
    return truncate_raw_input(world_dir / "raw", eval_dir / "raw", cutoff=cutoff)


def active_users(engagements: pa.Table, *, cutoff: datetime) -> pa.Array:
    """Users with any logged activity (impressions included) in the week before `cutoff`."""
    stamp = engagements.column("created_at")
    recent = pc.and_(
        pc.greater(stamp, pa.scalar(cutoff - timedelta(days=ACTIVE_DAYS), type=stamp.type)),
        pc.less_equal(stamp, pa.scalar(cutoff, type=stamp.type)),
    )
    return pc.unique(engagements.filter(recent).column("user_id"))


def evaluate_candidates(
    settings: HomefeedSettings,
    world_dir: Path,
    warehouse: Path | None = None,
    *,
    horizon: timedelta = DEFAULT_HORIZON,
    rebuild: bool = False,
) -> dict:
    from jobs.candidates.config import CandidatesConfig

    eval_dir = world_dir / "eval-candidates"
    warehouse = (warehouse or eval_dir / "warehouse").resolve()
    cutoff = world_end_time(world_dir) - horizon
    raw_dir, fingerprint = prepare_truncated_input(world_dir, eval_dir, cutoff=cutoff)
    build_eval_warehouse(
        settings,
        raw_dir=raw_dir,
        warehouse=warehouse,
        as_of=cutoff,
        fingerprint=fingerprint,
        rebuild=rebuild,
        selection=WITH_CANDIDATE_TABLES_SELECTION,
    )

    full_engagements = pq.read_table(
        world_dir / "raw" / "engagements", columns=["user_id", "tweet_id", "action", "created_at"]
    )
    full_tweets = pq.read_table(
        world_dir / "raw" / "tweets", columns=["tweet_id", "author_id", "created_at", "deleted_at"]
    )
    heldout, heldout_counts = heldout_positives(full_engagements, full_tweets, cutoff=cutoff, horizon=horizon)

    pool = read_warehouse_table(warehouse, "candidates", ["user_id", "tweet_id", "sources"])
    built_engagements = read_warehouse_table(warehouse, "engagements", ["user_id", "tweet_id", "action", "created_at"])
    built_tweets = read_warehouse_table(warehouse, "tweets", ["tweet_id", "author_id", "created_at", "deleted_at"])
    recall = pool_recall(pool, heldout)
    recall["popularity_same_size"] = popularity_same_size_recall(
        pool,
        heldout,
        built_engagements,
        built_tweets,
        cutoff=cutoff,
        freshness=timedelta(hours=CandidatesConfig().freshness_hours),
    )
    summary = pool_size_summary(pool, active_users(built_engagements, cutoff=cutoff))
    union, baseline = recall["union"], recall["popularity_same_size"]
    return {
        "pool_recall": {name: round(value, 4) for name, value in recall.items()},
        "union_vs_popularity": round(union / baseline, 3) if baseline else None,
        **summary,
        **heldout_counts,
        "build_time": cutoff.isoformat(),
        "horizon_hours": horizon.total_seconds() / 3600,
        "world": str(world_dir),
        "warehouse": str(warehouse),
    }
