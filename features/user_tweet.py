"""The `user_tweet_features` table: one row per (user, candidate tweet) with the pair features the
rankers read (SimClusters dot product, TwHIN cosine, source flags and scores, content affinity,
topic features), built from the candidate pairs and the per-user and per-tweet representations.
The per-entity tables and the shared time helpers are in `features.tables`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from core.sources import CANDIDATE_SOURCES
from features.pair_kernel import CONTENT_NORM, CONTENT_PROFILE, TWEET_SC, TWEET_TW, USER_SC, USER_TW
from features.pair_rows import SIDE_COLUMNS, with_pair_features
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
from features.tokens import one_row_per_token, tweet_token_lists
from features.topics import topic_sides

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


def content_affinity(
    pairs: DataFrame,
    tweets: DataFrame,
    engagements: DataFrame,
    *,
    as_of: datetime,
    config: FeatureConfig = DEFAULT_CONFIG,
) -> DataFrame:
    """(user_id, tweet_id, content_affinity) for the distinct (user_id, tweet_id) of `pairs`
    (`features.pair_kernel`). Pairs whose tweet has no text, whose user has no profile or that
    share no token with it are left out (the feature's default, 0)."""
    token_lists = tweet_token_lists(tweets)
    joined = (
        pairs.select("user_id", "tweet_id")
        .distinct()
        .join(token_lists, on="tweet_id", how="inner")
        .join(user_content_profiles(token_lists, engagements, as_of=as_of, config=config), on="user_id", how="inner")
    )
    scored = with_pair_features(joined, overall_rate=None, names=["content_affinity"])
    return scored.where(F.col("content_affinity").isNotNull())


@dataclass(frozen=True)
class PairSides:
    """The per-tweet and per-user columns the pair features read beyond the embeddings
    (`features.pair_kernel`: tokens and topics, content profiles and topic values), for the rows
    user_tweet_features joins anyway (None: nothing to add), and the overall engagement rate the
    topic rate falls back to (None: no topic features)."""

    tweets: DataFrame | None
    users: DataFrame | None
    overall_rate: float | None


def pair_sides(
    tweets: DataFrame | None,
    engagements: DataFrame | None,
    follows: DataFrame | None,
    *,
    as_of: datetime,
    config: FeatureConfig,
) -> PairSides:
    """content_affinity's sides (need `tweets` and `engagements`) and the topic features' (need
    `follows` too); a feature whose inputs are missing is null. Each pair's values are then read
    from one joined row, so the 91M candidate rows of a 100K-user world are never exploded per
    token, grouped or joined again (they used to be, and that took hours)."""
    if tweets is None or engagements is None:
        return PairSides(None, None, None)
    tweet_side = tweet_token_lists(tweets)
    user_side = user_content_profiles(tweet_side, engagements, as_of=as_of, config=config)
    if follows is None:
        return PairSides(tweet_side, user_side, None)
    topics = topic_sides(tweets, follows, engagements, as_of=as_of, config=config.topics)
    return PairSides(
        tweet_side.join(topics.tweets, on="tweet_id", how="full"),
        user_side.join(topics.users, on="user_id", how="full"),
        topics.overall_rate,
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


def entity_sides(
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
) -> tuple[DataFrame, DataFrame, PairSides]:
    """The user side (SimClusters map, TwHIN vector, content and topic sides) and the tweet side
    (SimClusters entries, TwHIN vector, tokens and topic) user_tweet_features joins, as the columns
    of `features.pair_kernel`, and the pair sides."""
    entries = F.struct(
        F.col("cluster_id").cast("int").alias("cluster_id"), F.col("score").cast("double").alias("score")
    )
    user_clusters = simclusters_interested_in.groupBy("user_id").agg(
        F.map_from_entries(F.collect_list(entries)).alias(USER_SC)
    )
    tweet_clusters = simclusters_tweet_embeddings.groupBy("tweet_id").agg(F.collect_list(entries).alias(TWEET_SC))
    user_vectors = user_clusters.join(
        twhin_user_embeddings.select("user_id", F.col("embedding").alias(USER_TW)), on="user_id", how="full"
    )
    tweet_vectors = tweet_clusters.join(
        twhin_tweet_embeddings.select("tweet_id", F.col("embedding").alias(TWEET_TW)), on="tweet_id", how="full"
    )
    sides = pair_sides(tweets, engagements, follows, as_of=as_of, config=config)
    if sides.tweets is not None:
        tweet_vectors = tweet_vectors.join(sides.tweets, on="tweet_id", how="full")
    if sides.users is not None:
        user_vectors = user_vectors.join(sides.users, on="user_id", how="full")
    return user_vectors, tweet_vectors, sides


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

    The pair features (simclusters_dot, twhin_cosine, has_twhin_embedding, content_affinity and
    the topic values) are computed by the one pair-feature kernel, `features.pair_kernel`, on
    Arrow batches of rows joined with both sides (`features.pair_rows`): the same code the scoring
    pass runs per block of users, so training and scoring cannot drift. A source flag is set when
    `sources` names the source (case, `_`, `-` and spaces ignored: "in_network", "InNetwork") or
    its score is not null.

    One small aggregation runs while the plan is built: the number of TwHIN users (the user
    sides are broadcast when there are at most `broadcast_users_max`: 256 per MB of driver memory
    by default). The inputs carry no event times: `as_of` is checked, and the caller passes the
    snapshot of each input that belongs to it. content_affinity needs `tweets` and `engagements`
    (events before as_of are read); without them it is left at its default. The topic features
    (`features.topics.topic_sides`) need `tweets`, `engagements` and `follows`. Both ride on the
    per-tweet and per-user rows (`pair_sides`), so every feature of a row is read from one join of
    each side.
    """
    check_as_of(as_of)
    user_vectors, tweet_vectors, sides = entity_sides(
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
    sides_present = [name for name in joined.columns if name in SIDE_COLUMNS]
    scored = joined.select(
        *keys_of_asset("user_tweet_features"),
        *[flag.alias(f"from_{source}") for source, flag in flags.items()],
        sum((flag.cast("int") for flag in flags.values()), F.lit(0)).alias("source_count"),
        *[F.col(f"{source}_score") for source in CANDIDATE_SOURCES],
        "social_proof_count",
        "pool_rank",
        "is_in_network",
        *sides_present,
    )
    return registered(with_pair_features(scored, overall_rate=sides.overall_rate), "user_tweet_features")


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
