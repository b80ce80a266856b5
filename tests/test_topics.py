"""Topic interest on a hand-made world: tweet topics (hashtag or naive Bayes with the author's
prior), user topic profiles and the pair features. Expected values are worked out here from the
formulas in features/topics.py's docstring, not by the code under test."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from features import topics as tp

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
CONFIG = tp.TopicConfig(
    min_topic_tweets=2, word_smoothing=1.0, author_prior_weight=2.0, rate_prior_impressions=4.0, engagement_days=28.0
)


def ago(hours: float) -> datetime:
    return AS_OF - timedelta(hours=hours)


TWEETS = [  # tweet_id, author, hours ago, text, retweet_of
    (1, 10, 50, "#Sports ball goal", None),
    (2, 10, 40, "#sports ball team", None),
    (3, 11, 30, "#food pasta ball", None),
    (4, 11, 20, "#food pasta salt", None),
    (5, 12, 10, "#rare thing", None),  # one #rare tweet: not a topic (min 2)
    (6, 10, 5, "pasta goal @bob", None),  # untagged: classified
    (7, 11, 4, None, None),  # no text: the author's prior alone
    (8, 12, 3, None, 3),  # a retweet of 3: its topic
    (9, 12, 0, "#sports ball", None),  # at as_of: invisible
    (10, 13, 60, "#sports #food ball", None),  # both: #food and #sports tie at 3 tweets, #food first by name
]
FOLLOWS = [(20, 10, 100), (20, 11, 100), (20, 14, 100), (20, 13, 0)]  # follower, followee, hours ago
ENGAGEMENTS = [  # user, tweet, action, hours ago
    (20, 1, "impression", 48),
    (20, 1, "like", 47),
    (20, 2, "impression", 39),
    (20, 3, "impression", 29),
    (20, 3, "like", 28),
    (20, 3, "click", 28),  # one engaged tweet
    (20, 6, "impression", 4),
    (20, 4, "like", 40 * 24),  # older than the 28-day window
    (20, 2, "like", 0),  # at as_of
    (21, 4, "impression", 19),
]
PAIRS = [(20, 6), (20, 8), (10, 2), (21, 7), (22, 9), (22, 1)]


def frames(spark):
    tweets = spark.createDataFrame(
        [(t, a, ago(h), text, rt) for t, a, h, text, rt in TWEETS],
        "tweet_id long, author_id long, created_at timestamp, text string, retweet_of_tweet_id long",
    )
    follows = spark.createDataFrame(
        [(a, b, ago(h)) for a, b, h in FOLLOWS], "follower_id long, followee_id long, created_at timestamp"
    )
    engagements = spark.createDataFrame(
        [(u, t, a, ago(h)) for u, t, a, h in ENGAGEMENTS],
        "user_id long, tweet_id long, action string, created_at timestamp",
    )
    pairs = spark.createDataFrame(PAIRS, "user_id long, tweet_id long")
    return tweets, follows, engagements, pairs


# The classifier by hand. Topics: #food (0), #sports (1). Tagged: 1, 2 sports; 3, 4, 10 food.
TOPIC_PRIOR = {"food": 3 / 5, "sports": 2 / 5}
WORDS_OF_TOPIC = {"food": {"pasta": 2, "ball": 2, "salt": 1}, "sports": {"ball": 2, "goal": 1, "team": 1}}
VOCABULARY = {"ball", "goal", "team", "pasta", "salt"}
AUTHOR_TAGS = {10: {"sports": 2}, 11: {"food": 2}, 13: {"food": 1}}


def posterior(words: list[str], author: int) -> dict[str, float]:
    alpha, beta = CONFIG.word_smoothing, CONFIG.author_prior_weight
    tags = AUTHOR_TAGS.get(author, {})
    scores = {}
    for topic, counts in WORDS_OF_TOPIC.items():
        log_p = math.log((tags.get(topic, 0) + beta * TOPIC_PRIOR[topic]) / (sum(tags.values()) + beta))
        for word in words:
            if word in VOCABULARY:
                log_p += math.log((counts.get(word, 0) + alpha) / (sum(counts.values()) + alpha * len(VOCABULARY)))
        scores[topic] = math.exp(log_p)
    total = sum(scores.values())
    return {topic: score / total for topic, score in scores.items()}


def test_tweet_topics_are_hashtags_else_naive_bayes_with_the_authors_prior(spark):
    tweets, *_ = frames(spark)
    got = {
        r.tweet_id: (r.topic, r.topic_confidence) for r in tp.tweet_topics(tweets, as_of=AS_OF, config=CONFIG).collect()
    }
    food, sports = 0, 1
    six, seven, five = posterior(["pasta", "goal"], 10), posterior([], 11), posterior(["thing"], 12)
    assert six["sports"] > six["food"] and seven["food"] > seven["sports"] and five["food"] > five["sports"]
    expected = {
        1: (sports, 1.0),
        2: (sports, 1.0),
        3: (food, 1.0),
        4: (food, 1.0),
        10: (food, 1.0),
        6: (sports, six["sports"]),
        7: (food, seven["food"]),
        5: (food, five["food"]),
        8: (food, 1.0),
    }
    assert set(got) == set(expected)
    for tweet, (topic, confidence) in expected.items():
        assert got[tweet][0] == topic and got[tweet][1] == pytest.approx(confidence), tweet


def test_no_topic_without_a_hashtag_used_often_enough(spark):
    tweets, *_ = frames(spark)
    assert tp.tweet_topics(tweets, as_of=AS_OF, config=tp.TopicConfig(min_topic_tweets=4)).count() == 0


def test_classify_ignores_unknown_words_and_null_lists():
    model = tp.TopicModel(
        topics=("#a", "#b"),
        vocabulary=("x",),
        log_likelihood=np.log(np.array([[0.9, 0.1]])),
        topic_prior=np.array([0.5, 0.5]),
        prior_weight=1.0,
    )
    topic, confidence = tp.classify(
        pa.array([["x", "zz"], None]),
        pa.array([None, [1]], pa.list_(pa.int32())),
        pa.array([None, [3.0]], pa.list_(pa.float64())),
        model,
    )
    # Row 0: even prior, x: 0.9 vs 0.1. Row 1: no words, prior (3 + 0.5) / 4 for b.
    assert topic.tolist() == [0, 1]
    assert confidence == pytest.approx([0.9, 3.5 / 4])


def expected_topic_features() -> dict[tuple[int, int], dict[str, float]]:
    """The topic features of the pairs that have them (tweet 9, created at as_of, has none)."""
    m = CONFIG.rate_prior_impressions
    # Engagements in the window: user 20 engaged with 2 tweets (1, 3) of 4 impressions; user 21 0 of 1.
    overall = (2 + 0) / (4 + 1)
    base_20, base_21 = (2 + m * overall) / (4 + m), (0 + m * overall) / (1 + m)
    # User 20 follows 10 (all sports: 1, 2, 6), 11 (all food: 3, 4, 7) and 14 (no tweets); 13 only at as_of.
    return {
        (20, 6): dict(
            topic_confidence=posterior(["pasta", "goal"], 10)["sports"],
            topic_authored_share=0.0,
            topic_followee_share=1 / 3,
            topic_engagement_rate=(1 + m * base_20) / (3 + m),
        ),
        (20, 8): dict(
            topic_confidence=1.0,
            topic_authored_share=0.0,
            topic_followee_share=1 / 3,
            topic_engagement_rate=(1 + m * base_20) / (1 + m),
        ),
        (10, 2): dict(
            topic_confidence=1.0, topic_authored_share=1.0, topic_followee_share=0.0, topic_engagement_rate=overall
        ),
        (21, 7): dict(
            topic_confidence=posterior([], 11)["food"],
            topic_authored_share=0.0,
            topic_followee_share=0.0,
            topic_engagement_rate=(0 + m * base_21) / (1 + m),
        ),
        (22, 1): dict(
            topic_confidence=1.0, topic_authored_share=0.0, topic_followee_share=0.0, topic_engagement_rate=overall
        ),
    }


def test_topic_features_read_the_users_shares_and_smoothed_rate_at_the_tweets_topic(spark):
    tweets, follows, engagements, pairs = frames(spark)
    got = {
        (r.user_id, r.tweet_id): r.asDict()
        for r in tp.with_topic_features(pairs, tweets, follows, engagements, as_of=AS_OF, config=CONFIG).collect()
    }
    assert set(got) == set(PAIRS)
    assert set(got[(22, 9)].values()) == {22, 9, None}  # tweet 9 is not before as_of: no topic
    for pair, values in expected_topic_features().items():
        for name, value in values.items():
            assert got[pair][name] == pytest.approx(value), (pair, name)


def test_user_tweet_features_carry_the_topic_features_and_content_affinity(spark):
    from features import tables as ft
    from features import user_tweet as fut

    tweets, follows, engagements, pairs = frames(spark)
    empty_sc = spark.createDataFrame([], "user_id bigint, cluster_id int, score double")
    empty_tsc = spark.createDataFrame([], "tweet_id bigint, cluster_id int, score double")
    empty_tw = spark.createDataFrame([], "user_id bigint, embedding array<float>")
    empty_ttw = spark.createDataFrame([], "tweet_id bigint, embedding array<float>")
    config = ft.FeatureConfig(topics=CONFIG)
    with_topics = {
        (r.user_id, r.tweet_id): r
        for r in fut.user_tweet_features(
            pairs,
            empty_sc,
            empty_tsc,
            empty_tw,
            empty_ttw,
            as_of=AS_OF,
            tweets=tweets,
            engagements=engagements,
            follows=follows,
            config=config,
        ).collect()
    }
    assert set(with_topics) == set(PAIRS)
    for pair, values in expected_topic_features().items():
        for name, value in values.items():
            assert getattr(with_topics[pair], name) == pytest.approx(value), (pair, name)
    assert (with_topics[(22, 9)].topic_confidence, with_topics[(22, 9)].topic_engagement_rate) == (0.0, 0.0)
    # User 20's profile: tweets 1 and 3 (a like, a like and a click): ball 2, #sports, goal, #food,
    # pasta 1 each (norm √8). Tweet 6 is "pasta goal @bob": 2 / (√8 · √2). Nobody else engaged.
    assert {pair: row.content_affinity for pair, row in with_topics.items()} == {
        **dict.fromkeys(PAIRS, 0.0),
        (20, 6): pytest.approx(2 / (math.sqrt(8) * math.sqrt(2))),
    }
    without = fut.user_tweet_features(pairs, empty_sc, empty_tsc, empty_tw, empty_ttw, as_of=AS_OF, config=config)
    assert {r.topic_confidence for r in without.collect()} == {0.0}
