"""The feature registry: every feature declared once, as data.

A `Feature` names one column of one feature table (a Delta table and the Dagster asset that writes
it), the entity whose key the table has, its Spark type and the default that stands for "no data".
The Spark writers (`features/tables.py`) end with a select built from these declarations; the
training-set builder and the serving reader import the same tuple, so names, types and defaults
cannot drift between training and serving. `registry_hash` fingerprints the declarations that a
trained model depends on, so a model built against other features can be refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from pyspark.sql import types as T

ENTITY_KEYS: dict[str, tuple[str, ...]] = {
    "user": ("user_id",),
    "author": ("author_id",),
    "tweet": ("tweet_id",),
    "user_author": ("user_id", "author_id"),
    "user_tweet": ("user_id", "tweet_id"),
}
ENTITIES = tuple(ENTITY_KEYS)

# One feature table per entity; the table, its Dagster asset and its DuckDB view share the name.
ASSET_OF_ENTITY: dict[str, str] = {entity: f"{entity}_features" for entity in ENTITIES}
ENTITY_OF_ASSET: dict[str, str] = {asset: entity for entity, asset in ASSET_OF_ENTITY.items()}
ASSETS = tuple(ENTITY_OF_ASSET)

SPARK_TYPES: dict[str, T.DataType] = {
    "double": T.DoubleType(),
    "bigint": T.LongType(),
    "int": T.IntegerType(),
    "boolean": T.BooleanType(),
}
_PYTHON_TYPES = {"double": (float,), "bigint": (int,), "int": (int,), "boolean": (bool,)}


@dataclass(frozen=True)
class Feature:
    """One feature: a column of `asset`, keyed by `ENTITY_KEYS[entity]`; `default` fills the rows
    (and, at training or serving time, the keys) for which there is no data."""

    name: str
    entity: str
    dtype: str
    default: float | int | bool
    description: str
    asset: str

    def __post_init__(self) -> None:
        if self.entity not in ENTITY_KEYS:
            raise ValueError(f"feature {self.name}: unknown entity {self.entity!r} (one of {ENTITIES})")
        if self.dtype not in SPARK_TYPES:
            raise ValueError(f"feature {self.name}: unknown dtype {self.dtype!r} (one of {tuple(SPARK_TYPES)})")
        if ENTITY_OF_ASSET.get(self.asset) != self.entity:
            raise ValueError(f"feature {self.name}: asset {self.asset!r} does not hold entity {self.entity!r}")
        default_ok = isinstance(self.default, _PYTHON_TYPES[self.dtype]) and (
            self.dtype == "boolean" or not isinstance(self.default, bool)
        )
        if not default_ok:
            raise ValueError(f"feature {self.name}: default {self.default!r} is not a {self.dtype}")
        if self.name in ENTITY_KEYS[self.entity]:
            raise ValueError(f"feature {self.name}: a key of {self.entity} cannot be a feature")

    @property
    def qualified_name(self) -> str:
        """`<entity>__<name>`: unique across the registry, the column name where features of
        several entities sit side by side (training sets, a ranker's feature vector)."""
        return f"{self.entity}__{self.name}"

    @property
    def spark_type(self) -> T.DataType:
        return SPARK_TYPES[self.dtype]


def _declare(entity: str, *rows: tuple[str, str, float | int | bool, str]) -> tuple[Feature, ...]:
    return tuple(
        Feature(name, entity, dtype, default, description, ASSET_OF_ENTITY[entity])
        for name, dtype, default, description in rows
    )


# Conventions: counts are doubles (rankers read doubles); windows are measured back from as_of
# over events stamped strictly before it; "engagement" is a positive action of
# features.realgraph.POSITIVE_ACTIONS; "negative" is not_interested or report; a rate is per impression
# and 0.0 without impressions; -1.0 stands for "never" where 0 would mean something.
FEATURES: tuple[Feature, ...] = (
    *_declare(
        "user",
        ("account_age_days", "double", 0.0, "days since the account was created"),
        ("is_verified", "boolean", False, "verified account (current state)"),
        ("allow_nsfw", "boolean", False, "opted in to sensitive media (current state)"),
        ("followee_count", "double", 0.0, "accounts the user follows"),
        ("follower_count", "double", 0.0, "accounts following the user"),
        ("mutual_count", "double", 0.0, "accounts following the user back"),
        ("tweets_1d", "double", 0.0, "tweets posted in the last day (deleted or not)"),
        ("tweets_7d", "double", 0.0, "tweets posted in the last 7 days (deleted or not)"),
        ("impressions_1d", "double", 0.0, "tweets shown to the user in the last day"),
        ("impressions_7d", "double", 0.0, "tweets shown to the user in the last 7 days"),
        ("likes_given_7d", "double", 0.0, "likes given in the last 7 days"),
        ("retweets_given_7d", "double", 0.0, "retweets in the last 7 days"),
        ("replies_given_7d", "double", 0.0, "replies in the last 7 days"),
        ("quotes_given_7d", "double", 0.0, "quotes in the last 7 days"),
        ("clicks_7d", "double", 0.0, "tweet clicks in the last 7 days"),
        ("profile_clicks_7d", "double", 0.0, "profile clicks in the last 7 days"),
        ("not_interested_7d", "double", 0.0, "'not interested' given in the last 7 days"),
        ("reports_7d", "double", 0.0, "reports filed in the last 7 days"),
        ("like_rate_7d", "double", 0.0, "likes_given_7d / impressions_7d"),
        (
            "engagement_rate_7d",
            "double",
            0.0,
            "positive actions in the last 7 days / impressions_7d (each action of an impression counts: may exceed 1)",
        ),
        (
            "avg_dwell_seconds_7d",
            "double",
            0.0,
            "mean dwell of the last 7 days' impressions and clicks that report one",
        ),
        (
            "days_active_7d",
            "double",
            0.0,
            "of the last 7 days (24-hour buckets back from as_of), those with an engagement",
        ),
        ("hours_since_last_engagement", "double", -1.0, "hours from the latest engagement to as_of; -1 if none ever"),
        ("blocks_mutes_given", "double", 0.0, "accounts the user has blocked or muted"),
    ),
    *_declare(
        "author",
        ("follower_count", "double", 0.0, "accounts following the author"),
        ("followee_count", "double", 0.0, "accounts the author follows"),
        ("is_verified", "boolean", False, "verified account (current state)"),
        ("account_age_days", "double", 0.0, "days since the account was created"),
        ("tweets_1d", "double", 0.0, "tweets posted in the last day (deleted or not)"),
        ("tweets_7d", "double", 0.0, "tweets posted in the last 7 days (deleted or not)"),
        ("impressions_received_7d", "double", 0.0, "impressions of the author's tweets by others, last 7 days"),
        ("likes_received_7d", "double", 0.0, "likes of the author's tweets by others, last 7 days"),
        ("retweets_received_7d", "double", 0.0, "retweets of the author's tweets by others, last 7 days"),
        ("replies_received_7d", "double", 0.0, "replies to the author's tweets by others, last 7 days"),
        ("clicks_received_7d", "double", 0.0, "clicks on the author's tweets by others, last 7 days"),
        ("like_rate_7d", "double", 0.0, "likes_received_7d / impressions_received_7d"),
        ("retweet_rate_7d", "double", 0.0, "retweets_received_7d / impressions_received_7d"),
        ("reply_rate_7d", "double", 0.0, "replies_received_7d / impressions_received_7d"),
        ("negative_rate_7d", "double", 0.0, "(not_interested + report) received in 7 days / impressions_received_7d"),
        (
            "reputation",
            "double",
            0.0,
            "engagements received per impression over 28 days, smoothed toward the global rate "
            "(+100 prior impressions), minus 5x the smoothed negative rate",
        ),
        ("reply_share", "double", 0.0, "share of the author's tweets that are replies"),
        ("retweet_share", "double", 0.0, "share of the author's tweets that are retweets"),
        ("media_share", "double", 0.0, "share of the author's tweets with media"),
        ("blocked_by_count", "double", 0.0, "accounts that block the author"),
        ("muted_by_count", "double", 0.0, "accounts that mute the author"),
    ),
    *_declare(
        "tweet",
        ("age_hours", "double", 0.0, "hours from the tweet's creation to as_of"),
        ("has_media", "boolean", False, "has an image or video"),
        ("has_video", "boolean", False, "has a video"),
        ("is_reply", "boolean", False, "replies to another tweet"),
        ("is_quote", "boolean", False, "quotes another tweet"),
        ("is_retweet", "boolean", False, "a retweet"),
        ("is_nsfw", "boolean", False, "sensitive media"),
        ("text_length", "int", 0, "characters of text (0 without text)"),
        ("impressions_1h", "double", 0.0, "impressions in the last hour"),
        ("impressions_6h", "double", 0.0, "impressions in the last 6 hours"),
        ("impressions_24h", "double", 0.0, "impressions in the last 24 hours"),
        ("likes_1h", "double", 0.0, "likes in the last hour"),
        ("likes_6h", "double", 0.0, "likes in the last 6 hours"),
        ("likes_24h", "double", 0.0, "likes in the last 24 hours"),
        ("retweets_24h", "double", 0.0, "retweets in the last 24 hours"),
        ("replies_24h", "double", 0.0, "replies in the last 24 hours"),
        ("clicks_24h", "double", 0.0, "clicks in the last 24 hours"),
        ("like_rate_24h", "double", 0.0, "likes_24h / impressions_24h"),
        ("negative_24h", "double", 0.0, "not_interested and reports in the last 24 hours"),
        ("author_follower_count", "double", 0.0, "followers of the author"),
        ("author_is_verified", "boolean", False, "the author is verified (current state)"),
    ),
    *_declare(
        "user_author",
        ("realgraph_score", "double", 0.0, "RealGraph score of the pair (the realgraph table given)"),
        ("follows_author", "boolean", False, "the user follows the author"),
        ("author_follows_user", "boolean", False, "the author follows the user"),
        ("is_mutual", "boolean", False, "both follow each other"),
        ("follow_age_days", "double", -1.0, "days since the user followed the author; -1 if not following"),
        ("likes_7d", "double", 0.0, "likes of the author's tweets by the user, last 7 days"),
        ("retweets_7d", "double", 0.0, "retweets of the author's tweets by the user, last 7 days"),
        ("replies_7d", "double", 0.0, "replies to the author's tweets by the user, last 7 days"),
        ("clicks_7d", "double", 0.0, "clicks on the author's tweets by the user, last 7 days"),
        ("profile_clicks_7d", "double", 0.0, "profile clicks from the author's tweets by the user, last 7 days"),
        ("not_interested_7d", "double", 0.0, "'not interested' on the author's tweets by the user, last 7 days"),
        ("impressions_7d", "double", 0.0, "the author's tweets shown to the user, last 7 days"),
        ("likes_decayed", "double", 0.0, "likes, each weighing 0.5 ** (age / 7 days)"),
        ("retweets_decayed", "double", 0.0, "retweets, decayed"),
        ("replies_decayed", "double", 0.0, "replies, decayed"),
        ("clicks_decayed", "double", 0.0, "clicks, decayed"),
        ("profile_clicks_decayed", "double", 0.0, "profile clicks, decayed"),
        ("not_interested_decayed", "double", 0.0, "'not interested', decayed"),
        ("impressions_decayed", "double", 0.0, "impressions, decayed"),
        ("engagements_decayed", "double", 0.0, "all engagements (positive actions), decayed"),
        (
            "hours_since_last_engagement",
            "double",
            -1.0,
            "hours since the user last engaged with the author; -1 if never",
        ),
        ("ever_replied", "boolean", False, "the user has ever replied to one of the author's tweets"),
        ("ever_quoted", "boolean", False, "the user has ever quoted one of the author's tweets"),
        ("ever_retweeted", "boolean", False, "the user has ever retweeted one of the author's tweets"),
    ),
    *_declare(
        "user_tweet",
        ("simclusters_dot", "double", 0.0, "user InterestedIn . tweet SimClusters embedding"),
        ("twhin_cosine", "double", 0.0, "cosine of the user's and the tweet's TwHIN embeddings"),
        ("has_twhin_embedding", "boolean", False, "both TwHIN embeddings exist"),
        (
            "content_affinity",
            "double",
            0.0,
            "cosine of the tweet's words and hashtags with those of the tweets the "
            "user engaged with in the last 28 days",
        ),
        ("social_proof_count", "int", 0, "followees who engaged with the tweet (candidate pool)"),
        ("from_in_network", "boolean", False, "retrieved by the in-network source"),
        ("from_uteg", "boolean", False, "retrieved by UTEG"),
        ("from_simclusters", "boolean", False, "retrieved by SimClusters"),
        ("from_twhin", "boolean", False, "retrieved by TwHIN"),
        ("from_frs", "boolean", False, "retrieved by follow recommendations (FRS)"),
        ("from_popular", "boolean", False, "retrieved by the popular source"),
        ("in_network_score", "double", 0.0, "in-network source score"),
        ("uteg_score", "double", 0.0, "UTEG source score"),
        ("simclusters_score", "double", 0.0, "SimClusters source score"),
        ("twhin_score", "double", 0.0, "TwHIN source score"),
        ("frs_score", "double", 0.0, "FRS source score"),
        ("popular_score", "double", 0.0, "popular source score"),
        ("source_count", "int", 0, "sources that retrieved the pair"),
        ("pool_rank", "int", -1, "rank in the user's candidate pool; -1 if not in it"),
        ("is_in_network", "boolean", False, "the candidate's author is followed (candidate pool)"),
        (
            "topic_confidence",
            "double",
            0.0,
            "posterior of the tweet's topic (1 for a topic hashtag); 0 without a topic",
        ),
        ("topic_authored_share", "double", 0.0, "share of the user's own tweets in the tweet's topic"),
        (
            "topic_followee_share",
            "double",
            0.0,
            "mean share of the tweet's topic in the tweets of the user's followees",
        ),
        (
            "topic_engagement_rate",
            "double",
            0.0,
            "the user's smoothed engagement rate with the tweet's topic over 28 "
            "days (toward the user's own rate); 0 without a topic",
        ),
    ),
)


def check_registry(features: tuple[Feature, ...]) -> None:
    """Raise if two features of one table share a name."""
    seen: set[tuple[str, str]] = set()
    for feature in features:
        if (feature.asset, feature.name) in seen:
            raise ValueError(f"feature {feature.name} declared twice in {feature.asset}")
        seen.add((feature.asset, feature.name))


check_registry(FEATURES)


def features_for(entity: str, features: tuple[Feature, ...] = FEATURES) -> tuple[Feature, ...]:
    if entity not in ENTITY_KEYS:
        raise KeyError(f"unknown entity {entity!r}; one of {ENTITIES}")
    return tuple(f for f in features if f.entity == entity)


def features_of_asset(asset: str, features: tuple[Feature, ...] = FEATURES) -> tuple[Feature, ...]:
    if asset not in ENTITY_OF_ASSET:
        raise KeyError(f"unknown feature table {asset!r}; one of {ASSETS}")
    return tuple(f for f in features if f.asset == asset)


def keys_of_asset(asset: str) -> tuple[str, ...]:
    return ENTITY_KEYS[ENTITY_OF_ASSET[asset]]


def spark_schema_of(asset: str) -> T.StructType:
    """The table's schema: its entity's keys (bigint), then its features in declaration order."""
    keys = [T.StructField(key, T.LongType(), False) for key in keys_of_asset(asset)]
    return T.StructType(keys + [T.StructField(f.name, f.spark_type, False) for f in features_of_asset(asset)])


def registry_hash(features: tuple[Feature, ...] = FEATURES) -> str:
    """sha256 of what a trained model depends on: each feature's table, entity, name, type and
    default (not its description), sorted, so declaration order and wording do not matter."""
    declarations = sorted([f.asset, f.entity, f.name, f.dtype, f.default] for f in features)
    return hashlib.sha256(json.dumps(declarations, separators=(",", ":")).encode()).hexdigest()
