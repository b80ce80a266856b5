"""Feature registry and batch feature tables on a tiny hand-made world; every expected value is
worked out by hand here (or with numpy), never by the code under test."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import pytest
from pyspark.testing import assertDataFrameEqual

from core.contract import RAW_TABLES_BY_NAME
from features import registry as reg
from features import tables as ft
from features import user_tweet as fut
from jobs.follow_graph import mutual_follows
from jobs.ingest import spark_schema

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
HALF_LIFE_HOURS = 7 * 24.0


def ago(hours: float) -> datetime:
    return AS_OF - timedelta(hours=hours)


def decay(hours: float) -> float:
    return 0.5 ** (hours / HALF_LIFE_HOURS)


USERS = [  # user_id, created (hours before AS_OF), is_verified, allow_nsfw
    (1, 240, True, False),
    (2, 2400, False, True),
    (3, 48, False, False),
    (4, 36, False, False),
]
FOLLOWS = [(1, 2, 720), (2, 1, 480), (3, 1, 24), (1, 4, 12), (4, 2, 6)]  # follower, followee, hours ago
TWEETS = [  # tweet_id, author, hours ago, text, reply_to, quote_of, retweet_of, media, video, nsfw, deleted (hours ago)
    (100, 2, 3, "hello world", None, None, None, True, False, False, None),
    (101, 2, 30, None, None, None, None, False, False, False, None),
    (102, 2, 2, "ok", 101, None, None, False, False, False, None),
    (103, 1, 1, None, None, None, 100, False, False, False, None),
    (104, 2, 192, "old", None, None, None, False, False, False, None),  # older than the 7-day lookback
    (105, 1, 10, None, None, 101, None, False, False, False, 4),  # deleted before AS_OF
    (106, 4, 20, None, None, None, None, True, True, True, -1),  # deleted after AS_OF: live
]
ENGAGEMENTS = [  # user, tweet, action, hours ago, dwell_ms
    (1, 100, "impression", 2.5, 3000),
    (1, 100, "like", 2.4, None),
    (1, 101, "impression", 29, 1000),
    (1, 101, "click", 28.5, 5000),
    (1, 104, "impression", 169, None),  # outside 7 days
    (1, 104, "like", 168.5, None),  # outside 7 days
    (3, 100, "impression", 0.5, 2000),
    (3, 100, "retweet", 0.4, None),
    (3, 102, "impression", 1.5, None),
    (3, 102, "not_interested", 1.4, None),
    (4, 103, "impression", 0.8, 0),
    (4, 103, "reply", 0.7, None),
    (4, 106, "impression", 10, 500),  # own tweet
    (2, 103, "impression", 0.9, 4000),
    (2, 103, "report", 0.85, None),
    (2, 100, "like", 2.9, None),  # own tweet, no impression
]
SOCIAL = [(3, 2, "block", 5), (1, 2, "mute", 50), (1, 3, "block", 70)]
REALGRAPH = [(1, 2, 0.9), (3, 4, 0.2)]

# Future rows, stamped at or after AS_OF: they must change nothing.
FUTURE_USERS = [(9, 0, True, True), (10, -24, False, False)]
FUTURE_FOLLOWS = [(3, 2, 0), (2, 3, -1), (9, 1, -2)]
FUTURE_TWEETS = [
    (200, 1, 0, "now", None, None, None, True, True, False, None),
    (201, 3, -2, None, 100, None, None, False, False, False, None),
]
FUTURE_ENGAGEMENTS = [
    (1, 100, "like", 0, None),
    (3, 103, "impression", -1, 10),
    (4, 200, "like", -1, None),
    (2, 101, "reply", -5, None),
    (1, 101, "impression", -0.5, 100),
    (3, 201, "retweet", -3, None),
]
FUTURE_SOCIAL = [(2, 1, "block", 0), (4, 3, "mute", -1)]


def _frames(spark, users, follows, tweets, engagements, social):
    def frame(table, rows):
        return spark.createDataFrame(rows, schema=spark_schema(RAW_TABLES_BY_NAME[table]))

    frames = dict(
        users=frame(
            "users",
            [
                dict(user_id=u, handle=f"u{u}", created_at=ago(h), is_verified=v, allow_nsfw=n, lang=None)
                for u, h, v, n in users
            ],
        ),
        follows=frame("follows", [dict(follower_id=a, followee_id=b, created_at=ago(h)) for a, b, h in follows]),
        tweets=frame(
            "tweets",
            [
                dict(
                    tweet_id=t,
                    author_id=a,
                    created_at=ago(h),
                    text=text,
                    in_reply_to_tweet_id=r,
                    quoted_tweet_id=q,
                    retweet_of_tweet_id=rt,
                    has_media=m,
                    has_video=v,
                    is_nsfw=n,
                    lang="en",
                    deleted_at=None if d is None else ago(d),
                )
                for t, a, h, text, r, q, rt, m, v, n, d in tweets
            ],
        ),
        engagements=frame(
            "engagements",
            [dict(user_id=u, tweet_id=t, action=a, created_at=ago(h), dwell_ms=d) for u, t, a, h, d in engagements],
        ),
        social_actions=frame(
            "social_actions", [dict(user_id=u, target_user_id=t, action=a, created_at=ago(h)) for u, t, a, h in social]
        ),
        realgraph=spark.createDataFrame(
            [(u, a, s, i + 1) for i, (u, a, s) in enumerate(REALGRAPH)],
            "user_id bigint, author_id bigint, score double, rank int",
        ),
    )
    frames["mutual_follows"] = mutual_follows(frames["follows"])
    return frames


def _tables(frames) -> dict:
    f = frames
    return dict(
        user_features=ft.user_features(
            f["users"],
            f["follows"],
            f["mutual_follows"],
            f["tweets"],
            f["engagements"],
            f["social_actions"],
            as_of=AS_OF,
        ),
        author_features=ft.author_features(
            f["users"], f["follows"], f["tweets"], f["engagements"], f["social_actions"], as_of=AS_OF
        ),
        tweet_features=ft.tweet_features(f["users"], f["follows"], f["tweets"], f["engagements"], as_of=AS_OF),
        user_author_features=ft.user_author_features(
            f["follows"], f["tweets"], f["engagements"], f["realgraph"], as_of=AS_OF
        ),
    )


# --- user x tweet inputs ---------------------------------------------------------------------

RNG = np.random.default_rng(3)
TWHIN_USERS = {
    1: RNG.normal(size=8).astype(np.float32),
    3: np.zeros(8, np.float32),
    4: RNG.normal(size=8).astype(np.float32),
}
TWHIN_TWEETS = {
    100: RNG.normal(size=8).astype(np.float32),
    102: RNG.normal(size=8).astype(np.float32),
    106: RNG.normal(size=8).astype(np.float32),
}
INTERESTED_IN = {1: {0: 0.6, 1: 0.8}, 3: {2: 1.0}}
TWEET_EMBEDDINGS = {100: {1: 2.0, 5: 3.0}, 102: {0: 1.0, 1: 1.0, 7: 4.0}, 106: {2: 0.5}, 101: {9: 1.0}}
CANDIDATE_SCHEMA = (
    "user_id bigint, tweet_id bigint, author_id bigint, sources array<string>, in_network_score double, "
    "uteg_score double, simclusters_score double, twhin_score double, frs_score double, popular_score double, "
    "social_proof_count int, is_in_network boolean, pool_rank int"
)
CANDIDATES = [
    (1, 100, 2, ["in_network", "uteg"], 0.7, 0.3, None, None, None, None, 2, True, 1),
    (1, 102, 2, ["SimClusters"], None, None, 0.5, None, None, None, 0, True, 2),
    (3, 106, 4, [], None, None, None, None, None, 0.1, 0, False, 1),  # a score without the name
    (4, 101, 2, None, None, None, None, None, None, None, None, None, None),
]


def _user_tweet_inputs(spark):
    def sparse(vectors, key):
        rows = [(k, c, s) for k, vec in vectors.items() for c, s in vec.items()]
        return spark.createDataFrame(rows, f"{key} bigint, cluster_id int, score double")

    def dense(vectors, key):
        return spark.createDataFrame(
            [(k, [float(x) for x in v]) for k, v in vectors.items()], f"{key} bigint, embedding array<float>"
        )

    return dict(
        simclusters_interested_in=sparse(INTERESTED_IN, "user_id"),
        simclusters_tweet_embeddings=sparse(TWEET_EMBEDDINGS, "tweet_id"),
        twhin_user_embeddings=dense(TWHIN_USERS, "user_id"),
        twhin_tweet_embeddings=dense(TWHIN_TWEETS, "tweet_id"),
    )


@pytest.fixture(scope="module")
def world(spark):
    frames = _frames(spark, USERS, FOLLOWS, TWEETS, ENGAGEMENTS, SOCIAL)
    frames.update(_user_tweet_inputs(spark))
    frames["candidates"] = spark.createDataFrame(CANDIDATES, CANDIDATE_SCHEMA)
    return frames


@pytest.fixture(scope="module")
def tables(world):
    built = _tables(world)
    built["user_tweet_features"] = fut.user_tweet_features(
        world["candidates"],
        world["simclusters_interested_in"],
        world["simclusters_tweet_embeddings"],
        world["twhin_user_embeddings"],
        world["twhin_tweet_embeddings"],
        as_of=AS_OF,
    )
    return built


@pytest.fixture(scope="module")
def rows(tables):
    """{asset: {key tuple: row dict}}, collected once."""
    out = {}
    for asset, df in tables.items():
        keys = reg.keys_of_asset(asset)
        out[asset] = {tuple(r[k] for k in keys) if len(keys) > 1 else r[keys[0]]: r.asDict() for r in df.collect()}
    return out


def _expect(row: dict, expected: dict) -> None:
    for name, value in expected.items():
        assert row[name] == pytest.approx(value), name


# --- registry --------------------------------------------------------------------------------


def test_registry_declarations_are_valid_and_qualified_names_unique():
    assert len(reg.FEATURES) >= 60
    assert {f.asset for f in reg.FEATURES} == set(reg.ASSETS)
    qualified = [f.qualified_name for f in reg.FEATURES]
    assert len(qualified) == len(set(qualified))
    assert reg.features_for("user_author") == reg.features_of_asset("user_author_features")
    assert [f.name for f in reg.spark_schema_of("user_tweet_features").fields][:2] == ["user_id", "tweet_id"]
    with pytest.raises(ValueError, match="entity"):
        reg.Feature("x", "viewer", "double", 0.0, "", "user_features")
    with pytest.raises(ValueError, match="default"):
        reg.Feature("x", "user", "double", False, "", "user_features")
    with pytest.raises(ValueError, match="does not hold"):
        reg.Feature("x", "user", "double", 0.0, "", "tweet_features")
    with pytest.raises(ValueError, match="twice"):
        reg.check_registry(reg.FEATURES + (reg.FEATURES[0],))


def test_registry_hash_ignores_order_and_wording_but_not_defaults():
    h = reg.registry_hash()
    assert len(h) == 64 and h == reg.registry_hash(tuple(reversed(reg.FEATURES)))
    reworded = tuple(replace(f, description="other words") for f in reg.FEATURES)
    assert reg.registry_hash(reworded) == h
    changed = (replace(reg.FEATURES[0], default=1.0),) + reg.FEATURES[1:]
    assert reg.registry_hash(changed) != h
    assert reg.registry_hash(reg.FEATURES[:-1]) != h


def test_every_table_has_exactly_the_registry_columns_and_types(tables):
    assert set(tables) == set(reg.ASSETS)
    for asset, df in tables.items():
        got = [(f.name, f.dataType) for f in df.schema.fields]
        assert got == [(f.name, f.dataType) for f in reg.spark_schema_of(asset).fields], asset
    produced = {(asset, c) for asset, df in tables.items() for c in df.columns}
    assert all((f.asset, f.name) in produced for f in reg.FEATURES)


# --- per-table values, by hand ---------------------------------------------------------------


def test_user_features_windows_rates_and_defaults(rows):
    users = rows["user_features"]
    assert set(users) == {1, 2, 3, 4}
    _expect(
        users[1],
        dict(
            account_age_days=10.0,
            is_verified=True,
            allow_nsfw=False,
            followee_count=2,
            follower_count=2,
            mutual_count=1,
            tweets_1d=2,
            tweets_7d=2,  # 103 and 105 (deleted later, still posted)
            impressions_1d=1,
            impressions_7d=2,  # the 169-hour-old one is outside
            likes_given_7d=1,
            retweets_given_7d=0,
            replies_given_7d=0,
            clicks_7d=1,
            reports_7d=0,
            like_rate_7d=0.5,
            engagement_rate_7d=1.0,  # like + click over 2 impressions
            avg_dwell_seconds_7d=3.0,  # (3000 + 1000 + 5000) / 3 ms
            days_active_7d=2,  # 2.4 h and 28.5 h ago
            hours_since_last_engagement=2.4,
            blocks_mutes_given=2,
        ),
    )
    _expect(
        users[2],
        dict(
            account_age_days=100.0,
            allow_nsfw=True,
            followee_count=1,
            follower_count=2,
            mutual_count=1,
            tweets_1d=2,
            tweets_7d=3,
            impressions_7d=1,
            likes_given_7d=1,
            reports_7d=1,
            like_rate_7d=1.0,
            avg_dwell_seconds_7d=4.0,
            days_active_7d=1,
            hours_since_last_engagement=2.9,
        ),
    )
    _expect(
        users[3],
        dict(
            account_age_days=2.0,
            follower_count=0,
            mutual_count=0,
            tweets_7d=0,
            impressions_1d=2,
            retweets_given_7d=1,
            not_interested_7d=1,
            like_rate_7d=0.0,
            engagement_rate_7d=0.5,
            avg_dwell_seconds_7d=2.0,
            hours_since_last_engagement=0.4,
            blocks_mutes_given=1,
        ),
    )
    _expect(
        users[4],
        dict(account_age_days=1.5, replies_given_7d=1, avg_dwell_seconds_7d=0.25, engagement_rate_7d=0.5, tweets_1d=1),
    )


def test_user_features_defaults_for_a_user_with_nothing(spark):
    frames = _frames(spark, [(7, 5, False, False)], [], [], [], [])
    (row,) = ft.user_features(
        frames["users"],
        frames["follows"],
        frames["mutual_follows"],
        frames["tweets"],
        frames["engagements"],
        frames["social_actions"],
        as_of=AS_OF,
    ).collect()
    for feature in reg.features_of_asset("user_features"):
        if feature.name != "account_age_days":
            assert row[feature.name] == feature.default, feature.name
    assert row["hours_since_last_engagement"] == -1.0


def test_author_features_received_rates_shares_and_reputation(rows):
    authors = rows["author_features"]
    assert set(authors) == {1, 2, 3, 4}
    # Over 28 days, others' engagement with authors 1 and 2: 7 impressions, 5 engagements, 2 negatives.
    prior_e, prior_n, m, w = 5 / 7, 2 / 7, 100.0, 5.0

    def reputation(impressions, engagements, negatives):
        return (engagements + m * prior_e) / (impressions + m) - w * (negatives + m * prior_n) / (impressions + m)

    _expect(
        authors[1],
        dict(
            follower_count=2,
            followee_count=2,
            is_verified=True,
            tweets_1d=2,
            tweets_7d=2,
            impressions_received_7d=2,
            replies_received_7d=1,
            likes_received_7d=0,
            reply_rate_7d=0.5,
            negative_rate_7d=0.5,
            like_rate_7d=0.0,
            reply_share=0.0,
            retweet_share=0.5,
            media_share=0.0,
            reputation=reputation(2, 1, 1),
        ),
    )
    _expect(
        authors[2],
        dict(
            follower_count=2,
            account_age_days=100.0,
            tweets_1d=2,
            tweets_7d=3,
            impressions_received_7d=4,
            likes_received_7d=1,
            retweets_received_7d=1,
            clicks_received_7d=1,
            like_rate_7d=0.25,
            retweet_rate_7d=0.25,
            reply_rate_7d=0.0,
            negative_rate_7d=0.25,
            reply_share=0.25,
            media_share=0.25,
            blocked_by_count=1,
            muted_by_count=1,
            reputation=reputation(5, 4, 1),  # the 8-day-old tweet's impression and like count in 28 days
        ),
    )
    _expect(authors[3], dict(follower_count=0, tweets_7d=0, blocked_by_count=1, reputation=prior_e - w * prior_n))
    _expect(authors[4], dict(impressions_received_7d=0, media_share=1.0, tweets_1d=1))  # own impression excluded


def test_tweet_features_lookback_deletion_and_short_windows(rows):
    tweets = rows["tweet_features"]
    assert set(tweets) == {100, 101, 102, 103, 106}  # 104 too old, 105 deleted before AS_OF
    _expect(
        tweets[100],
        dict(
            age_hours=3.0,
            has_media=True,
            is_reply=False,
            text_length=11,
            impressions_1h=1,
            impressions_6h=2,
            impressions_24h=2,
            likes_1h=0,
            likes_6h=2,
            likes_24h=2,
            retweets_24h=1,
            like_rate_24h=1.0,
            negative_24h=0,
            author_follower_count=2,
            author_is_verified=False,
        ),
    )
    _expect(tweets[101], dict(age_hours=30.0, text_length=0, impressions_24h=0, like_rate_24h=0.0))
    _expect(tweets[102], dict(is_reply=True, text_length=2, impressions_1h=0, impressions_6h=1, negative_24h=1))
    _expect(
        tweets[103],
        dict(
            is_retweet=True,
            impressions_1h=2,
            replies_24h=1,
            negative_24h=1,
            author_follower_count=2,
            author_is_verified=True,
        ),
    )
    _expect(
        tweets[106], dict(is_nsfw=True, has_video=True, impressions_6h=0, impressions_24h=1, author_follower_count=1)
    )


def test_user_author_features_pairs_follows_and_decay(rows):
    pairs = rows["user_author_features"]
    # follows both ways, interactions with others' tweets, realgraph pairs; no self pairs.
    assert set(pairs) == {(1, 2), (2, 1), (3, 1), (1, 4), (4, 2), (1, 3), (4, 1), (2, 4), (3, 2), (3, 4)}
    _expect(
        pairs[(1, 2)],
        dict(
            realgraph_score=0.9,
            follows_author=True,
            author_follows_user=True,
            is_mutual=True,
            follow_age_days=30.0,
            likes_7d=1,
            clicks_7d=1,
            impressions_7d=2,
            retweets_7d=0,
            likes_decayed=decay(2.4) + decay(168.5),
            clicks_decayed=decay(28.5),
            impressions_decayed=decay(2.5) + decay(29) + decay(169),
            engagements_decayed=decay(2.4) + decay(168.5) + decay(28.5),
            hours_since_last_engagement=2.4,
            ever_replied=False,
            ever_quoted=False,
            ever_retweeted=False,
        ),
    )
    _expect(
        pairs[(3, 2)],
        dict(
            follows_author=False,
            author_follows_user=False,
            follow_age_days=-1.0,
            retweets_7d=1,
            not_interested_7d=1,
            impressions_7d=2,
            not_interested_decayed=decay(1.4),
            hours_since_last_engagement=0.4,
            ever_retweeted=True,
            ever_replied=False,
        ),
    )
    _expect(
        pairs[(4, 1)],
        dict(
            follows_author=False,
            author_follows_user=True,
            is_mutual=False,
            replies_7d=1,
            impressions_7d=1,
            ever_replied=True,
            ever_retweeted=False,
        ),
    )
    _expect(
        pairs[(2, 1)],
        dict(
            follows_author=True,
            follow_age_days=20.0,
            impressions_7d=1,
            engagements_decayed=0.0,
            hours_since_last_engagement=-1.0,
        ),
    )  # a report is no engagement
    _expect(pairs[(3, 4)], dict(realgraph_score=0.2, follows_author=False, likes_7d=0, follow_age_days=-1.0))
    assert pairs[(1, 3)]["author_follows_user"] and not pairs[(1, 3)]["follows_author"]


def test_user_tweet_similarities_against_numpy_and_source_flags(rows):
    pairs = rows["user_tweet_features"]
    assert set(pairs) == {(1, 100), (1, 102), (3, 106), (4, 101)}

    def dense(vector):
        out = np.zeros(10)
        for cluster, score in vector.items():
            out[cluster] = score
        return out

    for (user, tweet), row in pairs.items():
        expected_dot = float(dense(INTERESTED_IN.get(user, {})) @ dense(TWEET_EMBEDDINGS.get(tweet, {})))
        assert row["simclusters_dot"] == pytest.approx(expected_dot), (user, tweet)
    assert pairs[(1, 100)]["simclusters_dot"] == pytest.approx(1.6)
    for user, tweet in ((1, 100), (1, 102)):
        u, t = TWHIN_USERS[user].astype(np.float64), TWHIN_TWEETS[tweet].astype(np.float64)
        assert pairs[(user, tweet)]["twhin_cosine"] == pytest.approx(u @ t / np.linalg.norm(u) / np.linalg.norm(t))
        assert pairs[(user, tweet)]["has_twhin_embedding"] is True
    # A zero user vector and a missing tweet vector: no embedding, the default cosine.
    for key in ((3, 106), (4, 101)):
        assert (pairs[key]["has_twhin_embedding"], pairs[key]["twhin_cosine"]) == (False, 0.0)
    _expect(
        pairs[(1, 100)],
        dict(
            from_in_network=True,
            from_uteg=True,
            from_simclusters=False,
            source_count=2,
            in_network_score=0.7,
            uteg_score=0.3,
            twhin_score=0.0,
            social_proof_count=2,
            is_in_network=True,
            pool_rank=1,
        ),
    )
    _expect(pairs[(1, 102)], dict(from_simclusters=True, from_in_network=False, source_count=1, simclusters_score=0.5))
    _expect(pairs[(3, 106)], dict(from_popular=True, source_count=1, popular_score=0.1, is_in_network=False))
    _expect(pairs[(4, 101)], dict(source_count=0, pool_rank=-1, social_proof_count=0, simclusters_dot=0.0))


def test_user_tweet_pairs_without_candidate_columns_get_defaults(spark, world):
    impressions = spark.createDataFrame([(1, 100, 2)], "user_id bigint, tweet_id bigint, author_id bigint")
    (row,) = fut.user_tweet_features(
        impressions,
        world["simclusters_interested_in"],
        world["simclusters_tweet_embeddings"],
        world["twhin_user_embeddings"],
        world["twhin_tweet_embeddings"],
        as_of=AS_OF,
    ).collect()
    assert row["simclusters_dot"] == pytest.approx(1.6) and row["has_twhin_embedding"]
    assert (row["source_count"], row["pool_rank"], row["from_uteg"], row["uteg_score"]) == (0, -1, False, 0.0)


def test_user_tweet_features_are_the_same_without_broadcasting_user_vectors(world, tables):
    shuffled = fut.user_tweet_features(
        world["candidates"],
        world["simclusters_interested_in"],
        world["simclusters_tweet_embeddings"],
        world["twhin_user_embeddings"],
        world["twhin_tweet_embeddings"],
        as_of=AS_OF,
        config=ft.FeatureConfig(broadcast_user_vectors_max=0),
    )
    assertDataFrameEqual(shuffled, tables["user_tweet_features"], rtol=1e-12)


def test_future_rows_change_nothing(spark, tables):
    """The point-in-time rule: rows stamped at or after as_of, in every timed input, are invisible."""
    future = _frames(
        spark,
        USERS + FUTURE_USERS,
        FOLLOWS + FUTURE_FOLLOWS,
        TWEETS + FUTURE_TWEETS,
        ENGAGEMENTS + FUTURE_ENGAGEMENTS,
        SOCIAL + FUTURE_SOCIAL,
    )
    for asset, with_future in _tables(future).items():
        assertDataFrameEqual(with_future, tables[asset], rtol=1e-12)


def test_naive_as_of_is_refused(world):
    with pytest.raises(ValueError, match="timezone"):
        ft.tweet_features(
            world["users"], world["follows"], world["tweets"], world["engagements"], as_of=AS_OF.replace(tzinfo=None)
        )


# --- assets and CLI --------------------------------------------------------------------------


def test_feature_assets_materialize_on_a_tiny_warehouse(spark, settings, tmp_path, world):
    from deltalake import write_deltalake

    from jobs.delta_io import read_delta
    from orchestration.assets.features import FEATURE_ASSETS
    from orchestration.definitions import ALL_ASSETS
    from orchestration.resource_bindings import resources_from_settings

    run_settings = settings.model_copy(update={"warehouse": tmp_path, "as_of": AS_OF})
    for name, df in world.items():  # deltalake writes the inputs without a Spark job each
        write_deltalake(str(run_settings.tables_dir / name), df.toArrow())
    # The upstream tables load through the IO manager: the graph names them, the selection builds only these.
    result = dg.materialize(ALL_ASSETS, selection=FEATURE_ASSETS, resources=resources_from_settings(run_settings))
    assert result.success
    events = {
        e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()
    }
    assert {name: meta["dagster/row_count"].value for name, meta in events.items()} == {
        "user_features": 4,
        "author_features": 4,
        "tweet_features": 5,
        "user_author_features": 10,
        "user_tweet_features": 4,
    }
    assert all(meta["registry_hash"].value == reg.registry_hash() for meta in events.values())
    stored = read_delta(spark, run_settings.tables_dir / "tweet_features")
    assert stored.columns == [f.name for f in reg.spark_schema_of("tweet_features").fields]
    specs = {key.to_user_string(): spec for asset in FEATURE_ASSETS for key, spec in asset.specs_by_key.items()}
    assert {dep.asset_key.to_user_string() for dep in specs["user_tweet_features"].deps} == {
        "candidates",
        "simclusters_interested_in",
        "simclusters_tweet_embeddings",
        "twhin_user_embeddings",
        "twhin_tweet_embeddings",
        "tweets",
        "engagements",
        "follows",
    }
    # user_tweet_features is one of the full user x candidate tables, built on demand only.
    assert {name: spec.group_name for name, spec in specs.items()} == {
        "user_features": "features",
        "author_features": "features",
        "tweet_features": "features",
        "user_author_features": "features",
        "user_tweet_features": "candidate_tables",
    }


def test_features_command_lists_the_registry(capsys):
    from cli.main import main

    assert main(["features", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["registry_hash"] == reg.registry_hash()
    listed = document["features"]
    assert len(listed) == len(reg.FEATURES)
    assert listed[0] == dict(
        name=reg.FEATURES[0].name,
        entity="user",
        dtype=reg.FEATURES[0].dtype,
        default=reg.FEATURES[0].default,
        description=reg.FEATURES[0].description,
        asset="user_features",
    )
    assert main(["features"]) == 0
    table = capsys.readouterr().out
    assert "twhin_cosine" in table and "user_tweet_features" in table and reg.registry_hash() in table


def test_docs_list_every_feature_in_its_table_section():
    from conftest import REPO_ROOT

    doc = (REPO_ROOT / "docs" / "features.md").read_text()
    for asset in reg.ASSETS:
        section = doc.split(f"#### {asset}\n")[1].split("\n#### ")[0]
        for feature in reg.features_of_asset(asset):
            assert f"| `{feature.name}` | {feature.dtype} |" in section, (
                f"{asset}.{feature.name} missing from docs/features.md"
            )


def test_content_affinity_is_the_cosine_of_tokens_with_the_users_engaged_token_profile(spark):
    import math

    as_of = datetime(2026, 10, 1, tzinfo=UTC)
    tweets = spark.createDataFrame(
        [(1, "#Sports ball game"), (2, "ball @bob cooking"), (3, "#sports"), (4, None), (5, "ball ball")],
        "tweet_id long, text string",
    )
    engagements = spark.createDataFrame(
        [
            (1, 1, "like", as_of - timedelta(days=1)),
            (1, 1, "click", as_of - timedelta(days=1)),  # the same tweet again: counted once
            (1, 3, "retweet", as_of - timedelta(days=2)),
            (1, 3, "impression", as_of - timedelta(days=2)),  # not an engagement
            (1, 2, "like", as_of),  # at as_of: not before it
            (1, 5, "like", as_of - timedelta(days=29)),  # older than the 28-day profile
        ],
        "user_id long, tweet_id long, action string, created_at timestamp",
    )
    pairs = spark.createDataFrame([(1, 2), (1, 3), (1, 4), (2, 1)], "user_id long, tweet_id long")
    got = {
        (r.user_id, r.tweet_id): r.content_affinity
        for r in fut.content_affinity(pairs, tweets, engagements, as_of=as_of).collect()
    }
    # Profile of user 1: #sports 2, ball 1, game 1 (norm sqrt 6); "@bob" is not a token.
    assert set(got) == {(1, 2), (1, 3)}
    assert got[(1, 2)] == pytest.approx(1 / (math.sqrt(6) * math.sqrt(2)))
    assert got[(1, 3)] == pytest.approx(2 / math.sqrt(6))


def test_user_vectors_are_broadcast_up_to_a_share_of_the_driver_memory(spark):
    # 4 GB / 16 / 4 KB a user = 65,536 users; 8 GB twice that; an explicit maximum wins.
    four_gb = 4 * 1024**3
    assert fut.broadcast_users_max(ft.FeatureConfig(), four_gb) == 65_536
    assert fut.broadcast_users_max(ft.FeatureConfig(), 2 * four_gb) == 131_072
    assert fut.broadcast_users_max(ft.FeatureConfig(broadcast_user_vectors_max=0), four_gb) == 0
    assert fut.driver_memory_bytes(spark) == four_gb  # the test session's driver: the default 4g
