"""Candidate generation on tiny hand-made inputs; every expected value is worked out by hand here
(and the TwHIN top-k against a brute-force numpy computation)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import pyarrow as pa
import pytest

from core.contract import RAW_TABLES_BY_NAME
from core.sources import CANDIDATE_SOURCES
from jobs.candidates.blocks import RequestBlock, Retrieved
from jobs.candidates.config import CandidateInputs, CandidatesConfig
from jobs.candidates.indexes import TweetTable, collect_indexes, popular_tweet_scores
from jobs.candidates.kernels import top_k_per_row
from jobs.candidates.merge import merge_block
from jobs.candidates.pipeline import retrieved_candidates
from jobs.candidates.requests import candidate_requests, tweet_pool, tweet_pool_exclusions
from jobs.candidates.sources import SOURCE_FUNCTIONS
from jobs.ingest import spark_schema

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
HALF = 0.5**0.5  # decay factor of half a half-life


def ago(hours: float | None) -> datetime | None:
    return None if hours is None else AS_OF - timedelta(hours=hours)


# --- input builders (hours are "hours before AS_OF"; negative = after it) ----------------------


def _tweets(spark, rows):
    """rows: (tweet_id, author_id, hours_ago[, deleted_hours_ago])"""
    base = dict(
        text=None,
        in_reply_to_tweet_id=None,
        quoted_tweet_id=None,
        retweet_of_tweet_id=None,
        has_media=False,
        has_video=False,
        is_nsfw=False,
        lang="en",
    )
    records = [
        {
            **base,
            "tweet_id": r[0],
            "author_id": r[1],
            "created_at": ago(r[2]),
            "deleted_at": ago(r[3]) if len(r) > 3 else None,
        }
        for r in rows
    ]
    return spark.createDataFrame(records, schema=spark_schema(RAW_TABLES_BY_NAME["tweets"]))


def _follows(spark, rows):
    """rows: (follower_id, followee_id, hours_ago)"""
    return spark.createDataFrame(
        [(a, b, ago(h)) for a, b, h in rows], "follower_id bigint, followee_id bigint, created_at timestamp"
    )


def _engagements(spark, rows):
    """rows: (user_id, tweet_id, action, hours_ago)"""
    return spark.createDataFrame(
        [(u, t, a, ago(h), None) for u, t, a, h in rows],
        "user_id bigint, tweet_id bigint, action string, created_at timestamp, dwell_ms int",
    )


def _social(spark, rows):
    return spark.createDataFrame(
        [(u, t, a, ago(h)) for u, t, a, h in rows],
        "user_id bigint, target_user_id bigint, action string, created_at timestamp",
    )


def _realgraph(spark, rows):
    return spark.createDataFrame(
        [(u, a, float(s), i + 1) for i, (u, a, s) in enumerate(rows)],
        "user_id bigint, author_id bigint, score double, rank int",
    )


def _interested_in(spark, rows):
    return spark.createDataFrame([(u, c, float(s)) for u, c, s in rows], "user_id bigint, cluster_id int, score double")


def _index(spark, rows):
    """rows: (cluster_id, tweet_id, score, rank)"""
    return spark.createDataFrame(
        [(c, t, float(s), r) for c, t, s, r in rows], "cluster_id int, tweet_id bigint, score double, rank int"
    )


def _two_hop(spark, rows):
    return spark.createDataFrame(
        rows, "user_id bigint, candidate_id bigint, social_proof_count int, proof_user_ids array<bigint>, rank int"
    )


def _embeddings(spark, id_column, ids, matrix):
    return spark.createDataFrame(
        [(int(i), [float(x) for x in row]) for i, row in zip(ids, matrix)],
        f"{id_column} bigint, embedding array<float>",
    )


EMPTY_SCHEMAS = {
    "follows": "follower_id bigint, followee_id bigint, created_at timestamp",
    "engagements": "user_id bigint, tweet_id bigint, action string, created_at timestamp, dwell_ms int",
    "social_actions": "user_id bigint, target_user_id bigint, action string, created_at timestamp",
    "users": "user_id bigint, created_at timestamp",
    "realgraph": "user_id bigint, author_id bigint, score double, rank int",
    "follow_graph_two_hop": "user_id bigint, candidate_id bigint, social_proof_count int, proof_user_ids array<bigint>, "
    "rank int",
    "simclusters_interested_in": "user_id bigint, cluster_id int, score double",
    "simclusters_top_tweets_per_cluster": "cluster_id int, tweet_id bigint, score double, rank int",
    "simclusters_known_for": "producer_id bigint, cluster_id int, score double",
    "twhin_user_embeddings": "user_id bigint, embedding array<float>",
    "twhin_tweet_embeddings": "tweet_id bigint, embedding array<float>",
}


def _users(spark, ids, hours=500):
    return spark.createDataFrame([(u, ago(hours)) for u in ids], EMPTY_SCHEMAS["users"])


def _inputs(spark, **tables) -> CandidateInputs:
    """The given tables; the others empty (users: 1-9, created long before AS_OF)."""
    tables.setdefault("users", _users(spark, range(1, 10)))
    tables.setdefault("tweets", _tweets(spark, []))
    for name, schema in EMPTY_SCHEMAS.items():
        tables.setdefault(name, spark.createDataFrame([], schema))
    return CandidateInputs(**tables)


def _retrieve(spark, config, **tables):
    """{user_id: [row, ...] in rank order} of the sources in `config.sources`, before the merge."""
    inputs = _inputs(spark, **tables)
    indexes = collect_indexes(inputs, as_of=AS_OF, config=config)
    requests = candidate_requests(inputs, as_of=AS_OF, config=config)
    out: dict[int, list] = {}
    for r in sorted(
        retrieved_candidates(requests, indexes, config=config).collect(),
        key=lambda r: (r["user_id"], r["source"], r["rank"]),
    ):
        out.setdefault(r["user_id"], []).append(r)
    return out


def _only(source, **overrides):
    return CandidatesConfig(sources=(source,), **overrides)


# --- the tweet pool and the requests -------------------------------------------------------------


def test_tweet_pool_keeps_fresh_undeleted_tweets_up_to_as_of(spark):
    rows = [
        (1, 9, 10),  # fresh
        (2, 9, 73),  # older than 72 h: stale
        (3, 9, -1),  # created after AS_OF
        (4, 9, 10, 5),  # deleted 5 h before AS_OF
        (5, 9, 10, -2),  # deleted only after AS_OF: still there at AS_OF
        (6, 9, 72),  # exactly 72 h old: kept
    ]
    tweets = _tweets(spark, rows)
    assert sorted(r["tweet_id"] for r in tweet_pool(tweets, as_of=AS_OF).collect()) == [1, 5, 6]
    counts = tweet_pool_exclusions(tweets, as_of=AS_OF).first().asDict()
    assert counts == {"future": 1, "stale": 1, "deleted": 1, "eligible": 3}


def test_requests_hold_what_each_user_had_at_as_of(spark):
    inputs = _inputs(
        spark,
        users=_users(spark, [1, 2]).unionByName(_users(spark, [3], hours=-1)),  # 3 joins after AS_OF
        follows=_follows(spark, [(1, 30, 10), (1, 31, -1), (1, 32, 10)]),  # 31: followed after AS_OF
        realgraph=_realgraph(spark, [(1, 30, 0.7)]),
        social_actions=_social(spark, [(1, 20, "block", 5), (1, 21, "mute", 5), (1, 22, "block", -1)]),
        engagements=_engagements(
            spark,
            [
                (1, 8, "impression", 2),
                (1, 9, "like", 1),
                (1, 11, "impression", -1),
                (1, 4, "click", 1),
                (1, 7, "impression", 80),
            ],
        ),
        follow_graph_two_hop=_two_hop(spark, [(1, 41, 2, [30, 32], 1), (1, 42, 1, [30], 2), (1, 43, 1, [32], 3)]),
        simclusters_interested_in=_interested_in(spark, [(1, 5, 0.2), (1, 6, 0.9), (1, 7, 0.2)]),
    )
    config = CandidatesConfig(frs_accounts=2, simclusters_clusters=2, popular_user_communities=1)
    rows = {r["user_id"]: r for r in candidate_requests(inputs, as_of=AS_OF, config=config).collect()}
    assert sorted(rows) == [1, 2]
    one = rows[1]
    assert (one["followed_ids"], one["followed_weights"]) == ([30, 32], [0.7, 0.01])  # RealGraph, else the floor
    assert sorted(one["hidden_author_ids"]) == [20, 21]
    # The click is not "seen"; 11 after AS_OF and 7 (before the freshness window) do not count.
    assert sorted(one["seen_tweet_ids"]) == [8, 9]
    assert (one["two_hop_ids"], one["two_hop_counts"], one["two_hop_proofs"]) == ([41, 42], [2, 1], [[30, 32], [30]])
    assert (one["cluster_ids"], one["cluster_scores"]) == ([6, 5], [0.9, 0.2])  # ties by cluster id
    assert rows[2]["followed_ids"] is None and rows[2]["embedding"] is None


# --- sources ---------------------------------------------------------------------------------------


def test_in_network_scores_realgraph_weight_times_recency(spark):
    # User 1 follows 2 (RealGraph 0.8) and 3 (not in RealGraph: floor 0.01); the follow of 4 is
    # after AS_OF. Half-life 24 h.
    tables = dict(
        follows=_follows(spark, [(1, 2, 100), (1, 3, 100), (1, 4, -1)]),
        realgraph=_realgraph(spark, [(1, 2, 0.8), (1, 9, 0.9)]),
        tweets=_tweets(spark, [(20, 2, 24), (21, 2, 0), (22, 3, 12), (23, 2, 50), (24, 4, 1), (25, 2, 10, 2)]),
    )
    got = _retrieve(spark, _only("in_network"), **tables)
    # 21: 0.8 * 1; 20: 0.8 * 0.5 (one half-life); 22: 0.01 * 0.5 ** 0.5; 23 is older than 48 h,
    # 24's author was followed after AS_OF, 25 was deleted.
    assert [(r["tweet_id"], r["rank"], r["author_id"]) for r in got[1]] == [(21, 1, 2), (20, 2, 2), (22, 3, 3)]
    assert [r["score"] for r in got[1]] == pytest.approx([0.8, 0.4, 0.01 * HALF])
    assert got[1][0]["tweet_created_at"].replace(tzinfo=UTC) == AS_OF
    capped = _retrieve(spark, _only("in_network", in_network_top_k=2), **tables)
    assert [r["tweet_id"] for r in capped[1]] == [21, 20]


def test_uteg_sums_strongest_followees_and_keeps_them_as_proof(spark):
    # User 1 follows 2 (0.9), 3 (0.5) and 4 (0.1); the 2 strongest are 2 and 3.
    got = _retrieve(
        spark,
        _only("uteg", uteg_followees=2),
        follows=_follows(spark, [(1, 2, 100), (1, 3, 100), (1, 4, 100)]),
        realgraph=_realgraph(spark, [(1, 2, 0.9), (1, 3, 0.5), (1, 4, 0.1)]),
        engagements=_engagements(
            spark,
            [
                (3, 30, "retweet", 2),
                (2, 30, "like", 1),
                (3, 30, "reply", 1),  # 30: engaged by 3 and 2
                (2, 31, "like", 5),  # 31: by 2
                (4, 32, "like", 1),  # 4 is not among the 2 strongest
                (2, 33, "like", 30),  # outside the 24 h window
                (3, 34, "click", 1),  # not an engagement UTEG counts
                (2, 35, "like", 1),  # 35 is stale: not in the pool
                (2, 36, "like", -1),  # after AS_OF
            ],
        ),
        tweets=_tweets(
            spark, [(30, 7, 10), (31, 7, 10), (32, 7, 10), (33, 7, 40), (34, 7, 10), (35, 7, 80), (36, 7, 3)]
        ),
    )
    # 30: 0.9 + 0.5 (3 counted once), proofs strongest first; 31: 0.9.
    assert [(r["tweet_id"], r["proof_user_ids"], r["proof_count"], r["rank"]) for r in got[1]] == [
        (30, [2, 3], 2, 1),
        (31, [2], 1, 2),
    ]
    assert [r["score"] for r in got[1]] == pytest.approx([1.4, 0.9])


def test_frs_scores_social_proof_with_recency(spark):
    got = _retrieve(
        spark,
        _only("frs", frs_accounts=2),
        follow_graph_two_hop=_two_hop(spark, [(1, 7, 3, [2, 3, 4], 1), (1, 8, 1, [5], 2), (1, 9, 5, [2], 3)]),
        tweets=_tweets(spark, [(40, 7, 24), (41, 8, 0), (42, 9, 0), (43, 7, 60)]),
    )
    # 40: 3 * 0.5; 41: 1 * 1; account 9 has two-hop rank 3 > 2; 43 is older than 48 h.
    assert [(r["tweet_id"], r["proof_user_ids"], r["proof_count"]) for r in got[1]] == [
        (40, [2, 3, 4], 3),
        (41, [5], 1),
    ]
    assert [r["score"] for r in got[1]] == pytest.approx([1.5, 1.0])


SIMCLUSTERS_INTERESTS = [
    (1, 1, 0.8),
    (1, 2, 0.6),
    (1, 3, 0.1),  # user 1's two best clusters: 1 and 2
    (2, 4, 1.0),  # user 2: tie between tweets 60 and 61
    (3, 5, 1.0),
    (3, 6, 1.0),  # user 3: tweet 70 gets equal shares from 5 and 6
]
SIMCLUSTERS_INDEX = [
    (1, 50, 1.0, 1),
    (1, 51, 0.5, 2),
    (1, 55, 0.1, 3),
    (1, 54, 0.4, 4),
    (2, 51, 2.0, 1),
    (2, 52, 0.5, 2),
    (3, 53, 10.0, 1),
    (4, 61, 1.0, 1),
    (4, 60, 1.0, 2),
    (5, 70, 0.5, 1),
    (6, 70, 0.5, 1),
]
SIMCLUSTERS_TWEETS = [
    (50, 9, 1),
    (51, 9, 1),
    (52, 9, 1),
    (53, 9, 1),
    (54, 9, 80),
    (55, 9, 1),
    (60, 9, 1),
    (61, 9, 1),
    (70, 9, 1),
]


def test_simclusters_sums_interest_times_index_score(spark):
    tables = dict(
        simclusters_interested_in=_interested_in(spark, SIMCLUSTERS_INTERESTS),
        simclusters_top_tweets_per_cluster=_index(spark, SIMCLUSTERS_INDEX),
        tweets=_tweets(spark, SIMCLUSTERS_TWEETS),
    )
    got = _retrieve(spark, _only("simclusters", simclusters_clusters=2, block_users=1), **tables)
    # User 1: 51 = 0.8 * 0.5 + 0.6 * 2.0 = 1.6 (mostly cluster 2); 50 = 0.8 * 1.0; 52 = 0.6 * 0.5;
    # 55 = 0.8 * 0.1; 53 is in cluster 3 (not among the best two); 54 is stale.
    assert [(r["tweet_id"], r["cluster_id"], r["rank"]) for r in got[1]] == [
        (51, 2, 1),
        (50, 1, 2),
        (52, 2, 3),
        (55, 1, 4),
    ]
    assert [r["score"] for r in got[1]] == pytest.approx([1.6, 0.8, 0.3, 0.08])
    assert [(r["tweet_id"], r["score"]) for r in got[2]] == [(60, 1.0), (61, 1.0)]  # tie: smaller tweet id first
    assert [(r["tweet_id"], r["score"], r["cluster_id"]) for r in got[3]] == [(70, 1.0, 5)]  # tie: smaller cluster
    shallow = _retrieve(
        spark,
        _only("simclusters", simclusters_clusters=2, simclusters_tweets_per_cluster=2, simclusters_top_k=2),
        **tables,
    )
    # 55 (rank 3 in cluster 1) is below the depth; the cap keeps 51 and 50.
    assert [r["tweet_id"] for r in shallow[1]] == [51, 50]


def test_popular_global_and_community_backfill(spark):
    # Authors 100 (cluster 1), 101 and 102 (cluster 2), 103 (no cluster). Half-life 12 h.
    tweets = _tweets(spark, [(80, 100, 20), (81, 101, 20), (82, 102, 20), (83, 103, 20), (84, 100, 80)])
    engagements = _engagements(
        spark,
        [
            (5, 80, "like", 0),
            (6, 80, "like", 0),
            (7, 80, "quote", 0),  # 80: 3.0
            (5, 81, "like", 12),
            (6, 81, "like", 12),  # 81: 2 * 0.5 = 1.0
            (5, 82, "retweet", 0),
            (6, 82, "impression", 0),  # 82: 1.0 (impressions do not count)
            (5, 83, "reply", 0),
            (6, 83, "like", -1),  # 83: 1.0 (the later like does not count)
            (5, 84, "like", 0),  # 84 is stale
        ],
    )
    config = _only("popular", popular_global_k=1, popular_per_community_k=1, popular_user_communities=1)
    pool = tweet_pool(tweets, as_of=AS_OF)
    scores = {
        r["tweet_id"]: r["score"] for r in popular_tweet_scores(engagements, pool, as_of=AS_OF, config=config).collect()
    }
    assert scores == pytest.approx({80: 3.0, 81: 1.0, 82: 1.0, 83: 1.0})
    got = _retrieve(
        spark,
        config,
        tweets=tweets,
        engagements=engagements,
        users=_users(spark, [1, 2, 3]).unionByName(_users(spark, [4], hours=-1)),
        simclusters_known_for=spark.createDataFrame(
            [(100, 1, 1.0), (101, 2, 1.0), (102, 2, 1.0)], EMPTY_SCHEMAS["simclusters_known_for"]
        ),
        simclusters_interested_in=_interested_in(spark, [(1, 2, 0.9), (1, 1, 0.5), (2, 1, 1.0)]),
    )
    # Global top 1: 80. Community 1's best: 80; community 2's: 81 (tie with 82, smaller id).
    # User 1's best community is 2; user 2's is 1 (80 again, once); user 3 has none; user 4 does
    # not exist yet at AS_OF.
    assert {u: [(r["tweet_id"], r["score"], r["rank"]) for r in rows] for u, rows in got.items()} == {
        1: [(80, 3.0, 1), (81, 1.0, 2)],
        2: [(80, 3.0, 1)],
        3: [(80, 3.0, 1)],
    }


def test_every_candidate_source_has_a_function():
    assert set(SOURCE_FUNCTIONS) == set(CANDIDATE_SOURCES)


def test_top_k_per_row_is_exact_with_ties_by_column():
    scores = np.array([[1.0, 3.0, 3.0, 2.0, 3.0], [0.5, -np.inf, -np.inf, -np.inf, -np.inf]], dtype=np.float32)
    rows, cols, values, ranks = top_k_per_row(scores, 2)
    assert rows.tolist() == [0, 0, 1]
    assert cols.tolist() == [1, 2, 0]  # three 3.0s: the two lowest columns; -inf never selected
    assert values.tolist() == [3.0, 3.0, 0.5]
    assert ranks.tolist() == [1, 2, 1]


def test_twhin_exact_top_k_matches_brute_force(spark):
    rng = np.random.default_rng(3)
    users = np.arange(1, 8)
    tweet_ids = np.arange(100, 160)
    authors = rng.choice(np.arange(1, 12), size=tweet_ids.shape[0])  # some by the users themselves
    hours = rng.choice([1.0, 30.0, 100.0], size=tweet_ids.shape[0])  # 100 h: not in the pool
    dim = 8
    user_matrix = rng.standard_normal((users.shape[0], dim)).astype(np.float32)
    tweet_matrix = rng.standard_normal((tweet_ids.shape[0], dim)).astype(np.float32)
    k = 5
    # Three users per block and two per matrix product: the blocking must not change the result.
    config = _only("twhin", twhin_top_k=k, block_users=3, twhin_block_scores=2 * int((hours <= 72).sum()))
    got = _retrieve(
        spark,
        config,
        tweets=_tweets(spark, [(int(t), int(a), float(h)) for t, a, h in zip(tweet_ids, authors, hours)]),
        twhin_user_embeddings=_embeddings(spark, "user_id", users, user_matrix),
        twhin_tweet_embeddings=_embeddings(spark, "tweet_id", tweet_ids, tweet_matrix),
    )
    assert sorted(got) == users.tolist()
    for i, user in enumerate(users):
        eligible = (hours <= 72) & (authors != user)
        scores = tweet_matrix[eligible].astype(np.float64) @ user_matrix[i].astype(np.float64)
        best = sorted(zip(-scores, tweet_ids[eligible]))[:k]
        assert [r["tweet_id"] for r in got[user]] == [int(t) for _, t in best], user
        assert [r["score"] for r in got[user]] == pytest.approx([-s for s, _ in best], rel=1e-5)
        assert [r["rank"] for r in got[user]] == list(range(1, k + 1))


# --- merge, filters, caps (numpy, hand-made source rows) -------------------------------------------

REQUEST_ARROW = pa.schema(
    [
        ("user_id", pa.int64()),
        ("followed_ids", pa.list_(pa.int64())),
        ("followed_weights", pa.list_(pa.float64())),
        ("two_hop_ids", pa.list_(pa.int64())),
        ("two_hop_counts", pa.list_(pa.int32())),
        ("two_hop_proofs", pa.list_(pa.list_(pa.int64()))),
        ("cluster_ids", pa.list_(pa.int64())),
        ("cluster_scores", pa.list_(pa.float64())),
        ("embedding", pa.list_(pa.float32())),
        ("hidden_author_ids", pa.list_(pa.int64())),
        ("seen_tweet_ids", pa.list_(pa.int64())),
    ]
)


def _block(*users):
    return RequestBlock.from_arrow(pa.Table.from_pylist(list(users), schema=REQUEST_ARROW))


# Tweets 1-12 (column = id - 1) and their authors.
MERGE_AUTHORS = {1: 30, 2: 31, 3: 32, 4: 34, 5: 1, 6: 20, 7: 21, 8: 33, 9: 33, 10: 22, 11: 35, 12: 36}
MERGE_TWEETS = TweetTable(
    tweet_ids=np.array(list(MERGE_AUTHORS), dtype=np.int64),
    author_ids=np.array(list(MERGE_AUTHORS.values()), dtype=np.int64),
    created_us=np.arange(len(MERGE_AUTHORS), dtype=np.int64) * 1000,
)


def _rows(source, tweets, *, user_row=0, proofs=None, counts=None, clusters=None):
    """A source's rows for one user: `tweets` in rank order; score = 10 - rank."""
    ranks = np.arange(1, len(tweets) + 1, dtype=np.int32)
    extra = {}
    if proofs is not None:
        extra = dict(
            proof_offsets=np.r_[0, np.cumsum([len(p) for p in proofs])].astype(np.int64),
            proof_ids=np.array([i for p in proofs for i in p], dtype=np.int64),
            proof_counts=np.array(counts, dtype=np.int64),
        )
    if clusters is not None:
        extra["clusters"] = np.array(clusters, dtype=np.int64)
    return Retrieved(
        source, np.full(len(tweets), user_row, dtype=np.int64), np.array(tweets) - 1, 10.0 - ranks, ranks, **extra
    )


