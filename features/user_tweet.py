"""The `user_tweet_features` table: one row per (user, candidate tweet) with the pair features the
rankers read (SimClusters dot product, TwHIN cosine, source flags and scores, content affinity,
topic features), built from the candidate pairs and the per-user and per-tweet representations.
The per-entity tables and the shared time helpers are in `features.tables`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from core.sources import CANDIDATE_SOURCES
from features.realgraph import POSITIVE_ACTIONS
from features.registry import keys_of_asset
from features.tables import (
    DEFAULT_CONFIG,
    FeatureConfig,
    before,
    check_as_of,
    in_last,
    is_action,
    registered,
)
from features.tokens import TWEET_TOKENS, one_row_per_token, tweet_token_lists
from features.topics import TOPIC_FEATURE_NAMES, topic_sides

# The candidate columns user_tweet_features reads, with their types; an absent one is all nulls. The
# source flags (`from_<source>`) and score columns follow `core.sources.CANDIDATE_SOURCES`.
CANDIDATE_COLUMNS: dict[str, str] = {
    "sources": "array<string>",
    **{f"{source}_score": "double" for source in CANDIDATE_SOURCES},
    "social_proof_count": "int",
    "is_in_network": "boolean",
    "pool_rank": "int",
}


# --- user x tweet ----------------------------------------------------------------------------


def _with_candidate_columns(pairs: DataFrame) -> DataFrame:
    """`pairs` with every CANDIDATE_COLUMNS column, the absent ones as typed nulls."""
    present = set(pairs.columns)
    missing = [F.lit(None).cast(dtype).alias(name) for name, dtype in CANDIDATE_COLUMNS.items() if name not in present]
    return pairs.select("*", *missing)


def _balanced_sum(terms: list[Column]) -> Column:
    """t0 + t1 + ... as a balanced tree (shallow expressions for Spark's code generation)."""
    if not terms:
        return F.lit(0.0)
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
    return terms[0]


TWHIN_VECTORS = ("_user_tw", "_tweet_tw")


def _flat_lists(lists: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values as float64, start of each row's list in them, each row's length; 0 for null)."""
    lengths = pc.list_value_length(lists).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    values = pc.list_flatten(lists).to_numpy(zero_copy_only=False).astype(np.float64)
    return values, np.cumsum(lengths) - lengths, lengths


def twhin_cosines(users: pa.Array, tweets: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(cosine, present) per row of two list<float> arrays; present is False (cosine 0) where a
    vector is null, zero, not finite, or the two lengths differ."""
    user_values, user_starts, user_lengths = _flat_lists(users)
    tweet_values, tweet_starts, tweet_lengths = _flat_lists(tweets)
    cosine = np.zeros(len(users))
    present = np.zeros(len(users), dtype=bool)
    comparable = (user_lengths == tweet_lengths) & (user_lengths > 0)
    for length in np.unique(user_lengths[comparable]):
        rows = np.flatnonzero(comparable & (user_lengths == length))
        offsets = np.arange(length)
        u = user_values[user_starts[rows, None] + offsets]
        t = tweet_values[tweet_starts[rows, None] + offsets]
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.einsum("ij,ij->i", u, t) / (np.linalg.norm(u, axis=1) * np.linalg.norm(t, axis=1))
        good = np.isfinite(values)
        cosine[rows[good]] = values[good]
        present[rows[good]] = True
    return cosine, present


def _twhin_cosine_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """mapInArrow: the batch with its two TwHIN vector columns replaced by twhin_cosine and
    has_twhin_embedding (numpy on whole batches; the vectors never become Python objects)."""
    for batch in batches:
        cosine, present = twhin_cosines(batch.column(TWHIN_VECTORS[0]), batch.column(TWHIN_VECTORS[1]))
        rest = [name for name in batch.schema.names if name not in TWHIN_VECTORS]
        yield pa.RecordBatch.from_arrays(
            [batch.column(name) for name in rest] + [pa.array(cosine), pa.array(present)],
            names=rest + ["twhin_cosine", "has_twhin_embedding"],
        )


def _sum_of_lookups(user_map: str, terms: list[tuple[Column, Column | None]]) -> Column:
    """Σ user_map[key] · weight over (key, weight) terms (weight None: 1), a missing key counting 0.
    Unrolled into one compiled expression: a higher-order function is interpreted, and Spark 4.2's
    interpreted array reads look the SQL conf up again for every element (it made content_affinity
    at 100K users run for hours)."""
    looked_up = [F.try_element_at(F.col(user_map), key) for key, _ in terms]
    return _balanced_sum(
        [
            F.coalesce(value if weight is None else value * weight, F.lit(0.0))
            for value, (_, weight) in zip(looked_up, terms)
        ]
    )


def _sparse_dot(user_map: str, tweet_entries: str, length: int) -> Column:
    """Σ user_map[c] · score over the (cluster_id, score) entries of `tweet_entries` (at most
    `length`), looking each cluster up in the user's map; 0 when either side is missing."""
    entries = [F.get(F.col(tweet_entries), i) for i in range(length)]
    return _sum_of_lookups(user_map, [(entry["cluster_id"], entry["score"]) for entry in entries])


CONTENT_PROFILE, CONTENT_NORM = "_content_profile", "_content_norm"


def user_content_profiles(
    token_lists: DataFrame, engagements: DataFrame, *, as_of: datetime, config: FeatureConfig = DEFAULT_CONFIG
) -> DataFrame:
    """(user_id, _content_profile, _content_norm) from `tweet_token_lists`: per user who engaged positively in the
    `content_profile_days` before as_of, how many of those tweets carry each token (a map token ->
    count; a tweet counts once, however many actions) and the map's Euclidean norm."""
    check_as_of(as_of)
    engaged = (
        before(engagements, as_of)
        .where(is_action(*POSITIVE_ACTIONS) & in_last(as_of, config.content_profile_days * 24))
        .select("user_id", "tweet_id")
        .distinct()
    )
    counts = (
        engaged.join(one_row_per_token(token_lists), on="tweet_id", how="inner")
        .groupBy("user_id", "token")
        .agg(F.count(F.lit(1)).cast("double").alias("_w"))
    )
    return counts.groupBy("user_id").agg(
        F.map_from_entries(F.collect_list(F.struct("token", "_w"))).alias(CONTENT_PROFILE),
        F.sqrt(F.sum(F.col("_w") * F.col("_w"))).alias(CONTENT_NORM),
    )


def longest_token_list(token_lists: DataFrame) -> int:
    """The most tokens of one tweet in `tweet_token_lists` (a small aggregation)."""
    return int(token_lists.agg(F.max(F.size(TWEET_TOKENS))).first()[0] or 0)


def content_affinity_column(length: int) -> Column:
    """The cosine of a row's tweet tokens (`_tokens`, at most `length`) with its user's profile
    (`_content_profile`, `_content_norm`): Σ profile[token] / (norm · √#tokens), each token looked
    up in the user's map (no join per token). Null where no token is in the profile, or either
    side is missing."""
    dot = _sum_of_lookups(CONTENT_PROFILE, [(F.get(F.col(TWEET_TOKENS), i), None) for i in range(length)])
    return F.when(dot > 0, dot / (F.col(CONTENT_NORM) * F.sqrt(F.size(TWEET_TOKENS))))


def content_affinity(
    pairs: DataFrame,
    tweets: DataFrame,
    engagements: DataFrame,
    *,
    as_of: datetime,
    config: FeatureConfig = DEFAULT_CONFIG,
) -> DataFrame:
    """(user_id, tweet_id, content_affinity) for the distinct (user_id, tweet_id) of `pairs`
    (`content_affinity_column`). Pairs whose tweet has no text, whose user has no profile or that
    share no token with it are left out (the feature's default, 0)."""
    token_lists = tweet_token_lists(tweets)
    scored = (
        pairs.select("user_id", "tweet_id")
        .distinct()
        .join(token_lists, on="tweet_id", how="inner")
        .join(user_content_profiles(token_lists, engagements, as_of=as_of, config=config), on="user_id", how="inner")
        .select(
            "user_id", "tweet_id", content_affinity_column(longest_token_list(token_lists)).alias("content_affinity")
        )
    )
    return scored.where(F.col("content_affinity").isNotNull())


PAIR_VALUE_NAMES = ("content_affinity", *TOPIC_FEATURE_NAMES)


@dataclass(frozen=True)
class PairSides:
    """What the pair values (PAIR_VALUE_NAMES) read from each side of a (user, tweet) row: columns
    for the per-tweet and per-user rows that user_tweet_features joins anyway (None: nothing to
    add), and the values as expressions over the joined row."""

    tweets: DataFrame | None
    users: DataFrame | None
    values: dict[str, Column]


def _null_doubles(names: tuple[str, ...]) -> dict[str, Column]:
    return {name: F.lit(None).cast("double") for name in names}


def pair_sides(
    tweets: DataFrame | None,
    engagements: DataFrame | None,
    follows: DataFrame | None,
    *,
    as_of: datetime,
    config: FeatureConfig,
) -> PairSides:
    """content_affinity (needs `tweets` and `engagements`) and the topic features (need `follows`
    too) as per-side columns; a value whose inputs are missing is null. Each pair value is then an
    expression over one joined row, so the 91M candidate rows of a 100K-user world are never
    exploded per token, grouped or joined again (they used to be, and that took hours)."""
    if tweets is None or engagements is None:
        return PairSides(None, None, _null_doubles(PAIR_VALUE_NAMES))
    tweet_side = tweet_token_lists(tweets)
    user_side = user_content_profiles(tweet_side, engagements, as_of=as_of, config=config)
    values = {"content_affinity": content_affinity_column(longest_token_list(tweet_side))}
    if follows is None:
        return PairSides(tweet_side, user_side, {**values, **_null_doubles(TOPIC_FEATURE_NAMES)})
    topics = topic_sides(tweets, follows, engagements, as_of=as_of, config=config.topics)
    return PairSides(
        tweet_side.join(topics.tweets, on="tweet_id", how="full"),
        user_side.join(topics.users, on="user_id", how="full"),
        {**values, **topics.values},
    )


def driver_memory_bytes(spark: SparkSession) -> int:
    """`spark.driver.memory` of the session (Spark's default, 1g, when unset), in bytes."""
    setting = spark.sparkContext.getConf().get("spark.driver.memory", "1g")
    return int(spark.sparkContext._jvm.org.apache.spark.network.util.JavaUtils.byteStringAsBytes(setting))


def broadcast_users_max(config: FeatureConfig, driver_memory: int) -> int:
    """The most users whose per-user rows user_tweet_features broadcasts (FeatureConfig)."""
    if config.broadcast_user_vectors_max is not None:
        return config.broadcast_user_vectors_max
    return int(driver_memory * config.broadcast_driver_memory_share) // config.broadcast_bytes_per_user


def _entity_sides(
    simclusters_interested_in: DataFrame,
    simclusters_tweet_embeddings: DataFrame,
    twhin_user_embeddings: DataFrame,
    twhin_tweet_embeddings: DataFrame,
    *,
    tweets: DataFrame | None,
    engagements: DataFrame | None,
    follows: DataFrame | None,
    as_of: datetime,
    config: FeatureConfig,
) -> tuple[DataFrame, DataFrame, int, PairSides]:
    """The per-user rows (SimClusters map, TwHIN vector, user sides) and per-tweet rows (SimClusters
    entries, TwHIN vector, tweet sides) user_tweet_features joins, the longest tweet vector, and the
    pair sides."""
    entries = F.struct(
        F.col("cluster_id").cast("int").alias("cluster_id"), F.col("score").cast("double").alias("score")
    )
    user_clusters = simclusters_interested_in.groupBy("user_id").agg(
        F.map_from_entries(F.collect_list(entries)).alias("_user_sc")
    )
    tweet_clusters = simclusters_tweet_embeddings.groupBy("tweet_id").agg(F.collect_list(entries).alias("_tweet_sc"))
    tweet_length = int(simclusters_tweet_embeddings.groupBy("tweet_id").count().agg(F.max("count")).first()[0] or 0)
    user_vectors = user_clusters.join(
        twhin_user_embeddings.select("user_id", F.col("embedding").alias(TWHIN_VECTORS[0])), on="user_id", how="full"
    )
    tweet_vectors = tweet_clusters.join(
        twhin_tweet_embeddings.select("tweet_id", F.col("embedding").alias(TWHIN_VECTORS[1])), on="tweet_id", how="full"
    )
    sides = pair_sides(tweets, engagements, follows, as_of=as_of, config=config)
    if sides.tweets is not None:
        tweet_vectors = tweet_vectors.join(sides.tweets, on="tweet_id", how="full")
    if sides.users is not None:
        user_vectors = user_vectors.join(sides.users, on="user_id", how="full")
    return user_vectors, tweet_vectors, tweet_length, sides


def user_tweet_features(
    pairs: DataFrame,
    simclusters_interested_in: DataFrame,
    simclusters_tweet_embeddings: DataFrame,
    twhin_user_embeddings: DataFrame,
    twhin_tweet_embeddings: DataFrame,
    *,
    as_of: datetime,
    tweets: DataFrame | None = None,
    engagements: DataFrame | None = None,
    follows: DataFrame | None = None,
    config: FeatureConfig = DEFAULT_CONFIG,
) -> DataFrame:
    """One row per row of `pairs` (user_id, tweet_id, author_id and any of CANDIDATE_COLUMNS: the
    `candidates` table, or historical impressions without them), the `user_tweet_features` table.

    simclusters_dot = Σ_c InterestedIn(user, c) · TweetEmbedding(tweet, c): a compiled Spark
    expression unrolled over the longest tweet vector in the input (20 clusters by SimClusters'
    defaults), each cluster looked up in the user's map. twhin_cosine: numpy on Arrow batches
    (`mapInArrow`), since per-element Spark expressions over 64 dimensions are several times
    slower (a higher-order function is interpreted per element; an unrolled sum makes a method too
    large for the JIT). has_twhin_embedding: both vectors exist, are non-zero and have the same
    length. A source flag is set when `sources` names the source (case, `_`, `-` and spaces
    ignored: "in_network", "InNetwork") or its score is not null.

    Two small aggregations run while the plan is built: the longest tweet vector and the number
    of TwHIN users (the user vectors are broadcast when there are at most `broadcast_users_max`:
    256 per MB of driver memory by default). The inputs carry no event times: `as_of` is checked, and the
    caller passes the snapshot of each input that belongs to it. content_affinity
    (`content_affinity_column`) needs `tweets` and `engagements` (events before as_of are read);
    without them it is left at its default. The topic features (`features.topics.topic_sides`) need
    `tweets`, `engagements` and `follows`. Both ride on the per-tweet and per-user rows
    (`pair_sides`), so every feature of a row is read from one join of each side.
    """
    check_as_of(as_of)
    user_vectors, tweet_vectors, tweet_length, sides = _entity_sides(
        simclusters_interested_in,
        simclusters_tweet_embeddings,
        twhin_user_embeddings,
        twhin_tweet_embeddings,
        tweets=tweets,
        engagements=engagements,
        follows=follows,
        as_of=as_of,
        config=config,
    )
    if twhin_user_embeddings.count() <= broadcast_users_max(config, driver_memory_bytes(pairs.sparkSession)):
        user_vectors = F.broadcast(user_vectors)  # then the pairs are shuffled once, slim, by tweet_id
    candidate_rows = _with_candidate_columns(pairs).select("user_id", "tweet_id", *CANDIDATE_COLUMNS)
    joined = candidate_rows.join(tweet_vectors, on="tweet_id", how="left").join(user_vectors, on="user_id", how="left")
    flags = _source_flags()
    scored = joined.select(
        *keys_of_asset("user_tweet_features"),
        _sparse_dot("_user_sc", "_tweet_sc", tweet_length).alias("simclusters_dot"),
        *[flag.alias(f"from_{source}") for source, flag in flags.items()],
        sum((flag.cast("int") for flag in flags.values()), F.lit(0)).alias("source_count"),
        *[F.col(f"{source}_score") for source in CANDIDATE_SOURCES],
        "social_proof_count",
        "pool_rank",
        "is_in_network",
        *[sides.values[name].alias(name) for name in PAIR_VALUE_NAMES],
        *TWHIN_VECTORS,
    )
    return registered(_with_twhin_cosine(scored), "user_tweet_features")


def _source_flags() -> dict[str, Column]:
    """Per candidate source, whether a row came from it: `sources` names it (case, `_`, `-` and
    spaces ignored) or its score is not null."""
    # ",innetwork,uteg," : one normalised string per row, then a substring test per source.
    names = F.concat(
        F.lit(","), F.lower(F.regexp_replace(F.array_join(F.col("sources"), ","), "[_\\- ]", "")), F.lit(",")
    )
    return {
        source: F.coalesce(names.contains("," + source.replace("_", "") + ","), F.lit(False))
        | F.col(f"{source}_score").isNotNull()
        for source in CANDIDATE_SOURCES
    }


def _with_twhin_cosine(scored: DataFrame) -> DataFrame:
    """`scored` with its two TwHIN vectors (TWHIN_VECTORS) replaced by twhin_cosine and
    has_twhin_embedding, computed with numpy on Arrow batches."""
    with_cosine = T.StructType(
        [T.StructField(f.name, f.dataType, True) for f in scored.schema.fields if f.name not in TWHIN_VECTORS]
        + [
            T.StructField("twhin_cosine", T.DoubleType(), True),
            T.StructField("has_twhin_embedding", T.BooleanType(), True),
        ]
    )
    return scored.mapInArrow(_twhin_cosine_batches, with_cosine)
