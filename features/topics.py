"""Topic interest: what each tweet is about, and how much each user cares about that topic.

Topics are hashtags: the `max_topics` most used ones (each on at least `min_topic_tweets` tweets
before as_of). A tweet carrying one of them has that topic (confidence 1; with several, the most
used). Every other tweet with text gets the most probable topic under a multinomial naive Bayes
classifier over its words, trained on the hashtagged tweets, whose prior is the author's own
hashtag mix smoothed toward the global one:

    P(k | author) = (c_ak + β·P(k)) / (c_a + β)
    log P(w | k) = log(n_kw + α) − log(n_k + α·V)

with c_ak the author's tweets tagged k, P(k) the share of tagged tweets tagged k, n_kw the tagged
tweets of topic k containing word w, n_k = Σ_w n_kw and V the vocabulary (the `max_vocabulary`
most common words of tagged tweets). A tweet's confidence is its topic's posterior. A retweet has
the topic of the tweet it retweets. Words are `features.tokens.tweet_tokens` (lower-cased,
@mentions left out).

Per user and topic, three views of interest (`user_topic_profiles`):

* authored_share: the share of the user's own tweets in the topic;
* followee_share: the mean over the user's followees of their authored_share;
* engagement_rate: (E_uk + m·r_u) / (I_uk + m) over the last `topic_engagement_days`, E the tweets
  of the topic the user engaged with positively, I the impressions of the topic's tweets and r_u the
  user's own rate over all topics, (E_u + m·r̄) / (I_u + m), r̄ the rate over all users.

`topic_sides` gives the features' two sides: per tweet its topic, per user a map topic -> values;
a (user, tweet) row joined with both reads its values at the tweet's topic (`features.pair_kernel`,
`with_topic_features`). Everything reads only rows stamped strictly before as_of (the
point-in-time rule of `features.tables`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T
from scipy.sparse import csr_matrix

from features.pair_kernel import TOPIC_PRIOR_RATE, TOPIC_VALUES
from features.pair_rows import with_pair_features
from features.realgraph import POSITIVE_ACTIONS
from features.tokens import tweet_tokens


@dataclass(frozen=True)
class TopicConfig:
    max_topics: int = 256
    min_topic_tweets: int = 5
    max_vocabulary: int = 20_000
    word_smoothing: float = 1.0  # α
    author_prior_weight: float = 5.0  # β: pseudo-tweets at the global mix in an author's prior
    rate_prior_impressions: float = 20.0  # m
    engagement_days: float = 28.0


DEFAULT_TOPIC_CONFIG = TopicConfig()
TOPIC_SCHEMA = T.StructType(
    [
        T.StructField("tweet_id", T.LongType(), False),
        T.StructField("topic", T.IntegerType(), False),
        T.StructField("topic_confidence", T.DoubleType(), False),
    ]
)


@dataclass(frozen=True)
class TopicModel:
    """The classifier learned from the hashtagged tweets: topics[k] is topic k's hashtag."""

    topics: tuple[str, ...]
    vocabulary: tuple[str, ...]
    log_likelihood: np.ndarray  # (V, K): log P(word | topic)
    topic_prior: np.ndarray  # (K,): P(topic) over the tagged tweets
    prior_weight: float


def topic_vocabulary(tokens: DataFrame, config: TopicConfig) -> tuple[str, ...]:
    """The topics: hashtags on at least `min_topic_tweets` tweets, the `max_topics` most used,
    most used first (ties by name)."""
    rows = (
        tokens.where(F.col("token").startswith("#") & (F.length("token") > 1))
        .groupBy("token")
        .agg(F.count(F.lit(1)).alias("tweets"))
        .where(F.col("tweets") >= config.min_topic_tweets)
        .orderBy(F.desc("tweets"), "token")
        .limit(config.max_topics)
        .collect()
    )
    return tuple(row.token for row in rows)


def tagged_tweets(tokens: DataFrame, topics: tuple[str, ...]) -> DataFrame:
    """(tweet_id, topic): the tweets carrying a topic hashtag, each at its most used one."""
    spark = tokens.sparkSession
    index = spark.createDataFrame([(tag, k) for k, tag in enumerate(topics)], "token string, topic int")
    return (
        tokens.join(F.broadcast(index), on="token", how="inner").groupBy("tweet_id").agg(F.min("topic").alias("topic"))
    )


