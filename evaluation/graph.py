"""`homefeed eval graph`: graph representations measured on a synthetic world's ground truth.

The world's follows are split (`core.graph_eval.split_follows`): 10% are hidden, the rest plus
every other raw table become the evaluation's raw input, from which every asset is built into the
evaluation warehouse. Then:

* KnownFor against the true home communities (NMI, coverage);
* recall@50 of the hidden follows from SimClusters, TwHIN, two-hop social proof and popularity;
* RealGraph's next-period interaction prediction against raw recent counts.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from core.contract import RAW_TABLES
from core.graph_eval import follow_recall_at_k, popularity_candidates, split_follows
from core.settings import HomefeedSettings
from evaluation.worlds import read_warehouse_table, world_end_time
from orchestration.side_builds import build_eval_warehouse

EVAL_K = 50


@dataclass(frozen=True)
class EvalWorld:
    world_dir: Path
    raw_dir: Path
    warehouse: Path
    heldout: pa.Table
    train_follows: pa.Table
    as_of: datetime


def prepare_holdout_input(world_dir: Path, eval_dir: Path) -> tuple[Path, pa.Table, pa.Table, str]:
    """Write the evaluation's raw input (follows minus the hidden ones; other tables linked)."""
    raw_dir = eval_dir / "raw"
    if raw_dir.exists():
        shutil.rmtree(raw_dir)
    for table in RAW_TABLES:
        if table.name != "follows":
            shutil.copytree(world_dir / "raw" / table.name, raw_dir / table.name, copy_function=link_or_copy)
    follows = pq.read_table(world_dir / "raw" / "follows")
    train, heldout = split_follows(follows)
    (raw_dir / "follows").mkdir(parents=True)
    pq.write_table(train, raw_dir / "follows" / "part-00000.parquet")
    pq.write_table(heldout, eval_dir / "heldout_follows.parquet")
    fingerprint = hashlib.sha256(f"{world_dir.resolve()}:{follows.num_rows}:{heldout.num_rows}".encode()).hexdigest()[
        :16
    ]
    return raw_dir, train, heldout, fingerprint


def link_or_copy(src: str, dst: str) -> None:
    import os

    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def build_eval_world(
    settings: HomefeedSettings, world_dir: Path, warehouse: Path | None, *, rebuild: bool = False
) -> EvalWorld:
    """Split the follows, and build every asset from the split unless this warehouse has it already."""
    eval_dir = world_dir / "eval"
    warehouse = (warehouse or eval_dir / "warehouse").resolve()
    raw_dir, train, heldout, fingerprint = prepare_holdout_input(world_dir, eval_dir)
    as_of = world_end_time(world_dir)
    build_eval_warehouse(
        settings, raw_dir=raw_dir, warehouse=warehouse, as_of=as_of, fingerprint=fingerprint, rebuild=rebuild
    )
    return EvalWorld(world_dir, raw_dir, warehouse, heldout, train, as_of)


def two_hop_candidates(warehouse: Path) -> pa.Table:
    table = read_warehouse_table(
        warehouse, "follow_graph_two_hop", ["user_id", "candidate_id", "social_proof_count", "rank"]
    )
    # Rank breaks ties in social proof the way the job does (smaller id first).
    score = pa.compute.subtract(
        pa.compute.cast(table["social_proof_count"], pa.float64()),
        pa.compute.multiply(pa.compute.cast(table["rank"], pa.float64()), 1e-6),
    )
    return pa.table({"user_id": table["user_id"], "candidate_id": table["candidate_id"], "score": score})


def evaluate_graph(
    settings: HomefeedSettings, world_dir: Path, warehouse: Path | None = None, *, rebuild: bool = False
) -> dict:
    from features.realgraph import RealGraphConfig, user_author_interactions
    from jobs.delta_io import read_delta
    from jobs.spark_session import build_spark_session
    from models.realgraph_model import evaluate_next_period

    world = build_eval_world(settings, world_dir, warehouse, rebuild=rebuild)
    tables = world.warehouse / "tables"
    spark = build_spark_session(
        master=settings.spark_master,
        jars_cache_dir=settings.cache_dir,
        driver_memory=settings.spark_driver_memory,
        shuffle_partitions=settings.spark_shuffle_partitions,
        extra_conf=settings.spark_conf,
    )

    recall = {
        "two_hop": follow_recall_at_k(two_hop_candidates(world.warehouse), world.heldout, k=EVAL_K),
        "popularity": follow_recall_at_k(popularity_candidates(world.train_follows, k=EVAL_K), world.heldout, k=EVAL_K),
    }
    recall.update(_simclusters_recall(spark, world))
    recall.update(_twhin_recall(world))
    known_for = _known_for_quality(world)

    config = RealGraphConfig()
    interactions = user_author_interactions(
        read_delta(spark, tables / "engagements"), read_delta(spark, tables / "tweets"), actions=config.actions
    ).cache()
    follows = read_delta(spark, tables / "follows")
    realgraph = evaluate_next_period(interactions, follows, as_of=world.as_of, config=config, seed=7)
    interactions.unpersist()

    return {
        **known_for,
        "follow_recall_at_50": {name: round(value, 4) for name, value in recall.items()},
        "realgraph_next_period": realgraph,
        "heldout_follows": world.heldout.num_rows,
        "train_follows": world.train_follows.num_rows,
        "world": str(world.world_dir),
        "warehouse": str(world.warehouse),
    }


def _simclusters_recall(spark, world: EvalWorld) -> dict[str, float]:
    from jobs.delta_io import read_delta
    from jobs.simclusters import simclusters_follow_candidates

    tables = world.warehouse / "tables"
    candidates = simclusters_follow_candidates(
        read_delta(spark, tables / "simclusters_interested_in"),
        read_delta(spark, tables / "simclusters_producer_embeddings"),
        read_delta(spark, tables / "follows"),
        k=EVAL_K,
    ).toArrow()
    return {"simclusters": follow_recall_at_k(candidates, world.heldout, k=EVAL_K)}


def _twhin_recall(world: EvalWorld) -> dict[str, float]:
    from models.twhin.candidates import twhin_follow_candidates
    from models.twhin.export import read_embeddings, read_translations

    tables = world.warehouse / "tables"
    candidates = twhin_follow_candidates(
        read_embeddings(tables / "twhin_user_embeddings", "user_id"),
        read_translations(tables / "twhin_relations")["follow"],
        world.train_follows,
        k=EVAL_K,
    )
    return {"twhin": follow_recall_at_k(candidates, world.heldout, k=EVAL_K)}


def _known_for_quality(world: EvalWorld) -> dict:
    from jobs.simclusters import known_for_quality

    quality = known_for_quality(
        read_warehouse_table(world.warehouse, "simclusters_known_for"),
        pq.read_table(world.world_dir / "truth" / "users.parquet", columns=["user_id", "home_community"]),
        follows=world.train_follows,
    )
    return {
        "known_for_nmi": round(quality["known_for_nmi"], 4),
        "known_for_coverage": round(quality["known_for_coverage"], 4),
        **{k: v for k, v in quality.items() if k not in ("known_for_nmi", "known_for_coverage")},
    }
