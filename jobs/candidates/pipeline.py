"""The per-user pipeline on Spark: one `mapInArrow` over the requests runs every source, then the
merge, per block of users; the kept rows become the `candidates` table."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.candidates.arrow import list_array
from jobs.candidates.blocks import RequestBlock, Retrieved, request_blocks
from jobs.candidates.config import CANDIDATES_SCHEMA, DEFAULTS, RETRIEVED_SCHEMA, TAGGED_SCHEMA, CandidatesConfig
from jobs.candidates.indexes import CandidateIndexes, TweetTable
from jobs.candidates.merge import merge_block
from jobs.candidates.sources import retrieve_block

BatchFunction = Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]


def retrieved_candidates(
    requests: DataFrame, indexes: CandidateIndexes, *, config: CandidatesConfig = DEFAULTS
) -> DataFrame:
    """Every source's rows before the merge: (source, user_id, tweet_id, author_id,
    tweet_created_at, score, rank, cluster_id, proof_user_ids, proof_count)."""
    rows = requests.mapInArrow(block_pipeline(indexes, config, merged=False), RETRIEVED_SCHEMA)
    return rows.withColumn("tweet_created_at", F.timestamp_micros("created_us")).drop("created_us")


def tagged_candidates(
    requests: DataFrame, indexes: CandidateIndexes, *, config: CandidatesConfig = DEFAULTS
) -> DataFrame:
    """Every merged (user, tweet) row with `filtered_by` (null = kept) and `pool_rank` (kept rows)."""
    return requests.mapInArrow(block_pipeline(indexes, config, merged=True), TAGGED_SCHEMA)


def select_candidates(tagged: DataFrame, *, as_of: datetime) -> DataFrame:
    """The kept rows of `tagged_candidates(...)` as the table: the `CANDIDATES_SCHEMA` columns."""
    kept = tagged.where(F.col("filtered_by").isNull()).withColumns(
        {
            "tweet_created_at": F.timestamp_micros("created_us"),
            "built_at": F.lit(as_of),
        }
    )
    return kept.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in CANDIDATES_SCHEMA.fields])


def block_pipeline(indexes: CandidateIndexes, config: CandidatesConfig, *, merged: bool) -> BatchFunction:
    """The function `mapInArrow` runs on request batches: every source per block of users, then
    `merge_block` (rows of `TAGGED_SCHEMA`), or, unmerged, the sources' rows (`RETRIEVED_SCHEMA`)."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # one Spark task per core
        # Arrays unpickled from the task can be read-only; torch wants the matrix writable.
        local = (
            replace(indexes, twhin_matrix=np.array(indexes.twhin_matrix))
            if not indexes.twhin_matrix.flags.writeable
            else indexes
        )
        try:
            for batch in batches:
                for block in request_blocks(batch, config.block_users):
                    retrieved = retrieve_block(block, local, config)
                    if merged:
                        yield merge_block(block, retrieved, local.tweets, config)
                    else:
                        yield from retrieved_batches(block, retrieved, local.tweets)
        finally:
            torch.set_num_threads(threads)

    return run


def retrieved_batches(block: RequestBlock, retrieved: list[Retrieved], tweets: TweetTable) -> Iterator[pa.RecordBatch]:
    """The sources' rows before the merge (`RETRIEVED_SCHEMA`), one batch per source."""
    for r in retrieved:
        proofs = (
            list_array(r.proof_offsets, pa.array(r.proof_ids, type=pa.int64()))
            if r.proof_ids is not None
            else pa.nulls(len(r), pa.list_(pa.int64()))
        )
        yield pa.RecordBatch.from_arrays(
            [
                pa.array(np.full(len(r), r.source), type=pa.string()),
                pa.array(block.user_ids[r.user_rows], type=pa.int64()),
                pa.array(tweets.tweet_ids[r.cols], type=pa.int64()),
                pa.array(tweets.author_ids[r.cols], type=pa.int64()),
                pa.array(tweets.created_us[r.cols], type=pa.int64()),
                pa.array(r.scores, type=pa.float64()),
                pa.array(r.ranks, type=pa.int32()),
                pa.array(r.clusters, type=pa.int32()) if r.clusters is not None else pa.nulls(len(r), pa.int32()),
                proofs,
                pa.array(r.proof_counts, type=pa.int32())
                if r.proof_counts is not None
                else pa.nulls(len(r), pa.int32()),
            ],
            names=RETRIEVED_SCHEMA.fieldNames(),
        )