def _merged(block, retrieved, config):
    return {
        r["tweet_id"]: r
        for r in pa.Table.from_batches([merge_block(block, retrieved, MERGE_TWEETS, config)]).to_pylist()
    }


def test_merge_keeps_every_source_filters_and_interleaves():
    config = CandidatesConfig(
        in_network_top_k=8, twhin_top_k=2, uteg_top_k=3, frs_top_k=1, max_proofs=2, max_candidates_per_user=3
    )
    # User 1 follows 30; blocked 20, muted 21; saw 8 and 9.
    block = _block(
        dict(
            user_id=1, followed_ids=[30], followed_weights=[0.5], hidden_author_ids=[20, 21], seen_tweet_ids=[8, 9, 99]
        )
    )
    retrieved = [
        _rows("in_network", [1, 2, 3, 5, 6, 7, 8, 9]),  # 5: own tweet; 6, 7: hidden authors; 8, 9: seen
        _rows("uteg", [3], proofs=[[7, 8]], counts=[2]),
        _rows("twhin", [2, 4, 10, 11]),
        _rows("frs", [3], proofs=[[8, 9]], counts=[4]),
        _rows("simclusters", [12], clusters=[44]),
    ]
    got = _merged(block, retrieved, config)
    assert {t: r["filtered_by"] for t, r in got.items()} == {
        1: None,
        2: None,
        3: "total_cap",
        4: "total_cap",
        5: "self",
        6: "blocked_muted",
        7: "blocked_muted",
        8: "seen",
        9: "seen",
        10: "total_cap",
        11: "total_cap",
        12: None,
    }
    three = got[3]
    assert three["sources"] == ["frs", "in_network", "uteg"]
    assert (three["in_network_score"], three["uteg_score"], three["frs_score"], three["twhin_score"]) == (
        7.0,
        9.0,
        9.0,
        None,
    )
    assert (three["in_network_rank"], three["uteg_rank"], three["frs_rank"], three["twhin_rank"]) == (3, 1, 1, None)
    # Proofs: uteg's [7, 8] then frs's [8, 9], deduplicated and cut at 2; the count is the larger
    # of the union's size (3) and frs's own count (4).
    assert (three["social_proof_user_ids"], three["social_proof_count"]) == ([7, 8], 4)
    assert (got[1]["is_in_network"], got[2]["is_in_network"]) == (True, False)
    assert (got[1]["social_proof_user_ids"], got[1]["social_proof_count"]) == ([], 0)
    assert (got[12]["simclusters_cluster_id"], got[1]["simclusters_cluster_id"]) == (44, None)
    assert got[2]["sources"] == ["in_network", "twhin"] and got[2]["twhin_score"] == 9.0

    # Interleaving key = min over sources of rank / cap:
    #   1: 1/8;  2: min(2/8, 1/2) = 1/4;  3: min(3/8, 1/3, 1/1) = 1/3;  12: 1/400;  4: 2/2 = 1;
    #   10: 3/2;  11: 4/2.
    uncapped = _merged(block, retrieved, CandidatesConfig(in_network_top_k=8, twhin_top_k=2, uteg_top_k=3, frs_top_k=1))
    ranked = sorted((r["pool_rank"], t) for t, r in uncapped.items() if r["filtered_by"] is None)
    assert [t for _, t in ranked] == [12, 1, 2, 3, 4, 10, 11]
    # Capped at 3: 12, 1, 2 stay, ranked 1-3.
    assert sorted((r["pool_rank"], t) for t, r in got.items() if r["filtered_by"] is None) == [(1, 12), (2, 1), (3, 2)]

    keep_seen = CandidatesConfig(exclude_seen=False)
    assert {t for t, r in _merged(block, retrieved, keep_seen).items() if r["filtered_by"] is None} == {
        1,
        2,
        3,
        4,
        8,
        9,
        10,
        11,
        12,
    }


