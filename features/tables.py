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

from dataclasses import dataclass
from datetime import datetime, timedelta

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from features.realgraph import POSITIVE_ACTIONS, RealGraphConfig, user_author_interactions
from features.registry import features_of_asset, keys_of_asset
from features.topics import DEFAULT_TOPIC_CONFIG, TopicConfig

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


def check_as_of(as_of: datetime) -> None:
    if as_of.tzinfo is None:
        raise ValueError(f"as_of must be timezone-aware (got {as_of!r})")


def before(df: DataFrame, as_of: datetime, column: str = "created_at") -> DataFrame:
    return df.where(F.col(column) < F.lit(as_of))


def in_last(as_of: datetime, hours: float, column: str = "created_at") -> Column:
    """The event lies in [as_of - hours, as_of) (given it is before as_of)."""
    return F.col(column) >= F.lit(as_of - timedelta(hours=hours))


def _age_hours(as_of: datetime, column: str = "created_at") -> Column:
    return (F.lit(as_of).cast("double") - F.col(column).cast("double")) / 3600.0


def _count(condition: Column, name: str) -> Column:
    return F.sum(F.when(condition, 1.0).otherwise(0.0)).alias(name)


def is_action(*actions: str) -> Column:
    return F.col("action").isin(*actions)


def _follow_counts(follows: DataFrame, *, as_of: datetime, key: str) -> DataFrame:
    """(key, followee_count, follower_count) over follows made before as_of; one shuffle."""
    edges = before(follows, as_of)
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
    check_as_of(as_of)
    accounts = before(users, as_of).select(
        "user_id", (_age_hours(as_of) / 24.0).alias("account_age_days"), "is_verified", "allow_nsfw"
    )
    mutuals = (
        before(mutual_follows, as_of, "since")
        .groupBy("user_id")
        .agg(F.count(F.lit(1)).cast("double").alias("mutual_count"))
    )
    posted = (
        before(tweets, as_of)
        .where(in_last(as_of, 7 * 24))
        .groupBy(F.col("author_id").alias("user_id"))
        .agg(_count(in_last(as_of, 24), "tweets_1d"), F.count(F.lit(1)).alias("tweets_7d"))
    )
    acted = _engagements_given(engagements, as_of=as_of)
    blocked = (
        before(social_actions, as_of)
        .groupBy("user_id")
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


def _engagements_given(engagements: DataFrame, *, as_of: datetime) -> DataFrame:
    """Per user, what they did before as_of: impressions and engagements given by action over the
    last day and week, dwell, active days of the last week and the hours since their last
    engagement (the `_`-prefixed columns are the parts of rates computed by the caller)."""
    age = _age_hours(as_of)
    last_7d = in_last(as_of, 7 * 24)
    positive = is_action(*POSITIVE_ACTIONS)
    # One bit per 24-hour bucket back from as_of (0 = the last day); days_active counts the bits set.
    day_bit = F.pow(F.lit(2.0), F.least(F.floor(age / 24.0), F.lit(6))).cast("long")
    dwell = last_7d & is_action("impression", "click") & F.col("dwell_ms").isNotNull()
    return (
        before(engagements, as_of)
        .groupBy("user_id")
        .agg(
            _count(is_action("impression") & in_last(as_of, 24), "impressions_1d"),
            _count(is_action("impression") & last_7d, "impressions_7d"),
            _count(is_action("like") & last_7d, "likes_given_7d"),
            _count(is_action("retweet") & last_7d, "retweets_given_7d"),
            _count(is_action("reply") & last_7d, "replies_given_7d"),
            _count(is_action("quote") & last_7d, "quotes_given_7d"),
            _count(is_action("click") & last_7d, "clicks_7d"),
            _count(is_action("profile_click") & last_7d, "profile_clicks_7d"),
            _count(is_action("not_interested") & last_7d, "not_interested_7d"),
            _count(is_action("report") & last_7d, "reports_7d"),
            _count(positive & last_7d, "_engagements_7d"),
            F.sum(F.when(dwell, F.col("dwell_ms").cast("double"))).alias("_dwell_ms_7d"),
            _count(dwell, "_dwells_7d"),
            F.bit_count(F.bit_or(F.when(positive & last_7d, day_bit))).alias("days_active_7d"),
            F.min(F.when(positive, age)).alias("hours_since_last_engagement"),
        )
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
    check_as_of(as_of)
    authors = before(users, as_of).select(
        F.col("user_id").alias("author_id"),
        (_age_hours(as_of) / 24.0).alias("account_age_days"),
        "is_verified",
    )
    past_tweets = before(tweets, as_of)
    own = past_tweets.groupBy("author_id").agg(
        _count(in_last(as_of, 24), "tweets_1d"),
        _count(in_last(as_of, 7 * 24), "tweets_7d"),
        F.avg(F.col("in_reply_to_tweet_id").isNotNull().cast("double")).alias("reply_share"),
        F.avg(F.col("retweet_of_tweet_id").isNotNull().cast("double")).alias("retweet_share"),
        F.avg(F.col("has_media").cast("double")).alias("media_share"),
    )
    received = _engagements_received(engagements, past_tweets, as_of=as_of, config=config)
    overall = received.agg(
        F.coalesce(F.try_divide(F.sum("_engagements_w"), F.sum("_impressions_w")), F.lit(0.0)).alias(
            "_engagement_prior"
        ),
        F.coalesce(F.try_divide(F.sum("_negatives_w"), F.sum("_impressions_w")), F.lit(0.0)).alias("_negative_prior"),
    )
    social = (
        before(social_actions, as_of)
        .groupBy(F.col("target_user_id").alias("author_id"))
        .agg(_count(is_action("block"), "blocked_by_count"), _count(is_action("mute"), "muted_by_count"))
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
    smoothed_engagement = (
        F.coalesce(F.col("_engagements_w"), F.lit(0.0)) + m * F.col("_engagement_prior")
    ) / impressions
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


def _engagements_received(
    engagements: DataFrame, past_tweets: DataFrame, *, as_of: datetime, config: FeatureConfig
) -> DataFrame:
    """Per author, the engagements by others with its tweets: the last 7 days' counts per action and
    the reputation window's impressions, engagements and negatives (`_..._w`)."""
    last_7d = in_last(as_of, 7 * 24)
    return (
        before(engagements, as_of)
        .where(in_last(as_of, config.reputation_window_days * 24))
        .select("user_id", "tweet_id", "action", "created_at")
        .join(past_tweets.select("tweet_id", "author_id"), on="tweet_id", how="inner")
        .where(F.col("user_id") != F.col("author_id"))
        .groupBy("author_id")
        .agg(
            _count(is_action("impression") & last_7d, "impressions_received_7d"),
            _count(is_action("like") & last_7d, "likes_received_7d"),
            _count(is_action("retweet") & last_7d, "retweets_received_7d"),
            _count(is_action("reply") & last_7d, "replies_received_7d"),
            _count(is_action("click") & last_7d, "clicks_received_7d"),
            _count(is_action(*NEGATIVE_ACTIONS) & last_7d, "_negatives_7d"),
            _count(is_action("impression"), "_impressions_w"),
            _count(is_action(*POSITIVE_ACTIONS), "_engagements_w"),
            _count(is_action(*NEGATIVE_ACTIONS), "_negatives_w"),
        )
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
    check_as_of(as_of)
    live = (
        before(tweets, as_of)
        .where(in_last(as_of, config.tweet_lookback_days * 24))
        .where(F.col("deleted_at").isNull() | (F.col("deleted_at") >= F.lit(as_of)))
        .select(
            "tweet_id",
            "author_id",
            _age_hours(as_of).alias("age_hours"),
            *tweet_content_columns(),
        )
    )
    recent = (
        before(engagements, as_of)
        .where(in_last(as_of, 24))
        .groupBy("tweet_id")
        .agg(
            *[
                _count(is_action(*actions) & in_last(as_of, hours), name)
                for name, (actions, hours) in TWEET_ENGAGEMENT_COUNTS.items()
            ]
        )
    )
    followers = (
        before(follows, as_of)
        .groupBy(F.col("followee_id").alias("author_id"))
        .agg(F.count(F.lit(1)).cast("double").alias("author_follower_count"))
    )
    verified = before(users, as_of).select(
        F.col("user_id").alias("author_id"), F.col("is_verified").alias("author_is_verified")
    )
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
    "likes": "like",
    "retweets": "retweet",
    "replies": "reply",
    "clicks": "click",
    "profile_clicks": "profile_click",
    "not_interested": "not_interested",
    "impressions": "impression",
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
    check_as_of(as_of)
    interactions = user_author_interactions(
        before(engagements, as_of),
        before(tweets, as_of),
        actions=tuple(sorted(set(POSITIVE_ACTIONS) | set(_PAIR_ACTIONS.values()))),
    )
    events = _user_author_events(interactions, before(follows, as_of), realgraph)
    age = _age_hours(as_of)
    decay = _decay(as_of, config.half_life_days)
    last_7d = in_last(as_of, 7 * 24)
    positive = is_action(*POSITIVE_ACTIONS)
    counts = []
    for stem, action in _PAIR_ACTIONS.items():
        counts.append(_count(is_action(action) & last_7d, f"{stem}_7d"))
        counts.append(F.sum(F.when(is_action(action), decay).otherwise(0.0)).alias(f"{stem}_decayed"))
    pairs = events.groupBy("user_id", "author_id").agg(
        F.max("score").alias("realgraph_score"),
        F.bool_or(is_action(_FOLLOWS)).alias("follows_author"),
        F.bool_or(is_action(_FOLLOWED_BY)).alias("author_follows_user"),
        F.max(F.when(is_action(_FOLLOWS), age / 24.0)).alias("follow_age_days"),
        *counts,
        F.sum(F.when(positive, decay).otherwise(0.0)).alias("engagements_decayed"),
        F.min(F.when(positive, age)).alias("hours_since_last_engagement"),
        F.bool_or(is_action("reply")).alias("ever_replied"),
        F.bool_or(is_action("quote")).alias("ever_quoted"),
        F.bool_or(is_action("retweet")).alias("ever_retweeted"),
    )
    return registered(
        pairs.select("*", (F.col("follows_author") & F.col("author_follows_user")).alias("is_mutual")),
        "user_author_features",
    )


def _follow_events(follows: DataFrame, *, user: str, author: str, action: str) -> DataFrame:
    """The follow edges as (user_id, author_id, action, created_at, score) events, one direction."""
    return follows.select(
        F.col(user).alias("user_id"),
        F.col(author).alias("author_id"),
        F.lit(action).alias("action"),
        "created_at",
        F.lit(None).cast("double").alias("score"),
    )


def _user_author_events(interactions: DataFrame, follows: DataFrame, realgraph: DataFrame) -> DataFrame:
    """One event list (user_id, author_id, action, created_at, score) of the user's interactions with
    the author, the follows either way (actions _FOLLOWS, _FOLLOWED_BY) and the RealGraph scores
    (action _REALGRAPH, no time)."""
    columns = ["user_id", "author_id", "action", "created_at", "score"]
    no_score = F.lit(None).cast("double").alias("score")
    return (
        interactions.select("user_id", "author_id", "action", "created_at", no_score)
        .unionByName(_follow_events(follows, user="follower_id", author="followee_id", action=_FOLLOWS))
        .unionByName(_follow_events(follows, user="followee_id", author="follower_id", action=_FOLLOWED_BY))
        .unionByName(
            realgraph.select(
                "user_id",
                "author_id",
                F.lit(_REALGRAPH).alias("action"),
                F.lit(None).cast("timestamp").alias("created_at"),
                F.col("score").cast("double").alias("score"),
            )
        )
        .select(*columns)
    )