def fit_topic_model(tokens: DataFrame, tagged: DataFrame, topics: tuple[str, ...], config: TopicConfig) -> TopicModel:
    """The naive Bayes tables from the tagged tweets' words (two small collects)."""
    words = tokens.where(~F.col("token").startswith("#")).join(tagged, on="tweet_id", how="inner")
    vocabulary = tuple(
        row.token
        for row in (
            words.groupBy("token")
            .agg(F.count(F.lit(1)).alias("n"))
            .orderBy(F.desc("n"), "token")
            .limit(config.max_vocabulary)
            .collect()
        )
    )
    k, v = len(topics), len(vocabulary)
    word_index = {word: i for i, word in enumerate(vocabulary)}
    counts = np.zeros((v, k))
    for row in words.groupBy("token", "topic").agg(F.count(F.lit(1)).alias("n")).collect():
        if row.token in word_index:
            counts[word_index[row.token], row.topic] += row.n
    per_topic = np.zeros(k)
    for row in tagged.groupBy("topic").agg(F.count(F.lit(1)).alias("n")).collect():
        per_topic[row.topic] = row.n
    alpha = config.word_smoothing
    log_likelihood = np.log(counts + alpha) - np.log(counts.sum(axis=0) + alpha * max(v, 1))
    return TopicModel(
        topics=topics,
        vocabulary=vocabulary,
        log_likelihood=log_likelihood,
        topic_prior=per_topic / max(per_topic.sum(), 1.0),
        prior_weight=config.author_prior_weight,
    )