def test_interleaving_ties_break_by_tweet_id_and_users_stay_apart():
    # 2/6 and 1/3 are the same key: the smaller tweet id goes first. User 2's rows are its own.
    config = CandidatesConfig(in_network_top_k=6, uteg_top_k=3)
    block = _block(dict(user_id=1), dict(user_id=2))
    retrieved = [
        Retrieved(
            "in_network",
            np.array([0, 0, 1]),
            np.array([8, 7, 7]),
            np.array([2.0, 1.0, 5.0]),
            np.array([1, 2, 1], dtype=np.int32),
        ),
        _rows("uteg", [7], proofs=[[5]], counts=[1]),
    ]
    batch = pa.Table.from_batches([merge_block(block, retrieved, MERGE_TWEETS, config)]).to_pylist()
    assert sorted((r["user_id"], r["pool_rank"], r["tweet_id"]) for r in batch) == [
        (1, 1, 9),
        (1, 2, 7),
        (1, 3, 8),
        (2, 1, 8),
    ]
    assert [r["social_proof_user_ids"] for r in batch if (r["user_id"], r["tweet_id"]) == (2, 8)] == [[]]


# --- the asset -----------------------------------------------------------------------------------


def test_asset_is_one_table_with_its_inputs_as_deps():
    from orchestration.assets.candidates import CANDIDATE_ASSETS

    specs = {spec.key.to_user_string(): spec for a in CANDIDATE_ASSETS for spec in a.specs}
    assert set(specs) == {"candidates"}
    assert specs["candidates"].group_name == "candidate_tables"  # on demand, not in the default build
    assert {d.asset_key.to_user_string() for d in specs["candidates"].deps} == {
        "tweets",
        "follows",
        "engagements",
        "social_actions",
        "users",
        "realgraph",
        "follow_graph_two_hop",
        "simclusters_interested_in",
        "simclusters_top_tweets_per_cluster",
        "simclusters_known_for",
        "twhin_user_embeddings",
        "twhin_tweet_embeddings",
    }


