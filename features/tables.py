"""The batch feature tables: one pure Spark transform per entity, each as of an explicit moment.

Point-in-time rule. Every function takes a keyword-only `as_of` and uses only events stamped
strictly before it (accounts, follows, tweets, engagements, social actions); windows are measured
back from it ([as_of - window, as_of)); a tweet deleted before `as_of` counts as deleted. Rows
stamped at or after `as_of` change nothing, so the training-set builder calls these same functions
once per daily snapshot to join features to historical impressions without leaking the future.
Inputs without event times (`realgraph`, the SimClusters and TwHIN tables, the candidate pairs) are
snapshots: the caller passes the ones that belong to `as_of`.

Every function ends with `registered(df, asset)`: exactly the registry's columns for its table, in
declaration order, cast to the declared types, nulls replaced by the declared defaults.
Engagements are aggregated once per table with conditional sums, not one join per feature.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from core.sources import CANDIDATE_SOURCES
from features.realgraph import POSITIVE_ACTIONS, RealGraphConfig, user_author_interactions
from features.registry import features_of_asset, keys_of_asset
from features.tokens import TWEET_TOKENS, one_row_per_token, tweet_token_lists
from features.topics import DEFAULT_TOPIC_CONFIG, TOPIC_FEATURE_NAMES, TopicConfig, topic_sides

NEGATIVE_ACTIONS = ("not_interested", "report")
# The tweet engagement counts: feature -> (actions counted, window in hours back from as_of). The
# batch table counts them as of its build time; the training set counts them as of each impression
# (features/realtime.py), so both read this one declaration.
TWEET_ENGAGEMENT_COUNTS: dict[str, tuple[tuple[str, ...], int]] = {
    "impressions_1h": (("impression",), 1),
    "impressions_6h": (("impression",), 6),
    "impressions_24h": (("impression",), 24),
    "likes_1h": (("like",), 1),
    "likes_6h": (("like",), 6),
    "likes_24h": (("like",), 24),
    "retweets_24h": (("retweet",), 24),
    "replies_24h": (("reply",), 24),
    "clicks_24h": (("click",), 24),
    "negative_24h": (NEGATIVE_ACTIONS, 24),
}
# The candidate columns user_tweet_features reads, with their types; an absent one is all nulls. The
# source flags (`from_<source>`) and score columns follow `core.sources.CANDIDATE_SOURCES`.
CANDIDATE_COLUMNS: dict[str, str] = {
    "sources": "array<string>",
    **{f"{source}_score": "double" for source in CANDIDATE_SOURCES},
    "social_proof_count": "int",
    "is_in_network": "boolean",
    "pool_rank": "int",
}


@dataclass(frozen=True)
class FeatureConfig:
    # tweet_features covers tweets created this long before as_of (and not deleted by then).
    tweet_lookback_days: float = 7.0
    # Decayed counts: each event weighs 0.5 ** (age / half-life), as in RealGraph.
    half_life_days: float = RealGraphConfig.half_life_days
    # Author reputation: a smoothed rate over this window, with this many prior impressions at the
    # global rates, minus the smoothed negative rate times this weight.
    reputation_window_days: float = 28.0
    reputation_prior_impressions: float = 100.0
    reputation_negative_weight: float = 5.0
    # content_affinity reads the user's positive engagements of this many days before as_of.
    content_profile_days: float = 28.0
    # user_tweet_features broadcasts the per-user rows (SimClusters map, TwHIN embedding, content
    # profile, topic values: about 3 KB a user at 100K users, ~35 profile tokens and ~33 topics
    # each) when there are at most this many TwHIN users; None: as many as fit, at
    # `broadcast_bytes_per_user`, in `broadcast_driver_memory_share` of the driver's memory (the
    # driver builds the broadcast's hash map, which doubles as it grows: at 100K users a 4 GB
    # driver failed to grow it from 256 to 512 MB). Else the candidate rows are shuffled by user too.
    broadcast_user_vectors_max: int | None = None
    broadcast_bytes_per_user: int = 4096
    broadcast_driver_memory_share: float = 1 / 16
    # The topic-interest features (features/topics.py).
    topics: TopicConfig = DEFAULT_TOPIC_CONFIG


DEFAULT_CONFIG = FeatureConfig()


# --- shared pieces ---------------------------------------------------------------------------

def registered(df: DataFrame, asset: str) -> DataFrame:
    """The output contract of a feature table: keys, then every feature of `asset` in declaration
    order, cast to its dtype, nulls (and absent inputs) replaced by its default."""
    keys = [F.col(key).cast("bigint").alias(key) for key in keys_of_asset(asset)]
    values = [
        F.coalesce(F.col(f.name).cast(f.dtype), F.lit(f.default).cast(f.dtype)).alias(f.name)
        for f in features_of_asset(asset)
    ]
    return df.select(*keys, *values)


def _check_as_of(as_of: datetime) -> None:
    if as_of.tzinfo is None:
        raise ValueError(f"as_of must be timezone-aware (got {as_of!r})")


def _before(df: DataFrame, as_of: datetime, column: str = "created_at") -> DataFrame:
    return df.where(F.col(column) < F.lit(as_of))


def _in_last(as_of: datetime, hours: float, column: str = "created_at") -> Column:
    """The event lies in [as_of - hours, as_of) (given it is before as_of)."""
    return F.col(column) >= F.lit(as_of - timedelta(hours=hours))


def _age_hours(as_of: datetime, column: str = "created_at") -> Column:
    return (F.lit(as_of).cast("double") - F.col(column).cast("double")) / 3600.0


def _count(condition: Column, name: str) -> Column:
    return F.sum(F.when(condition, 1.0).otherwise(0.0)).alias(name)


def _is(*actions: str) -> Column:
    return F.col("action").isin(*actions)


def _follow_counts(follows: DataFrame, *, as_of: datetime, key: str) -> DataFrame:
    """(key, followee_count, follower_count) over follows made before as_of; one shuffle."""
    edges = _before(follows, as_of)
    ends = edges.select(F.col("follower_id").alias(key), F.lit(1.0).alias("_out"), F.lit(0.0).alias("_in")).unionByName(
        edges.select(F.col("followee_id").alias(key), F.lit(0.0).alias("_out"), F.lit(1.0).alias("_in"))
    )
    return ends.groupBy(key).agg(F.sum("_out").alias("followee_count"), F.sum("_in").alias("follower_count"))


def _decay(as_of: datetime, half_life_days: float) -> Column:
    return F.pow(F.lit(0.5), _age_hours(as_of) / F.lit(half_life_days * 24.0))


# --- user ------------------------------------------------------------------------------------

def user_features(
    users: DataFrame,
    follows: DataFrame,
    mutual_follows: DataFrame,
    tweets: DataFrame,
    engagements: DataFrame,
    social_actions: DataFrame,
    *,
    as_of: datetime,
) -> DataFrame:
    """One row per account created before as_of: the `user_features` table.

    `mutual_follows` is the graph table (user_id, mutual_id, since); a mutual pair counts once
    both follows exist, i.e. when `since` < as_of.
    """
    _check_as_of(as_of)
    accounts = _before(users, as_of).select(
        "user_id", (_age_hours(as_of) / 24.0).alias("account_age_days"), "is_verified", "allow_nsfw"
    )
    mutuals = (
        _before(mutual_follows, as_of, "since").groupBy("user_id").agg(F.count(F.lit(1)).cast("double").alias("mutual_count"))
    )
    posted = (
        _before(tweets, as_of).where(_in_last(as_of, 7 * 24))
        .groupBy(F.col("author_id").alias("user_id"))
        .agg(_count(_in_last(as_of, 24), "tweets_1d"), F.count(F.lit(1)).alias("tweets_7d"))
    )
    age = _age_hours(as_of)
    last_7d = _in_last(as_of, 7 * 24)
    positive = _is(*POSITIVE_ACTIONS)
    # One bit per 24-hour bucket back from as_of (0 = the last day); days_active counts the bits set.
    day_bit = F.pow(F.lit(2.0), F.least(F.floor(age / 24.0), F.lit(6))).cast("long")
    dwell = last_7d & _is("impression", "click") & F.col("dwell_ms").isNotNull()
    acted = (
        _before(engagements, as_of)
        .groupBy("user_id")
        .agg(
            _count(_is("impression") & _in_last(as_of, 24), "impressions_1d"),
            _count(_is("impression") & last_7d, "impressions_7d"),
            _count(_is("like") & last_7d, "likes_given_7d"),
            _count(_is("retweet") & last_7d, "retweets_given_7d"),
            _count(_is("reply") & last_7d, "replies_given_7d"),
            _count(_is("quote") & last_7d, "quotes_given_7d"),
            _count(_is("click") & last_7d, "clicks_7d"),
            _count(_is("profile_click") & last_7d, "profile_clicks_7d"),
            _count(_is("not_interested") & last_7d, "not_interested_7d"),
            _count(_is("report") & last_7d, "reports_7d"),
            _count(positive & last_7d, "_engagements_7d"),
            F.sum(F.when(dwell, F.col("dwell_ms").cast("double"))).alias("_dwell_ms_7d"),
            _count(dwell, "_dwells_7d"),
            F.bit_count(F.bit_or(F.when(positive & last_7d, day_bit))).alias("days_active_7d"),
            F.min(F.when(positive, age)).alias("hours_since_last_engagement"),
        )
    )
    blocked = (
        _before(social_actions, as_of).groupBy("user_id")
        .agg(F.count(F.lit(1)).cast("double").alias("blocks_mutes_given"))
    )
    joined = (
        accounts.join(_follow_counts(follows, as_of=as_of, key="user_id"), on="user_id", how="left")
        .join(mutuals, on="user_id", how="left")
        .join(posted, on="user_id", how="left")
        .join(acted, on="user_id", how="left")
        .join(blocked, on="user_id", how="left")
    )
    return registered(
        joined.select(
            "*",
            F.try_divide("likes_given_7d", "impressions_7d").alias("like_rate_7d"),
            F.try_divide("_engagements_7d", "impressions_7d").alias("engagement_rate_7d"),
            (F.try_divide("_dwell_ms_7d", "_dwells_7d") / 1000.0).alias("avg_dwell_seconds_7d"),
        ),
        "user_features",
    )


# --- author ----------------------------------------------------------------------------------

def author_features(
    users: DataFrame,
    follows: DataFrame,
    tweets: DataFrame,
    engagements: DataFrame,
    social_actions: DataFrame,
    *,
    as_of: datetime,
    config: FeatureConfig = DEFAULT_CONFIG,
) -> DataFrame:
    """One row per account created before as_of, as the author of tweets: the `author_features`
    table. "Received" counts engagements by others (not the author) with any of the author's tweets.

    reputation = (E + m·ē) / (I + m) − w · (N + m·n̄) / (I + m) over the last
    `reputation_window_days`: E engagements, N negatives, I impressions received; ē and n̄ the
    rates over all authors; m = `reputation_prior_impressions`, w = `reputation_negative_weight`.
    An author with little exposure sits near the global rates; one with much, at its own.
    """
    _check_as_of(as_of)
    authors = _before(users, as_of).select(
        F.col("user_id").alias("author_id"),
        (_age_hours(as_of) / 24.0).alias("account_age_days"),
        "is_verified",
    )
    past_tweets = _before(tweets, as_of)
    own = past_tweets.groupBy("author_id").agg(
        _count(_in_last(as_of, 24), "tweets_1d"),
        _count(_in_last(as_of, 7 * 24), "tweets_7d"),
        F.avg(F.col("in_reply_to_tweet_id").isNotNull().cast("double")).alias("reply_share"),
        F.avg(F.col("retweet_of_tweet_id").isNotNull().cast("double")).alias("retweet_share"),
        F.avg(F.col("has_media").cast("double")).alias("media_share"),
    )
    last_7d = _in_last(as_of, 7 * 24)
    received = (
        _before(engagements, as_of)
        .where(_in_last(as_of, config.reputation_window_days * 24))
        .select("user_id", "tweet_id", "action", "created_at")
        .join(past_tweets.select("tweet_id", "author_id"), on="tweet_id", how="inner")
        .where(F.col("user_id") != F.col("author_id"))
        .groupBy("author_id")
        .agg(
            _count(_is("impression") & last_7d, "impressions_received_7d"),
            _count(_is("like") & last_7d, "likes_received_7d"),
            _count(_is("retweet") & last_7d, "retweets_received_7d"),
            _count(_is("reply") & last_7d, "replies_received_7d"),
            _count(_is("click") & last_7d, "clicks_received_7d"),
            _count(_is(*NEGATIVE_ACTIONS) & last_7d, "_negatives_7d"),
            _count(_is("impression"), "_impressions_w"),
            _count(_is(*POSITIVE_ACTIONS), "_engagements_w"),
            _count(_is(*NEGATIVE_ACTIONS), "_negatives_w"),
        )
    )
    overall = received.agg(
        F.coalesce(F.try_divide(F.sum("_engagements_w"), F.sum("_impressions_w")), F.lit(0.0)).alias("_engagement_prior"),
        F.coalesce(F.try_divide(F.sum("_negatives_w"), F.sum("_impressions_w")), F.lit(0.0)).alias("_negative_prior"),
    )
    social = (
        _before(social_actions, as_of)
        .groupBy(F.col("target_user_id").alias("author_id"))
        .agg(_count(_is("block"), "blocked_by_count"), _count(_is("mute"), "muted_by_count"))
    )
    joined = (
        authors.join(_follow_counts(follows, as_of=as_of, key="author_id"), on="author_id", how="left")
        .join(own, on="author_id", how="left")
        .join(received, on="author_id", how="left")
        .join(social, on="author_id", how="left")
        .crossJoin(F.broadcast(overall))
    )
    m = F.lit(config.reputation_prior_impressions)
    impressions = F.coalesce(F.col("_impressions_w"), F.lit(0.0)) + m
    smoothed_engagement = (F.coalesce(F.col("_engagements_w"), F.lit(0.0)) + m * F.col("_engagement_prior")) / impressions
    smoothed_negative = (F.coalesce(F.col("_negatives_w"), F.lit(0.0)) + m * F.col("_negative_prior")) / impressions
    impressions_7d = F.col("impressions_received_7d")
    return registered(
        joined.select(
            "*",
            F.try_divide("likes_received_7d", impressions_7d).alias("like_rate_7d"),
            F.try_divide("retweets_received_7d", impressions_7d).alias("retweet_rate_7d"),
            F.try_divide("replies_received_7d", impressions_7d).alias("reply_rate_7d"),
            F.try_divide("_negatives_7d", impressions_7d).alias("negative_rate_7d"),
            (smoothed_engagement - F.lit(config.reputation_negative_weight) * smoothed_negative).alias("reputation"),
        ),
        "author_features",
    )


# --- tweet -----------------------------------------------------------------------------------

def tweet_features(
    users: DataFrame,
    follows: DataFrame,
    tweets: DataFrame,
    engagements: DataFrame,
    *,
    as_of: datetime,
    config: FeatureConfig = DEFAULT_CONFIG,
) -> DataFrame:
    """One row per tweet created in the last `tweet_lookback_days` before as_of and not deleted
    before as_of: the `tweet_features` table. Engagement counts include every engager."""
    _check_as_of(as_of)
    live = (
        _before(tweets, as_of)
        .where(_in_last(as_of, config.tweet_lookback_days * 24))
        .where(F.col("deleted_at").isNull() | (F.col("deleted_at") >= F.lit(as_of)))
        .select(
            "tweet_id",
            "author_id",
            _age_hours(as_of).alias("age_hours"),
            *tweet_content_columns(),
        )
    )
    recent = (
        _before(engagements, as_of)
        .where(_in_last(as_of, 24))
        .groupBy("tweet_id")
        .agg(*[_count(_is(*actions) & _in_last(as_of, hours), name)
               for name, (actions, hours) in TWEET_ENGAGEMENT_COUNTS.items()])
    )
    followers = (
        _before(follows, as_of)
        .groupBy(F.col("followee_id").alias("author_id"))
        .agg(F.count(F.lit(1)).cast("double").alias("author_follower_count"))
    )
    verified = _before(users, as_of).select(F.col("user_id").alias("author_id"), F.col("is_verified").alias("author_is_verified"))
    joined = (
        live.join(recent, on="tweet_id", how="left")
        .join(followers, on="author_id", how="left")
        .join(verified, on="author_id", how="left")
    )
    return registered(
        joined.select("*", like_rate_24h()),
        "tweet_features",
    )


def tweet_content_columns() -> list[Column]:
    """The tweet features fixed at creation, from a `tweets` row."""
    return [
        F.col("has_media"),
        F.col("has_video"),
        F.col("in_reply_to_tweet_id").isNotNull().alias("is_reply"),
        F.col("quoted_tweet_id").isNotNull().alias("is_quote"),
        F.col("retweet_of_tweet_id").isNotNull().alias("is_retweet"),
        F.col("is_nsfw"),
        F.length("text").alias("text_length"),
    ]


def like_rate_24h() -> Column:
    return F.try_divide("likes_24h", "impressions_24h").alias("like_rate_24h")


# --- user x author ---------------------------------------------------------------------------

_PAIR_ACTIONS = {  # feature stem -> contract action
    "likes": "like", "retweets": "retweet", "replies": "reply", "clicks": "click",
    "profile_clicks": "profile_click", "not_interested": "not_interested", "impressions": "impression",
}
_FOLLOWS, _FOLLOWED_BY, _REALGRAPH = "_follows", "_followed_by", "_realgraph"


def user_author_features(
    follows: DataFrame,
    tweets: DataFrame,
    engagements: DataFrame,
    realgraph: DataFrame,
    *,
    as_of: datetime,
    config: FeatureConfig = DEFAULT_CONFIG,
) -> DataFrame:
    """One row per (user, author) pair related before as_of, the `user_author_features` table: the
    user follows the author or the author the user, the user engaged with or was shown the
    author's tweets, or the pair is in `realgraph` (user_id, author_id, score). So for a pair not
    in the table every feature is rightly its default.

    Follows, interactions and scores are unioned into one event list and aggregated once.
    """
    _check_as_of(as_of)
    interactions = user_author_interactions(
        _before(engagements, as_of),
        _before(tweets, as_of),
        actions=tuple(sorted(set(POSITIVE_ACTIONS) | set(_PAIR_ACTIONS.values()))),
    )
    columns = ["user_id", "author_id", "action", "created_at", "score"]
    no_score = F.lit(None).cast("double").alias("score")
    edges = _before(follows, as_of)
    events = (
        interactions.select("user_id", "author_id", "action", "created_at", no_score)
        .unionByName(edges.select(F.col("follower_id").alias("user_id"), F.col("followee_id").alias("author_id"),
                                  F.lit(_FOLLOWS).alias("action"), "created_at", no_score))
        .unionByName(edges.select(F.col("followee_id").alias("user_id"), F.col("follower_id").alias("author_id"),
                                  F.lit(_FOLLOWED_BY).alias("action"), "created_at", no_score))
        .unionByName(realgraph.select("user_id", "author_id", F.lit(_REALGRAPH).alias("action"),
                                      F.lit(None).cast("timestamp").alias("created_at"),
                                      F.col("score").cast("double").alias("score")))
        .select(*columns)
    )
    age = _age_hours(as_of)
    decay = _decay(as_of, config.half_life_days)
    last_7d = _in_last(as_of, 7 * 24)
    positive = _is(*POSITIVE_ACTIONS)
    counts = []
    for stem, action in _PAIR_ACTIONS.items():
        counts.append(_count(_is(action) & last_7d, f"{stem}_7d"))
        counts.append(F.sum(F.when(_is(action), decay).otherwise(0.0)).alias(f"{stem}_decayed"))
    pairs = events.groupBy("user_id", "author_id").agg(
        F.max("score").alias("realgraph_score"),
        F.bool_or(_is(_FOLLOWS)).alias("follows_author"),
        F.bool_or(_is(_FOLLOWED_BY)).alias("author_follows_user"),
        F.max(F.when(_is(_FOLLOWS), age / 24.0)).alias("follow_age_days"),
        *counts,
        F.sum(F.when(positive, decay).otherwise(0.0)).alias("engagements_decayed"),
        F.min(F.when(positive, age)).alias("hours_since_last_engagement"),
        F.bool_or(_is("reply")).alias("ever_replied"),
        F.bool_or(_is("quote")).alias("ever_quoted"),
        F.bool_or(_is("retweet")).alias("ever_retweeted"),
    )
    return registered(
        pairs.select("*", (F.col("follows_author") & F.col("author_follows_user")).alias("is_mutual")),
        "user_author_features",
    )


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
    return _balanced_sum([F.coalesce(value if weight is None else value * weight, F.lit(0.0))
                          for value, (_, weight) in zip(looked_up, terms)])


def _sparse_dot(user_map: str, tweet_entries: str, length: int) -> Column:
    """Σ user_map[c] · score over the (cluster_id, score) entries of `tweet_entries` (at most
    `length`), looking each cluster up in the user's map; 0 when either side is missing."""
    entries = [F.get(F.col(tweet_entries), i) for i in range(length)]
    return _sum_of_lookups(user_map, [(entry["cluster_id"], entry["score"]) for entry in entries])


