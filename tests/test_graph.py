"""Follow-graph expansions and RealGraph on tiny hand-made graphs, expected values worked by hand."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import timedelta

import numpy as np
import pytest
from raw_world import AS_OF, at

from core.contract import RAW_TABLES_BY_NAME
from core.graph_eval import follow_recall_at_k, normalized_mutual_information, roc_auc
from features.realgraph import (
    RealGraphConfig,
    fixed_weight_score,
    interaction_features,
    next_period_labels,
    user_author_interactions,
)
from jobs import follow_graph
from jobs.follow_graph import TwoHopConfig, follow_graph_two_hop, mutual_follows, user_follow_counts
from jobs.ingest import spark_schema


def _follows(spark, pairs, hours=None):
    rows = [
        dict(follower_id=a, followee_id=b, created_at=at(hours[i] if hours else i)) for i, (a, b) in enumerate(pairs)
    ]
    return spark.createDataFrame(rows, schema=spark_schema(RAW_TABLES_BY_NAME["follows"]))


def test_two_hop_counts_proofs_and_exclusions(spark):
    # 1 follows 2, 3, 4; 2 and 3 follow 5; 4 follows 5 and 6; 2 follows 3 (already followed by 1);
    # 3 follows 1 (the user itself).
    follows = _follows(spark, [(1, 2), (1, 3), (1, 4), (2, 5), (3, 5), (4, 5), (4, 6), (2, 3), (3, 1)])
    rows = {(r["user_id"], r["candidate_id"]): r for r in follow_graph_two_hop(follows).collect()}
    user_1 = sorted(
        (c, r["social_proof_count"], list(r["proof_user_ids"]), r["rank"]) for (u, c), r in rows.items() if u == 1
    )
    assert user_1 == [(5, 3, [2, 3, 4], 1), (6, 1, [4], 2)]
    # 2 reaches 1 through 3; 5 follows nobody.
    assert sorted(c for (u, c) in rows if u == 2) == [1]


def test_two_hop_caps_bound_the_fan_out(spark):
    # A celebrity 100 followed by users 1..3, following 10 accounts; each user also follows 200.
    pairs = [(u, 100) for u in (1, 2, 3)] + [(100, 1000 + i) for i in range(10)] + [(u, 200) for u in (1, 2, 3)]
    pairs += [(200, 2000)]
    follows = _follows(spark, pairs)
    config = TwoHopConfig(max_intermediates_per_user=1, max_followees_per_intermediate=4, max_proofs=2)
    result = follow_graph_two_hop(follows, config=config).collect()
    per_user = {u: [r for r in result if r["user_id"] == u] for u in (1, 2, 3)}
    for user, rows in per_user.items():
        # One intermediate (the most recent follow: 200), whose one followee is 2000.
        assert [(r["candidate_id"], r["proof_user_ids"]) for r in rows] == [(2000, [200])], user
    config = TwoHopConfig(max_intermediates_per_user=2, max_followees_per_intermediate=4)
    via_celebrity = [r for r in follow_graph_two_hop(follows, config=config).collect() if r["user_id"] == 1]
    assert len([r for r in via_celebrity if r["candidate_id"] >= 1000 and r["candidate_id"] < 2000]) == 4
    sampled = {
        frozenset(
            r["candidate_id"]
            for r in follow_graph_two_hop(follows, config=config).collect()
            if r["user_id"] == u and r["candidate_id"] < 2000
        )
        for u in (1, 2, 3)
    }
    assert len(sampled) == 1  # every follower of the celebrity sees the same sample


def test_two_hop_ranks_ties_on_count_by_candidate_id(spark):
    # 1 follows 2 and 3; both follow 40 and 50 (two proofs each), 2 also follows 10, 3 also 30.
    pairs = [(1, 2), (1, 3), (2, 50), (2, 40), (2, 10), (3, 50), (3, 40), (3, 30)]
    rows = follow_graph_two_hop(_follows(spark, pairs), config=TwoHopConfig(top_k=3)).where("user_id = 1").collect()
    ranked = sorted((r["rank"], r["candidate_id"], r["social_proof_count"], list(r["proof_user_ids"])) for r in rows)
    assert ranked == [(1, 40, 2, [2, 3]), (2, 50, 2, [2, 3]), (3, 10, 1, [2])]  # 30 ties with 10, ranks 4th


def _random_follows(spark, users: int, seed: int, hubs: int = 10):
    """A skewed random graph: heavy-tailed out-degrees, popular accounts (the first ids), the `hubs`
    most popular following a few of each other, ids of any sign, and follow times on a coarse grid
    (ties in recency)."""
    rng = np.random.default_rng(seed)
    ids = rng.choice(2**40, size=users, replace=False).astype(np.int64) - 2**39
    degrees = np.minimum(rng.pareto(1.2, size=users) * 4 + 1, users - 1).astype(int)
    popularity = 1.0 / np.arange(1, users + 1) ** 0.9
    popularity /= popularity.sum()
    edges = set()
    for follower, degree in enumerate(degrees):
        if follower < hubs:
            chosen = rng.choice(hubs, size=rng.integers(2, 8), replace=False)
        else:
            chosen = rng.choice(users, size=degree, replace=False, p=popularity)
        edges.update((int(ids[follower]), int(ids[followee])) for followee in chosen if followee != follower)
    rows = [dict(follower_id=a, followee_id=b, created_at=at(int(rng.integers(0, 40)))) for a, b in sorted(edges)]
    return spark.createDataFrame(rows, schema=spark_schema(RAW_TABLES_BY_NAME["follows"]))


def _two_hop_reference(edges: list, config: TwoHopConfig) -> set[tuple]:
    """The documented semantics in plain Python, from (follower, followee, created_at, hash) rows
    (the hash is Spark's xxhash64 of the pair): {(user, candidate, count, proofs, rank)}."""
    followees = defaultdict(list)
    for edge in edges:
        followees[edge[0]].append(edge)
    sample = {
        v: [w for _, w, _, _ in sorted(out, key=lambda e: (e[3], e[1]))[: config.max_followees_per_intermediate]]
        for v, out in followees.items()
    }
    expected = set()
    for user, out in followees.items():
        by_followee = sorted(out, key=lambda e: e[1])
        recent = [v for _, v, _, _ in sorted(by_followee, key=lambda e: e[2], reverse=True)]  # stable: ties by id
        proofs = defaultdict(list)
        for v in recent[: config.max_intermediates_per_user]:
            for w in sample.get(v, []):
                proofs[w].append(v)
        followed = {v for _, v, _, _ in out}
        counted = [
            (-len(via), w, sorted(via)[: config.max_proofs])
            for w, via in proofs.items()
            if w != user and w not in followed and len(via) >= config.min_social_proof
        ]
        for rank, (count, w, proof) in enumerate(sorted(counted)[: config.top_k], start=1):
            expected.add((user, w, -count, tuple(proof), rank))
    return expected


@pytest.mark.parametrize(("min_social_proof", "block_users"), [(1, 7), (2, follow_graph.BLOCK_USERS)])
def test_two_hop_matches_a_reference_on_a_random_graph(spark, monkeypatch, min_social_proof, block_users):
    from pyspark.sql import functions as F

    monkeypatch.setattr(follow_graph, "BLOCK_USERS", block_users)  # 7: many blocks per Arrow batch

    follows = _random_follows(spark, users=300, seed=11)
    edges = [
        tuple(r)
        for r in follows.select(
            "follower_id", "followee_id", "created_at", F.xxhash64("follower_id", "followee_id")
        ).collect()
    ]
    config = TwoHopConfig(
        max_intermediates_per_user=5,
        max_followees_per_intermediate=4,
        max_proofs=3,
        top_k=7,
        min_social_proof=min_social_proof,
    )
    result = follow_graph_two_hop(follows, config=config)
    assert result.schema.simpleString() == (
        "struct<user_id:bigint,candidate_id:bigint,social_proof_count:int,proof_user_ids:array<bigint>,rank:int>"
    )
    assert [(f.nullable, getattr(f.dataType, "containsNull", None)) for f in result.schema.fields] == [
        (False, None),
        (False, None),
        (False, None),
        (False, False),
        (False, None),
    ]
    got = [(r[0], r[1], r[2], tuple(r[3]), r[4]) for r in result.collect()]
    expected = _two_hop_reference(edges, config)
    assert len(got) == len(set(got))
    assert set(got) == expected
    # The caps bind: some user follows more accounts than it expands through, some intermediate
    # more than its sample, some candidate has more proofs than are kept, some user more candidates.
    out_degrees = Counter(e[0] for e in edges)
    assert max(out_degrees.values()) > config.max_followees_per_intermediate + config.max_intermediates_per_user
    assert max(count for _, _, count, _, _ in expected) > config.max_proofs
    assert min_social_proof > 1 or max(Counter(u for u, *_ in expected).values()) == config.top_k
    assert min_social_proof == 1 or min(count for _, _, count, _, _ in expected) == min_social_proof


def test_two_hop_kernel_is_the_same_for_ids_anywhere_in_int64():
    # Small ids pack (row, candidate) into one key directly; ids spread over the whole int64 range
    # do not, and go through their ranks: the same rows, in the same order, either way.
    from jobs.two_hop_kernel import Paths, two_hop_block

    rng = np.random.default_rng(5)
    rows, via, candidates = np.sort(rng.integers(0, 6, 400)), rng.integers(0, 40, 400), rng.integers(0, 40, 400)
    followed_rows, followed = np.repeat(np.arange(6), 3), rng.integers(0, 40, 18)
    user_ids = np.arange(6) * 7

    def spread(ids):
        return ids.astype(np.int64) * 2**57 - 2**62

    caps = dict(max_proofs=3, top_k=5, min_social_proof=1)
    small = two_hop_block(user_ids, Paths(rows, via, candidates), followed_rows, followed, **caps)
    large = two_hop_block(
        spread(user_ids), Paths(rows, spread(via), spread(candidates)), followed_rows, spread(followed), **caps
    )
    assert len(small) == len(large) > 10
    for name in ("rows", "counts", "ranks", "proof_offsets"):
        np.testing.assert_array_equal(getattr(small, name), getattr(large, name))
    np.testing.assert_array_equal(spread(small.candidates), large.candidates)
    np.testing.assert_array_equal(spread(small.proof_ids), large.proof_ids)
    assert small.counts.max() > 3  # some proofs lists are cut


def test_mutuals_and_counts(spark):
    follows = _follows(spark, [(1, 2), (2, 1), (1, 3), (3, 2)], hours=[0, 5, 1, 2])
    mutual = sorted((r["user_id"], r["mutual_id"], r["since"]) for r in mutual_follows(follows).collect())
    assert [(u, m) for u, m, _ in mutual] == [(1, 2), (2, 1)]
    assert all(since.hour == 5 for _, _, since in mutual)
    users = spark.createDataFrame([(i,) for i in (1, 2, 3, 4)], "user_id bigint")
    counts = {
        r["user_id"]: (r["following_count"], r["follower_count"], r["mutual_count"])
        for r in user_follow_counts(users, follows, mutual_follows(follows)).collect()
    }
    assert counts == {1: (2, 1, 1), 2: (1, 2, 1), 3: (1, 1, 0), 4: (0, 0, 0)}


def test_realgraph_windows_and_decay_arithmetic(spark):
    tweets = spark.createDataFrame([(10, 2), (11, 2), (12, 1)], "tweet_id bigint, author_id bigint")
    cutoff = AS_OF
    rows = [
        (1, 10, "like", cutoff - timedelta(days=7)),  # exactly one half-life old: weight 0.5
        (1, 11, "like", cutoff - timedelta(hours=12)),  # within 1 day: 0.5 ** (0.5 / 7)
        (1, 10, "retweet", cutoff - timedelta(days=14)),  # two half-lives: 0.25; outside 7d, inside 28d
        (1, 12, "like", cutoff - timedelta(days=1)),  # own tweet: not an interaction
        (1, 10, "impression", cutoff - timedelta(days=1)),
        (1, 10, "like", cutoff + timedelta(hours=1)),  # after the cutoff: not counted
    ]
    engagements = spark.createDataFrame(rows, "user_id bigint, tweet_id bigint, action string, created_at timestamp")
    follows = _follows(spark, [(1, 2), (1, 3)], hours=[-48 + (AS_OF - at(0)).total_seconds() / 3600, 10_000])
    config = RealGraphConfig(half_life_days=7.0, windows_days=(1, 7, 28))
    interactions = user_author_interactions(engagements, tweets, actions=config.actions)
    (row,) = interaction_features(interactions, follows, cutoff=cutoff, config=config).collect()
    assert (row["user_id"], row["author_id"]) == (1, 2)
    assert (row["like_1d"], row["like_7d"], row["like_28d"]) == (1.0, 2.0, 2.0)
    assert (row["retweet_1d"], row["retweet_7d"], row["retweet_28d"]) == (0.0, 0.0, 1.0)
    assert row["like_decayed"] == pytest.approx(0.5 + 0.5 ** (0.5 / 7))
    assert row["retweet_decayed"] == pytest.approx(0.25)
    assert row["total_decayed"] == pytest.approx(0.75 + 0.5 ** (0.5 / 7))
    assert row["hours_since_last"] == pytest.approx(12.0)
    assert (row["impression_1d"], row["impression_decayed"]) == (1.0, pytest.approx(0.5 ** (1 / 7)))
    assert (row["follows_author"], row["follow_age_days"]) == (1.0, pytest.approx(2.0))
    features = interaction_features(interactions, follows, cutoff=cutoff, config=config)
    (score,) = fixed_weight_score(features, config=config).collect()
    assert score["score"] == pytest.approx(1.0 * (0.5 + 0.5 ** (0.5 / 7)) + 2.0 * 0.25)
    labels = next_period_labels(interactions, start=cutoff, end=cutoff + timedelta(days=1)).collect()
    assert [(r["user_id"], r["author_id"], r["label"]) for r in labels] == [(1, 2, 1)]


def test_recall_auc_and_nmi_by_hand():
    import pyarrow as pa

    candidates = pa.table({"user_id": [1, 1, 1, 2], "candidate_id": [5, 6, 7, 5], "score": [3.0, 2.0, 1.0, 1.0]})
    heldout = pa.table({"follower_id": [1, 1, 2, 3], "followee_id": [7, 5, 5, 5]})
    assert follow_recall_at_k(candidates, heldout, k=2) == pytest.approx(2 / 4)  # (1,5) and (2,5)
    assert roc_auc(np.array([1, 0, 0, 1]), np.array([0.8, 0.4, 0.6, 0.3])) == pytest.approx(0.5)
    assert normalized_mutual_information(np.array([0, 0, 1, 1]), np.array([5, 5, 7, 7])) == pytest.approx(1.0)
    assert normalized_mutual_information(np.array([0, 0, 1, 1]), np.array([5, 7, 5, 7])) == pytest.approx(0.0)


def test_realgraph_training_sample_is_bounded_deterministic_and_uniform(spark):
    from models.realgraph_model import sample_pairs

    pairs = spark.range(20_000).selectExpr("id % 200 AS user_id", "id AS author_id", "CAST(id % 4 = 0 AS INT) AS label")
    first = sample_pairs(pairs, max_rows=5_000, seed=7)
    rows = first.collect()
    assert 4_500 <= len(rows) <= 5_500  # a quarter in expectation (binomial sd ~ 61)
    assert sorted(r["author_id"] for r in sample_pairs(pairs, max_rows=5_000, seed=7).collect()) == sorted(
        r["author_id"] for r in rows
    )
    assert abs(sum(r["label"] for r in rows) / len(rows) - 0.25) < 0.03  # the label rate is kept
    assert sample_pairs(pairs, max_rows=50_000, seed=7).count() == 20_000  # small tables untouched