def test_asset_config_is_candidates_config_with_its_defaults():
    """The launchpad's fields are CandidatesConfig's, with its defaults (tuples as lists), and the
    run config comes back as a CandidatesConfig."""
    from dataclasses import asdict

    from orchestration.assets.candidates import CandidatesParams, candidates_asset

    defaults = asdict(CandidatesConfig())
    fields = candidates_asset.op.config_schema.config_type.fields
    assert set(fields) == set(defaults)
    assert {name: f.default_value for name, f in fields.items()} == {
        name: list(value) if isinstance(value, tuple) else value for name, value in defaults.items()
    }
    chosen = CandidatesParams(sources=["twhin"], seen_actions=["like"], max_proofs=2).to_dataclass()
    assert chosen == CandidatesConfig(sources=("twhin",), seen_actions=("like",), max_proofs=2)


def test_asset_materializes_on_a_tiny_warehouse(spark, settings, tmp_path):
    """Users 1-5; 1 follows 2 and 3, 2 follows 1 and muted 3. Every source finds something for 1."""
    from jobs.delta_io import read_delta
    from models.twhin.export import embeddings_table, write_delta
    from orchestration.assets.candidates import CANDIDATE_ASSETS
    from orchestration.resource_bindings import resources_from_settings

    run_settings = settings.model_copy(update={"warehouse": tmp_path, "as_of": AS_OF})
    tables = run_settings.tables_dir

    def write_table(df, path):  # deltalake writes the inputs faster than Spark's Delta writer
        write_delta(path, df.toArrow())

    users = [(u, ago(500)) for u in (1, 2, 3, 4, 5)]
    write_table(spark.createDataFrame(users, "user_id bigint, created_at timestamp"), tables / "users")
    write_table(_follows(spark, [(1, 2, 100), (1, 3, 100), (2, 1, 100)]), tables / "follows")
    write_table(
        _tweets(
            spark,
            [
                (10, 2, 1),  # in-network for 1, but 1 has seen it
                (11, 3, 2),  # in-network for 1, liked by 2 (uteg for 1), the only popular tweet
                (12, 4, 3),  # by 4, 1's two-hop account (frs), and in the SimClusters index
                (13, 1, 1),  # user 1's own tweet: in-network for 2
                (14, 2, 5, 1),  # deleted (liked by 2, in the index)
                (15, 2, 80),  # stale (liked by 2)
                (16, 5, 4),  # only TwHIN finds it
            ],
        ),
        tables / "tweets",
    )
    write_table(
        _engagements(spark, [(2, 11, "like", 1), (2, 14, "like", 2), (2, 15, "like", 3), (1, 10, "impression", 0.5)]),
        tables / "engagements",
    )
    write_table(_social(spark, [(2, 3, "mute", 10)]), tables / "social_actions")
    write_table(_realgraph(spark, [(1, 2, 0.9), (1, 3, 0.2)]), tables / "realgraph")
    write_table(_two_hop(spark, [(1, 4, 1, [2], 1)]), tables / "follow_graph_two_hop")
    write_table(_interested_in(spark, [(1, 7, 1.0)]), tables / "simclusters_interested_in")
    write_table(_index(spark, [(7, 12, 0.5, 1), (7, 14, 0.9, 2)]), tables / "simclusters_top_tweets_per_cluster")
    write_table(
        spark.createDataFrame([(3, 7, 1.0)], "producer_id bigint, cluster_id int, score double"),
        tables / "simclusters_known_for",
    )
    # User 1's vector scores 16 at 2, its own 13 at 5 (excluded), 10-12 at -1 (ties: by tweet id).
    write_delta(tables / "twhin_user_embeddings", embeddings_table(np.array([1]), np.array([[1.0, 0.0]]), "user_id"))
    write_delta(
        tables / "twhin_tweet_embeddings",
        embeddings_table(
            np.array([10, 11, 12, 13, 16]), np.array([[-1.0, 0], [-1.0, 0], [-1.0, 0], [5.0, 0], [2.0, 0]]), "tweet_id"
        ),
    )

    result = dg.materialize(CANDIDATE_ASSETS, resources=resources_from_settings(run_settings))
    assert result.success
    got = {(r["user_id"], r["tweet_id"]): r for r in read_delta(spark, tables / "candidates").collect()}
    # (1, 10) seen; (2, 11) muted author; (3, 11) own tweet.
    assert sorted(got) == [(1, 11), (1, 12), (1, 16), (2, 13), (4, 11), (5, 11)]
    one = got[(1, 11)]
    assert one["sources"] == ["in_network", "popular", "twhin", "uteg"]
    assert (one["in_network_rank"], one["twhin_rank"], one["uteg_rank"], one["popular_rank"]) == (2, 3, 1, 1)
    assert one["uteg_score"] == pytest.approx(0.9)
    assert one["popular_score"] == pytest.approx(0.5 ** (1 / 12))
    assert one["in_network_score"] == pytest.approx(0.2 * 0.5 ** (2 / 24))
    assert (one["social_proof_user_ids"], one["social_proof_count"], one["is_in_network"]) == ([2], 1, True)
    twelve = got[(1, 12)]
    assert twelve["sources"] == ["frs", "simclusters", "twhin"]
    assert (twelve["simclusters_cluster_id"], twelve["simclusters_score"]) == (7, 0.5)
    assert (twelve["social_proof_user_ids"], twelve["is_in_network"]) == ([2], False)
    assert got[(1, 16)]["sources"] == ["twhin"] and got[(1, 16)]["twhin_score"] == pytest.approx(2.0)
    assert got[(2, 13)]["is_in_network"] is True
    # Keys: 12 = min(twhin 4/400, simclusters 1/400, frs 1/100) = 1/400; 16 = twhin 1/400 (tie:
    # smaller id first); 11 = min(in_network 2/600, twhin 3/400, uteg 1/300, popular 1/200) = 1/300.
    assert sorted((r["pool_rank"], t) for (u, t), r in got.items() if u == 1) == [(1, 12), (2, 16), (3, 11)]
    assert {r["built_at"].replace(tzinfo=UTC) for r in got.values()} == {AS_OF}

    metadata = result.asset_materializations_for_node("candidates")[0].metadata
    assert metadata["dagster/row_count"].value == 6
    assert metadata["removed_by_filter"].value == {"self": 1, "blocked_muted": 1, "seen": 1, "total_cap": 0}
    assert metadata["retrieved_per_source"].value == {
        "in_network": 3,
        "uteg": 1,
        "simclusters": 1,
        "twhin": 4,
        "frs": 1,
        "popular": 5,
    }
    assert metadata["kept_per_source"].value == {
        "in_network": 2,
        "uteg": 1,
        "simclusters": 1,
        "twhin": 3,
        "frs": 1,
        "popular": 3,
    }
    assert metadata["tweet_pool"].value == {"future": 0, "stale": 1, "deleted": 1, "eligible": 5}