CONTENT_PROFILE, CONTENT_NORM = "_content_profile", "_content_norm"


def user_content_profiles(token_lists: DataFrame, engagements: DataFrame, *, as_of: datetime,
                          config: FeatureConfig = DEFAULT_CONFIG) -> DataFrame:
    """(user_id, _content_profile, _content_norm) from `tweet_token_lists`: per user who engaged positively in the
    `content_profile_days` before as_of, how many of those tweets carry each token (a map token ->
    count; a tweet counts once, however many actions) and the map's Euclidean norm."""
    _check_as_of(as_of)
    engaged = (_before(engagements, as_of).where(_is(*POSITIVE_ACTIONS) & _in_last(as_of, config.content_profile_days * 24))
               .select("user_id", "tweet_id").distinct())
    counts = (engaged.join(one_row_per_token(token_lists), on="tweet_id", how="inner").groupBy("user_id", "token")
              .agg(F.count(F.lit(1)).cast("double").alias("_w")))
    return counts.groupBy("user_id").agg(
        F.map_from_entries(F.collect_list(F.struct("token", "_w"))).alias(CONTENT_PROFILE),
        F.sqrt(F.sum(F.col("_w") * F.col("_w"))).alias(CONTENT_NORM))


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


def content_affinity(pairs: DataFrame, tweets: DataFrame, engagements: DataFrame, *, as_of: datetime,
                     config: FeatureConfig = DEFAULT_CONFIG) -> DataFrame:
    """(user_id, tweet_id, content_affinity) for the distinct (user_id, tweet_id) of `pairs`
    (`content_affinity_column`). Pairs whose tweet has no text, whose user has no profile or that
    share no token with it are left out (the feature's default, 0)."""
    token_lists = tweet_token_lists(tweets)
    scored = (pairs.select("user_id", "tweet_id").distinct()
              .join(token_lists, on="tweet_id", how="inner")
              .join(user_content_profiles(token_lists, engagements, as_of=as_of, config=config), on="user_id", how="inner")
              .select("user_id", "tweet_id", content_affinity_column(longest_token_list(token_lists)).alias("content_affinity")))
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


