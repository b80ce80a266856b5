"""Held-out follow prediction for TwHIN (what `homefeed eval graph` runs for this method).

The follows are split by `core.graph_eval.split_follows` (a fixed 10% hidden); TwHIN trains on the
training follows plus the engagement and authored edges; its top-k follow candidates are compared
with the popularity baseline by recall@k of the hidden follows.
"""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa

from core.graph_eval import follow_recall_at_k, popularity_candidates, split_follows
from models.twhin.candidates import twhin_follow_candidates
from models.twhin.export import RELATIONS_TABLE, USER_EMBEDDINGS_TABLE, read_embeddings, read_translations
from models.twhin.graph import USER, build_edges
from models.twhin.train import TwhinConfig, train_twhin


def evaluate_twhin_follow_recall(
    follows: pa.Table,
    engagements: pa.Table,
    tweets: pa.Table,
    *,
    config: TwhinConfig = TwhinConfig(),
    k: int = 50,
    relations: tuple[str, ...] | None = None,
    log=None,
) -> dict:
    """Recall@k of held-out follows: TwHIN's candidates and the popularity baseline's."""
    train, heldout = split_follows(follows)
    edges = build_edges(train, engagements, tweets, relations=relations)
    started = time.monotonic()
    result = train_twhin(edges, config, log=log)
    candidates = twhin_follow_candidates(
        (result.ids(USER), result.embeddings(USER)),
        result.translation("follow"),
        train,
        k=k,
        device=config.device,
        num_threads=config.num_threads,
    )
    seconds = time.monotonic() - started
    return {
        "method": "twhin",
        "k": k,
        "train_follows": train.num_rows,
        "heldout_follows": heldout.num_rows,
        "edges": edges.num_edges,
        "edges_per_relation": edges.edges_per_relation(),
        "recall": round(follow_recall_at_k(candidates, heldout, k=k), 4),
        "popularity_recall": round(follow_recall_at_k(popularity_candidates(train, k=k), heldout, k=k), 4),
        "final_loss": result.final_loss,
        "train_seconds": result.seconds,
        "seconds": round(seconds, 2),
        "device": result.device,
    }


def follow_candidates_from_warehouse(
    tables_dir: Path, train_follows: pa.Table, *, k: int = 50, device: str = "cpu"
) -> pa.Table:
    """`twhin_follow_candidates` from the materialized `twhin_user_embeddings` and `twhin_relations`
    Delta tables under `tables_dir` (what `homefeed eval graph` scores after building its warehouse)."""
    users = read_embeddings(tables_dir / USER_EMBEDDINGS_TABLE, "user_id")
    translation = read_translations(tables_dir / RELATIONS_TABLE)["follow"]
    return twhin_follow_candidates(users, translation, train_follows, k=k, device=device)
