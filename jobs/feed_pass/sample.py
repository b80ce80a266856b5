"""What the pass did for a sample of users, in full: `ranked_feeds_sample`.

The per-user pass keeps no (user, candidate) row but the feed's. For a deterministic sample of
users (the first of the users in xxhash64 order) the same steps run again and keep every merged
candidate: which filter removed it, its light and heavy scores and ranks in the whole pool, the
heavy ranker's input features, its feed rank, and why it is not in the feed. It is what people
inspected the `candidates` and `user_tweet_features` tables for, at 1% of their size, and the
light ranker's recall of the heavy ranker's top is measured on it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from core.heads import HEAD_COLUMNS
from jobs.candidates.config import CANDIDATES_SCHEMA, CandidatesConfig
from jobs.feed_pass.block import (
    PassModels,
    PassTables,
    feeds_of_scored,
    heavy_scored,
    light_scores,
    ranks_within_users,
    rows_of_users,
    tagged_of_block,
)

LIGHT_RANKER_CUT, HEURISTICS = "light_ranker", "heuristics"
CANDIDATE_FIELDS = ("user_id", "tweet_id", "author_id", "tweet_created_at", "sources", "is_in_network")
SAMPLE_SCHEMA = T.StructType(
    [
        *[CANDIDATES_SCHEMA[name] for name in CANDIDATE_FIELDS],
        T.StructField("pool_rank", T.IntegerType(), True),
        T.StructField("filtered_by", T.StringType(), True),
        T.StructField("light_score", T.DoubleType(), True),
        T.StructField("light_rank", T.IntegerType(), True),
        T.StructField("heavy_score", T.DoubleType(), True),
        T.StructField("heavy_rank", T.IntegerType(), True),
        *[T.StructField(column, T.DoubleType(), True) for column in HEAD_COLUMNS],
        T.StructField("feed_rank", T.IntegerType(), True),
        # The filter that removed it, LIGHT_RANKER_CUT, HEURISTICS, or null: in the feed.
        T.StructField("dropped_by", T.StringType(), True),
        T.StructField("features", T.MapType(T.StringType(), T.DoubleType()), True),
    ]
)
SAMPLE_ARROW = to_arrow_schema(SAMPLE_SCHEMA, timezone="UTC")


def _features_map(heavy: pa.Table, names) -> pa.Array:
    """Each row's features as a map name -> value (booleans 0/1)."""
    values = np.stack(
        [pc.cast(heavy.column(name), pa.float64()).to_numpy(zero_copy_only=False) for name in names], axis=1
    )
    offsets = pa.array(np.arange(0, values.size + 1, len(names)), type=pa.int32())
    keys = pa.array(np.tile(np.array(names, dtype=object), len(values)), type=pa.string())
    return pa.MapArray.from_arrays(offsets, keys, pa.array(values.ravel()))


def _full(length: int, positions: np.ndarray, values: np.ndarray, type_: pa.DataType) -> pa.Array:
    """An array of `length` nulls with `values` at `positions`."""
    out = np.zeros(length, dtype=values.dtype)
    mask = np.ones(length, dtype=bool)
    out[positions], mask[positions] = values, False
    return pa.array(out, type=type_, mask=mask)


def sample_of_block(
    batch: pa.RecordBatch, tables: PassTables, models: PassModels, config: CandidatesConfig
) -> pa.Table:
    """Every merged candidate of the block's (sampled) users, as SAMPLE_ARROW."""
    requests = pa.Table.from_batches([batch])
    tagged = tagged_of_block(batch, tables.indexes, config)
    kept_at = np.flatnonzero(pc.is_null(tagged.column("filtered_by")).to_numpy(zero_copy_only=False))
    kept = tagged.take(pa.array(kept_at))
    if kept.num_rows == 0:
        return SAMPLE_ARROW.empty_table()
    users, tweets = (kept.column(c).to_numpy().astype(np.int64) for c in ("user_id", "tweet_id"))
    user_rows = rows_of_users(batch, users)
    light = light_scores(requests, tables, models, kept, user_rows)
    scored, heavy = heavy_scored(requests, tables, models, kept, user_rows, light)
    heavy_score = scored.column("heavy_score").to_numpy()
    light_rank = ranks_within_users(users, light, tweets)
    best = np.flatnonzero(light_rank <= models.light_keep)  # best_per_user, from the ranks at hand
    feeds = feeds_of_scored(scored.take(pa.array(best)), models.heuristics)
    in_feed = dict(
        zip(
            zip(feeds.column("user_id").to_pylist(), feeds.column("tweet_id").to_pylist()),
            feeds.column("rank").to_pylist(),
            strict=True,
        )
    )
    feed_rank = np.array([in_feed.get(pair, 0) for pair in zip(users.tolist(), tweets.tolist())], dtype=np.int32)
    survived = np.zeros(len(kept_at), dtype=bool)
    survived[best] = True
    n = tagged.num_rows
    dropped = np.array(tagged.column("filtered_by").to_pylist(), dtype=object)
    dropped[kept_at] = np.where(feed_rank > 0, None, np.where(survived, HEURISTICS, LIGHT_RANKER_CUT))
    created = pc.cast(tagged.column("created_us"), pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    columns = {
        **{name: tagged.column(name) for name in ("user_id", "tweet_id", "author_id")},
        "tweet_created_at": created,
        **{name: tagged.column(name) for name in ("sources", "is_in_network", "pool_rank", "filtered_by")},
        "light_score": _full(n, kept_at, light, pa.float64()),
        "light_rank": _full(n, kept_at, light_rank, pa.int32()),
        "heavy_score": _full(n, kept_at, heavy_score, pa.float64()),
        "heavy_rank": _full(n, kept_at, ranks_within_users(users, heavy_score, tweets), pa.int32()),
        **{c: _full(n, kept_at, scored.column(c).to_numpy(), pa.float64()) for c in HEAD_COLUMNS},
        "feed_rank": _full(n, kept_at[feed_rank > 0], feed_rank[feed_rank > 0], pa.int32()),
        "dropped_by": pa.array(dropped, type=pa.string()),
        "features": _features_on(n, kept_at, _features_map(heavy, models.heavy_features)),
    }
    return pa.table(columns).cast(SAMPLE_ARROW)


def _features_on(length: int, positions: np.ndarray, maps: pa.Array) -> pa.Array:
    """`maps` (one per kept row) at `positions` of `length` rows, null elsewhere."""
    index = np.full(length, -1)
    index[positions] = np.arange(len(positions))
    present = index >= 0
    taken = maps.take(pa.array(np.where(present, index, 0)))
    return pc.if_else(pa.array(present), taken, pa.nulls(length, maps.type))


def light_ranker_recall(sample: DataFrame, *, keep: int, top: int = 100) -> dict:
    """How much of the heavy ranker's top `top` per sampled user (over the whole kept pool) is
    within the light ranker's best `keep`: the share of (user, top tweet) pairs, and the mean over users."""
    kept = (F.col("light_rank") <= keep).cast("long")
    per_user = (
        sample.where(F.col("heavy_rank") <= top)
        .groupBy("user_id")
        .agg(F.avg(kept).alias("_recall"), F.sum(kept).alias("_kept"), F.count(F.lit(1)).alias("_top"))
    )
    row = per_user.agg(F.avg("_recall"), F.sum("_kept"), F.sum("_top"), F.count(F.lit(1))).first()
    return {
        "mean_user_recall": None if row[0] is None else round(float(row[0]), 4),
        "pair_recall": None if not row[2] else round(int(row[1]) / int(row[2]), 4),
        "users": int(row[3]),
        "keep": keep,
        "top": top,
    }