def _flat(lists: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """(row of each element, the elements) of a list array; a null list has no elements."""
    lengths = pc.list_value_length(lists).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    return np.repeat(np.arange(len(lists)), lengths), pc.list_flatten(lists)


def classify(
    words: pa.Array, prior_topics: pa.Array, prior_counts: pa.Array, model: TopicModel
) -> tuple[np.ndarray, np.ndarray]:
    """(topic, posterior of that topic) per row: `words` list<string>, the author's tagged-tweet
    counts as parallel lists of topic indices and counts."""
    n, k = len(words), len(model.topics)
    counts = np.zeros((n, k))
    rows, topics = _flat(prior_topics)
    np.add.at(
        counts,
        (rows, topics.to_numpy(zero_copy_only=False).astype(np.int64)),
        _flat(prior_counts)[1].to_numpy(zero_copy_only=False).astype(np.float64),
    )
    beta = model.prior_weight
    scores = np.log(counts + beta * model.topic_prior + 1e-300) - np.log(counts.sum(axis=1, keepdims=True) + beta)
    rows, flat_words = _flat(words)
    index = pc.index_in(flat_words, value_set=pa.array(model.vocabulary, pa.string()))
    index = index.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    known = index >= 0
    # Σ over a row's words of log P(w | k): a sparse (rows x vocabulary) count matrix times the
    # (vocabulary x topics) table, 20x faster than gathering a topics-wide row per word.
    word_counts = csr_matrix((np.ones(int(known.sum())), (rows[known], index[known])), shape=(n, len(model.vocabulary)))
    scores += word_counts @ model.log_likelihood
    best = scores.argmax(axis=1)
    shifted = scores - scores[np.arange(n), best][:, None]
    return best.astype(np.int32), 1.0 / np.exp(shifted).sum(axis=1)


def _classify_batches(model: TopicModel) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            topic, confidence = classify(
                batch.column("_words"), batch.column("_prior_topics"), batch.column("_prior_counts"), model
            )
            yield pa.RecordBatch.from_arrays(
                [batch.column("tweet_id"), pa.array(topic), pa.array(confidence)],
                schema=pa.schema(
                    [
                        ("tweet_id", pa.int64(), False),
                        ("topic", pa.int32(), False),
                        ("topic_confidence", pa.float64(), False),
                    ]
                ),
            )

    return run


def tweet_topics(tweets: DataFrame, *, as_of: datetime, config: TopicConfig = DEFAULT_TOPIC_CONFIG) -> DataFrame:
    """(tweet_id, topic, topic_confidence) for the tweets created before as_of that have a topic:
    tagged ones, classified ones (any text or author prior: every non-retweet once there are topics),
    and retweets of either. Empty when no hashtag qualifies as a topic."""
    past = tweets.where(F.col("created_at") < F.lit(as_of))
    # Materialized once: the vocabulary, the model's counts and the classification all read them.
    tokens = tweet_tokens(past).localCheckpoint()
    topics = topic_vocabulary(tokens, config)
    spark = tweets.sparkSession
    if not topics:
        return spark.createDataFrame([], TOPIC_SCHEMA)
    tagged = tagged_tweets(tokens, topics)
    model = fit_topic_model(tokens, tagged, topics, config)
    author_prior = (
        past.select("tweet_id", "author_id")
        .join(tagged, on="tweet_id", how="inner")
        .groupBy("author_id", "topic")
        .agg(F.count(F.lit(1)).cast("double").alias("n"))
        .groupBy("author_id")
        .agg(F.collect_list("topic").alias("_prior_topics"), F.collect_list("n").alias("_prior_counts"))
    )
    words = (
        tokens.where(~F.col("token").startswith("#")).groupBy("tweet_id").agg(F.collect_list("token").alias("_words"))
    )
    untagged = (
        past.where(F.col("retweet_of_tweet_id").isNull())
        .select("tweet_id", "author_id")
        .join(tagged, on="tweet_id", how="left_anti")
        .join(words, on="tweet_id", how="left")
        .join(author_prior, on="author_id", how="left")
        .select("tweet_id", "_words", "_prior_topics", "_prior_counts")
    )
    classified = untagged.mapInArrow(_classify_batches(model), TOPIC_SCHEMA)
    own = tagged.select("tweet_id", "topic", F.lit(1.0).alias("topic_confidence")).unionByName(classified)
    retweets = (
        past.where(F.col("retweet_of_tweet_id").isNotNull())
        .select("tweet_id", F.col("retweet_of_tweet_id").alias("_original"))
        .join(own.withColumnRenamed("tweet_id", "_original"), on="_original", how="inner")
        .select("tweet_id", "topic", "topic_confidence")
    )
    # Materialized: the profiles read it twice and user_tweet_features once more.
    return own.unionByName(retweets).localCheckpoint()


@dataclass(frozen=True)
class TopicProfiles:
    """`per_topic`: (user_id, topic, authored_share, followee_share, engaged, impressed);
    `base_rates`: (user_id, base_rate), the user's smoothed rate over all topics; `overall_rate`:
    one row, r̄."""

    per_topic: DataFrame
    base_rates: DataFrame
    overall_rate: DataFrame


def user_topic_profiles(
    topics: DataFrame,
    tweets: DataFrame,
    follows: DataFrame,
    engagements: DataFrame,
    *,
    as_of: datetime,
    config: TopicConfig = DEFAULT_TOPIC_CONFIG,
) -> TopicProfiles:
    """Each user's interest per topic (see the module docstring); `topics` is `tweet_topics` as
    of the same moment."""
    authors = tweets.where(F.col("created_at") < F.lit(as_of)).select("tweet_id", F.col("author_id").alias("user_id"))
    authored = (
        authors.join(topics, on="tweet_id", how="inner")
        .groupBy("user_id", "topic")
        .agg(F.count(F.lit(1)).cast("double").alias("_n"))
        .select(
            "user_id", "topic", (F.col("_n") / F.sum("_n").over(Window.partitionBy("user_id"))).alias("authored_share")
        )
    )
    edges = follows.where(F.col("created_at") < F.lit(as_of)).select(
        F.col("follower_id").alias("user_id"), F.col("followee_id").alias("_followee")
    )
    followee_count = edges.groupBy("user_id").agg(F.count(F.lit(1)).cast("double").alias("_followees"))
    followed = (
        edges.join(authored.withColumnRenamed("user_id", "_followee"), on="_followee", how="inner")
        .groupBy("user_id", "topic")
        .agg(F.sum("authored_share").alias("_sum"))
        .join(followee_count, on="user_id", how="inner")
        .select("user_id", "topic", (F.col("_sum") / F.col("_followees")).alias("followee_share"))
    )
    recent = engagements.where(
        (F.col("created_at") < F.lit(as_of))
        & (F.col("created_at") >= F.lit(as_of - timedelta(days=config.engagement_days)))
    )
    positive = F.col("action").isin(*POSITIVE_ACTIONS)
    impressed = F.col("action") == "impression"
    acted = recent.where(positive | impressed).select(
        "user_id",
        "tweet_id",
        F.when(positive, F.col("tweet_id")).alias("_engaged_tweet"),
        impressed.cast("double").alias("_impression"),
    )
    counts = [
        F.count_distinct("_engaged_tweet").cast("double").alias("engaged"),
        F.sum("_impression").alias("impressed"),
    ]
    per_user = acted.groupBy("user_id").agg(*counts)
    overall = per_user.agg(
        F.coalesce(F.try_divide(F.sum("engaged"), F.sum("impressed")), F.lit(0.0)).alias("overall_rate")
    )
    m = F.lit(config.rate_prior_impressions)
    base_rates = per_user.crossJoin(F.broadcast(overall)).select(
        "user_id", ((F.col("engaged") + m * F.col("overall_rate")) / (F.col("impressed") + m)).alias("base_rate")
    )
    per_topic = (
        acted.join(topics.select("tweet_id", "topic"), on="tweet_id", how="inner")
        .groupBy("user_id", "topic")
        .agg(*counts)
    )
    profiles = authored.join(followed, on=["user_id", "topic"], how="full").join(
        per_topic, on=["user_id", "topic"], how="full"
    )
    return TopicProfiles(per_topic=profiles, base_rates=base_rates, overall_rate=overall)


TOPIC_FEATURE_NAMES = ("topic_confidence", "topic_authored_share", "topic_followee_share", "topic_engagement_rate")


@dataclass(frozen=True)
class TopicSides:
    """`tweets`: (tweet_id, topic, topic_confidence); `users`: (user_id, _topic_values,
    _topic_prior_rate), the user's values per topic as a map topic -> (authored_share,
    followee_share, rate) and the rate of a topic without data (the user's own, else r̄);
    `overall_rate`: r̄. `features.pair_kernel` reads TOPIC_FEATURE_NAMES from a row joined with both."""

    tweets: DataFrame
    users: DataFrame
    overall_rate: float


def user_topic_values(profiles: TopicProfiles, overall_rate: float, config: TopicConfig) -> DataFrame:
    """One row per user with any topic data or engagement: (user_id, _topic_values, _topic_prior_rate)."""
    m = F.lit(config.rate_prior_impressions)
    prior = F.coalesce(F.col("base_rate"), F.lit(overall_rate))
    rate = (F.coalesce(F.col("engaged"), F.lit(0.0)) + m * prior) / (F.coalesce(F.col("impressed"), F.lit(0.0)) + m)
    value = F.struct(
        F.coalesce(F.col("authored_share"), F.lit(0.0)).alias("authored_share"),
        F.coalesce(F.col("followee_share"), F.lit(0.0)).alias("followee_share"),
        rate.alias("rate"),
    )
    maps = (
        profiles.per_topic.join(profiles.base_rates, on="user_id", how="left")
        .groupBy("user_id")
        .agg(F.map_from_entries(F.collect_list(F.struct("topic", value))).alias(TOPIC_VALUES))
    )
    return maps.join(profiles.base_rates, on="user_id", how="full").select(
        "user_id", TOPIC_VALUES, prior.alias(TOPIC_PRIOR_RATE)
    )


def topic_sides(
    tweets: DataFrame,
    follows: DataFrame,
    engagements: DataFrame,
    *,
    as_of: datetime,
    config: TopicConfig = DEFAULT_TOPIC_CONFIG,
) -> TopicSides:
    """The topic features' per-tweet and per-user inputs as of `as_of` (see TopicSides). Runs the
    topic model's jobs now (`tweet_topics`) and one more for r̄."""
    topics = tweet_topics(tweets, as_of=as_of, config=config)
    profiles = user_topic_profiles(topics, tweets, follows, engagements, as_of=as_of, config=config)
    overall_rate = float(profiles.overall_rate.first()[0])
    return TopicSides(tweets=topics, users=user_topic_values(profiles, overall_rate, config), overall_rate=overall_rate)


def with_topic_features(
    rows: DataFrame,
    tweets: DataFrame,
    follows: DataFrame,
    engagements: DataFrame,
    *,
    as_of: datetime,
    config: TopicConfig = DEFAULT_TOPIC_CONFIG,
) -> DataFrame:
    """`rows` (with user_id and tweet_id) plus TOPIC_FEATURE_NAMES, read at the tweet's topic by
    `features.pair_kernel`: the shares are 0 without data, the rate falls back to the user's own
    rate, then to r̄; all four are null for a tweet without a topic. The rows are joined once with
    each side, never grouped or deduplicated."""
    sides = topic_sides(tweets, follows, engagements, as_of=as_of, config=config)
    joined = rows.join(sides.tweets, on="tweet_id", how="left").join(sides.users, on="user_id", how="left")
    return with_pair_features(joined, overall_rate=sides.overall_rate, names=TOPIC_FEATURE_NAMES)