def pair_sides(tweets: DataFrame | None, engagements: DataFrame | None, follows: DataFrame | None, *,
               as_of: datetime, config: FeatureConfig) -> PairSides:
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
    return PairSides(tweet_side.join(topics.tweets, on="tweet_id", how="full"),
                     user_side.join(topics.users, on="user_id", how="full"),
                     {**values, **topics.values})


def driver_memory_bytes(spark: SparkSession) -> int:
    """`spark.driver.memory` of the session (Spark's default, 1g, when unset), in bytes."""
    setting = spark.sparkContext.getConf().get("spark.driver.memory", "1g")
    return int(spark.sparkContext._jvm.org.apache.spark.network.util.JavaUtils.byteStringAsBytes(setting))


def broadcast_users_max(config: FeatureConfig, driver_memory: int) -> int:
    """The most users whose per-user rows user_tweet_features broadcasts (FeatureConfig)."""
    if config.broadcast_user_vectors_max is not None:
        return config.broadcast_user_vectors_max
    return int(driver_memory * config.broadcast_driver_memory_share) // config.broadcast_bytes_per_user


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
    _check_as_of(as_of)
    entries = F.struct(F.col("cluster_id").cast("int").alias("cluster_id"), F.col("score").cast("double").alias("score"))
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
    if twhin_user_embeddings.count() <= broadcast_users_max(config, driver_memory_bytes(pairs.sparkSession)):
        user_vectors = F.broadcast(user_vectors)  # then the pairs are shuffled once, slim, by tweet_id
    candidate_rows = _with_candidate_columns(pairs).select("user_id", "tweet_id", *CANDIDATE_COLUMNS)
    joined = (
        candidate_rows
        .join(tweet_vectors, on="tweet_id", how="left")
        .join(user_vectors, on="user_id", how="left")
    )
    # ",innetwork,uteg," : one normalised string per row, then a substring test per source.
    names = F.concat(F.lit(","), F.lower(F.regexp_replace(F.array_join(F.col("sources"), ","), "[_\\- ]", "")), F.lit(","))
    flags = {
        source: F.coalesce(names.contains("," + source.replace("_", "") + ","), F.lit(False))
        | F.col(f"{source}_score").isNotNull()
        for source in CANDIDATE_SOURCES
    }
    scored = joined.select(
        *keys_of_asset("user_tweet_features"),
        _sparse_dot("_user_sc", "_tweet_sc", tweet_length).alias("simclusters_dot"),
        *[flag.alias(f"from_{source}") for source, flag in flags.items()],
        sum((flag.cast("int") for flag in flags.values()), F.lit(0)).alias("source_count"),
        *[F.col(f"{source}_score") for source in CANDIDATE_SOURCES],
        "social_proof_count", "pool_rank", "is_in_network",
        *[sides.values[name].alias(name) for name in PAIR_VALUE_NAMES],
        *TWHIN_VECTORS,
    )
    with_cosine = T.StructType(
        [T.StructField(f.name, f.dataType, True) for f in scored.schema.fields if f.name not in TWHIN_VECTORS]
        + [T.StructField("twhin_cosine", T.DoubleType(), True), T.StructField("has_twhin_embedding", T.BooleanType(), True)]
    )
    with_cosine_rows = scored.mapInArrow(_twhin_cosine_batches, with_cosine)
    return registered(with_cosine_rows, "user_tweet_features")
