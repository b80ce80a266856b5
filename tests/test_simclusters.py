"""SimClusters transforms on tiny hand-made graphs; every expected value is worked out by hand here."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd
import pytest

from jobs import simclusters as sc
from jobs.simclusters_known_for import seed_producers, undirected

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)

# Followers 1-4; producers 10, 11, 12 (and 13 with a single follower).
#   10 <- 1, 2, 3     11 <- 1, 2     12 <- 3, 4     13 <- 1
# cos(10, 11) = |{1,2}| / sqrt(3 * 2) = 2/sqrt(6);  cos(10, 12) = |{3}| / sqrt(3 * 2) = 1/sqrt(6);
# 11 and 12 share no follower.
SMALL_FOLLOWS = [(1, 10), (2, 10), (3, 10), (1, 11), (2, 11), (3, 12), (4, 12), (1, 13)]


def _follows(spark, pairs):
    return spark.createDataFrame(pairs, "follower_id bigint, followee_id bigint")


def _rows(df, *columns):
    return sorted(tuple(r[c] for c in columns) for r in df.collect())


def _similarity(spark, **kw):
    params = dict(min_followers=2, min_cosine=0.0, max_neighbors=10, max_producers_per_follower=10)
    params.update(kw)
    return _rows(
        sc.producer_similarity(_follows(spark, SMALL_FOLLOWS), **params), "producer_id", "neighbor_id", "cosine"
    )


def test_cosine_of_follower_sets(spark):
    got = _similarity(spark)
    assert [(a, b) for a, b, _ in got] == [(10, 11), (10, 12), (11, 10), (12, 10)]  # 13 has < 2 followers
    cos = {(a, b): c for a, b, c in got}
    assert cos[(10, 11)] == pytest.approx(2 / math.sqrt(6))
    assert cos[(11, 10)] == pytest.approx(2 / math.sqrt(6))
    assert cos[(10, 12)] == pytest.approx(1 / math.sqrt(6))
    assert cos[(12, 10)] == pytest.approx(1 / math.sqrt(6))


def test_threshold_and_max_neighbours_prune_edges(spark):
    # 2/sqrt(6) = 0.816 passes 0.5, 1/sqrt(6) = 0.408 does not.
    assert [(a, b) for a, b, _ in _similarity(spark, min_cosine=0.5)] == [(10, 11), (11, 10)]
    # One neighbour each: 10 keeps 11 (0.816 > 0.408); 11 and 12 only have 10.
    assert [(a, b) for a, b, _ in _similarity(spark, max_neighbors=1)] == [(10, 11), (11, 10), (12, 10)]
    # The 1-follower account joins once min_followers allows it: 13 <- 1 shares follower 1 with
    # 10 (3 followers) and 11 (2): cosines 1/sqrt(3) and 1/sqrt(2).
    cos = {(a, b): c for a, b, c in _similarity(spark, min_followers=1)}
    assert cos[(13, 10)] == pytest.approx(1 / math.sqrt(3))
    assert cos[(13, 11)] == pytest.approx(1 / math.sqrt(2))


def test_producers_keeps_the_most_followed_ties_by_smaller_id(spark):
    # Followers: 10 has 3, 11 and 12 have 2 each, 13 has 1.
    def kept(**kw):
        return _rows(sc.producers(_follows(spark, SMALL_FOLLOWS), **kw), "producer_id", "followers")

    assert kept(min_followers=1, max_producers=10) == [(10, 3), (11, 2), (12, 2), (13, 1)]
    assert kept(min_followers=1, max_producers=2) == [(10, 3), (11, 2)]  # 11 before 12 on the tie
    assert kept(min_followers=3, max_producers=2) == [(10, 3)]


def test_seeds_are_numbered_by_tier_then_key(spark):
    # Two components. A: 1-2 and 1-3 (weight 1): degrees 1 -> 2, 2 and 3 -> 1. B: 10-11 and 10-12
    # (weight 0.5): degrees 10 -> 1, 11 and 12 -> 0.5. Each hub has the largest key within two
    # hops (tier 0), and 1's degree (2) beats 10's (1), so 1 is cluster 0 and 10 cluster 1.
    similarity = spark.createDataFrame(
        [(1, 2, 1.0), (1, 3, 1.0), (10, 11, 0.5), (10, 12, 0.5)],
        "producer_id bigint, neighbor_id bigint, cosine double",
    )
    graph = undirected(similarity)
    degrees = graph.groupBy(graph.src.alias("producer_id")).agg({"w": "sum"}).withColumnRenamed("sum(w)", "degree")
    assert _rows(seed_producers(graph, degrees, k=2, seed=7), "producer_id", "cluster_id") == [(1, 0), (10, 1)]
    assert _rows(seed_producers(graph, degrees, k=1, seed=7), "producer_id", "cluster_id") == [(1, 0)]
    # Then the rest by key: 2 and 3 (degree 1) before 11 and 12 (0.5), in hash order.
    four = dict(_rows(seed_producers(graph, degrees, k=4, seed=7), "producer_id", "cluster_id"))
    assert four[1] == 0 and four[10] == 1 and set(four) == {1, 10, 2, 3} and {four[2], four[3]} == {2, 3}


def test_fan_out_cap_bounds_the_pairs_of_one_follower(spark):
    # One follower of six producers: uncapped, every ordered pair (30) with cosine 1.
    follows = _follows(spark, [(1, p) for p in range(10, 16)])
    params = dict(min_followers=1, min_cosine=0.0, max_neighbors=10)
    full = sc.producer_similarity(follows, max_producers_per_follower=6, **params).collect()
    assert len(full) == 30
    # Capped at 3: the follower enters the pairs with 3 of its producers, 3 * 2 ordered pairs.
    capped = _rows(
        sc.producer_similarity(follows, max_producers_per_follower=3, **params), "producer_id", "neighbor_id", "cosine"
    )
    assert len(capped) == 6
    assert len({a for a, _, _ in capped}) == 3
    assert all(c == pytest.approx(1.0) for _, _, c in capped)
    again = _rows(
        sc.producer_similarity(follows, max_producers_per_follower=3, **params), "producer_id", "neighbor_id", "cosine"
    )
    assert again == capped  # the sample is deterministic


def _two_blocks(spark):
    """Blocks {1,2,3,4} and {5,6,7,8}, complete inside with cosine 0.9, bridged by 4-5 at 0.1
    (one direction per edge: known_for symmetrises)."""
    edges = []
    for block in ((1, 2, 3, 4), (5, 6, 7, 8)):
        edges += [(a, b, 0.9) for a in block for b in block if a < b]
    edges.append((4, 5, 0.1))
    return spark.createDataFrame(edges, "producer_id bigint, neighbor_id bigint, cosine double")


def test_known_for_recovers_two_blocks_with_one_cluster_each(spark):
    similarity = _two_blocks(spark)
    got = sc.known_for(similarity, k=2, seed=7, iterations=6).toPandas()
    assert got.producer_id.is_unique  # at most one cluster per producer
    assert sorted(got.producer_id) == list(range(1, 9))
    cluster = dict(zip(got.producer_id, got.cluster_id))
    assert len({cluster[p] for p in (1, 2, 3, 4)}) == 1
    assert len({cluster[p] for p in (5, 6, 7, 8)}) == 1
    assert cluster[1] != cluster[5]
    assert set(got.cluster_id) == {0, 1}
    # score = similarity inside the cluster / all similarity: 2.7/2.7 inside, 2.7/2.8 at the bridge.
    score = dict(zip(got.producer_id, got.score))
    assert score[1] == pytest.approx(1.0)
    assert score[4] == pytest.approx(2.7 / 2.8)
    assert score[5] == pytest.approx(2.7 / 2.8)
    again = sc.known_for(similarity, k=2, seed=7, iterations=6).toPandas()
    assert dict(zip(again.producer_id, again.cluster_id)) == cluster  # deterministic for a seed


def test_known_for_never_exceeds_k_clusters(spark):
    # One seed: the bridge costs more than it brings (0.1 < 2.8 * D(c) / 2m), so the second block
    # stays without a community rather than join the first.
    got = sc.known_for(_two_blocks(spark), k=1, seed=7, iterations=6).toPandas()
    assert set(got.cluster_id) == {0}
    assert len(got) == 4 and got.producer_id.is_unique


def _known_for(spark):
    # 10 and 11 in cluster 0 (scores 1.0 and 0.5), 12 in cluster 1, 13 in cluster 2.
    return spark.createDataFrame(
        [(10, 0, 1.0), (11, 0, 0.5), (12, 1, 1.0), (13, 2, 1.0)], "producer_id bigint, cluster_id int, score double"
    )


def test_interested_in_is_l2_normalised_and_needs_social_proof(spark):
    follows = _follows(spark, [(1, 10), (1, 11), (1, 12), (1, 13), (2, 12), (2, 99)])
    # User 1 raw: c0 = 1.0 + 0.5 = 1.5 (2 producers), c1 = 1.0, c2 = 1.0 (1 producer each).
    one = _rows(sc.interested_in(follows, _known_for(spark), min_social_proof=1), "user_id", "cluster_id", "score")
    norm = math.sqrt(1.5**2 + 1 + 1)
    expected = [(1, 0, 1.5 / norm), (1, 1, 1 / norm), (1, 2, 1 / norm), (2, 1, 1.0)]
    assert [r[:2] for r in one] == [r[:2] for r in expected]
    assert [r[2] for r in one] == pytest.approx([r[2] for r in expected])
    assert sum(s * s for u, _, s in one if u == 1) == pytest.approx(1.0)
    # Two followed producers needed: only user 1's cluster 0 remains, renormalised to 1.
    two = _rows(sc.interested_in(follows, _known_for(spark), min_social_proof=2), "user_id", "cluster_id", "score")
    assert two == [(1, 0, pytest.approx(1.0))]
    # Top 2 clusters: c0, then c1 (tied with c2, lower id first), normalised over the two kept.
    top2 = _rows(
        sc.interested_in(follows, _known_for(spark), min_social_proof=1, top_clusters=2),
        "user_id",
        "cluster_id",
        "score",
    )
    n2 = math.sqrt(1.5**2 + 1)
    assert top2 == [(1, 0, pytest.approx(1.5 / n2)), (1, 1, pytest.approx(1 / n2)), (2, 1, pytest.approx(1.0))]


def _interested(spark):
    # User 1: (0.6, 0.8) over clusters 0 and 1; user 2: cluster 0 only.
    return spark.createDataFrame(
        [(1, 0, 0.6), (1, 1, 0.8), (2, 0, 1.0)], "user_id bigint, cluster_id int, score double"
    )


def test_producer_embeddings_are_follower_cosines_with_cluster_columns(spark):
    # 10 <- 1, 2, 3 (3 has no InterestedIn but counts as a follower); 11 <- 2.
    follows = _follows(spark, [(1, 10), (2, 10), (3, 10), (2, 11)])
    got = _rows(sc.producer_embeddings(follows, _interested(spark)), "producer_id", "cluster_id", "score")
    c0_norm, c1_norm = math.sqrt(0.6**2 + 1.0**2), 0.8
    assert got == [
        (10, 0, pytest.approx((0.6 + 1.0) / (math.sqrt(3) * c0_norm))),
        (10, 1, pytest.approx(0.8 / (math.sqrt(3) * c1_norm))),
        (11, 0, pytest.approx(1.0 / (1 * c0_norm))),
    ]
    top1 = _rows(sc.producer_embeddings(follows, _interested(spark), top_clusters=1), "producer_id", "cluster_id")
    assert top1 == [(10, 0), (11, 0)]


def test_tweet_embeddings_decay_by_half_lives(spark):
    hours = lambda h: AS_OF - timedelta(hours=h)  # noqa: E731
    engagements = spark.createDataFrame(
        [
            (1, 100, "like", hours(8)),  # one half-life ago: 0.5 x (0.6, 0.8)
            (2, 100, "retweet", hours(16)),  # two: 0.25 x (1.0, 0)
            (2, 100, "impression", hours(0)),  # not an engagement action
            (1, 101, "like", hours(-1)),  # after as_of: not yet happened
            (2, 101, "like", hours(0)),  # now: 1.0 x (1.0, 0)
            (1, 102, "like", hours(8)),  # a tweet deleted before as_of (below)
        ],
        "user_id bigint, tweet_id bigint, action string, created_at timestamp",
    )
    got = _rows(
        sc.tweet_embeddings(engagements, _interested(spark), as_of=AS_OF, half_life_hours=8.0),
        "tweet_id",
        "cluster_id",
        "score",
    )
    assert got == [
        (100, 0, pytest.approx(0.5 * 0.6 + 0.25 * 1.0)),
        (100, 1, pytest.approx(0.5 * 0.8)),
        (101, 0, pytest.approx(1.0)),
        (102, 0, pytest.approx(0.5 * 0.6)),
        (102, 1, pytest.approx(0.5 * 0.8)),
    ]
    tweets = spark.createDataFrame(
        [(100, None), (101, AS_OF + timedelta(hours=1)), (102, hours(1))], "tweet_id bigint, deleted_at timestamp"
    )
    live = _rows(
        sc.tweet_embeddings(engagements, _interested(spark), as_of=AS_OF, half_life_hours=8.0, tweets=tweets),
        "tweet_id",
    )
    assert sorted(set(live)) == [(100,), (101,)]


def test_top_tweets_per_cluster_ranks_by_score_then_id(spark):
    embeddings = spark.createDataFrame(
        [(1, 0, 0.5), (2, 0, 0.9), (3, 0, 0.5), (4, 0, 0.1), (1, 1, 0.3)],
        "tweet_id bigint, cluster_id int, score double",
    )
    got = _rows(sc.top_tweets_per_cluster(embeddings, per_cluster=3), "cluster_id", "rank", "tweet_id", "score")
    assert got == [(0, 1, 2, 0.9), (0, 2, 1, 0.5), (0, 3, 3, 0.5), (1, 1, 1, 0.3)]


def test_follow_candidates_go_through_top_clusters_and_skip_followed(spark):
    producers = spark.createDataFrame(
        [(10, 0, 1.0), (11, 1, 0.5), (12, 0, 0.2), (12, 1, 0.2), (1, 0, 0.9)],
        "producer_id bigint, cluster_id int, score double",
    )
    train = _follows(spark, [(1, 10)])
    interested = _interested(spark).filter("user_id = 1")
    got = _rows(sc.simclusters_follow_candidates(interested, producers, train), "user_id", "candidate_id", "score")
    # 10 is followed and 1 is the user; 11: 0.8 * 0.5; 12: 0.6 * 0.2 + 0.8 * 0.2.
    assert got == [(1, 11, pytest.approx(0.4)), (1, 12, pytest.approx(0.28))]
    only_top = _rows(
        sc.simclusters_follow_candidates(interested, producers, train, user_clusters=1, k=1), "candidate_id", "score"
    )
    assert only_top == [(11, pytest.approx(0.4))]  # through cluster 1 only, the best one


def test_known_for_quality():
    known_for = pd.DataFrame({"producer_id": [10, 11, 12, 13], "cluster_id": [5, 5, 7, 7], "score": 1.0})
    truth = pd.DataFrame({"user_id": [10, 11, 12, 13, 14], "home_community": [0, 0, 1, 1, 1]})
    follows = pd.DataFrame({"followee_id": [10, 11, 12, 13, 14, 14]})
    got = sc.known_for_quality(known_for, truth, follows=follows, min_followers=1)
    assert got["known_for_nmi"] == pytest.approx(1.0)  # clusters match communities up to names
    assert got["known_for_coverage"] == pytest.approx(4 / 5)  # 14 is eligible, without a cluster
    assert sc.known_for_quality(known_for, truth, follows=follows, min_followers=2)["known_for_coverage"] == 0.0


def test_assets_are_one_per_table_in_the_simclusters_group():
    from orchestration.assets.simclusters import simclusters_assets

    specs = {spec.key.to_user_string(): spec for a in simclusters_assets for spec in a.specs}
    assert set(specs) == {
        "simclusters_producer_similarity",
        "simclusters_known_for",
        "simclusters_interested_in",
        "simclusters_producer_embeddings",
        "simclusters_tweet_embeddings",
        "simclusters_top_tweets_per_cluster",
    }
    assert {s.group_name for s in specs.values()} == {"simclusters"}
    deps = {name: {d.asset_key.to_user_string() for d in s.deps} for name, s in specs.items()}
    assert deps["simclusters_producer_similarity"] == {"follows"}
    assert deps["simclusters_tweet_embeddings"] == {"engagements", "tweets", "simclusters_interested_in"}
    assert deps["simclusters_top_tweets_per_cluster"] == {"simclusters_tweet_embeddings"}


def test_assets_materialize_on_a_tiny_warehouse(spark, settings, tmp_path):
    """Two communities of followers, each following its own three producers; one liked tweet."""
    from jobs.delta_io import overwrite_delta, read_delta
    from orchestration.assets.simclusters import simclusters_assets
    from orchestration.definitions import ALL_ASSETS
    from orchestration.resource_bindings import resources_from_settings

    run_settings = settings.model_copy(update={"warehouse": tmp_path, "as_of": AS_OF})
    tables = run_settings.tables_dir
    pairs = [(f, p) for f in range(1, 11) for p in (101, 102, 103)]
    pairs += [(f, p) for f in range(11, 21) for p in (201, 202, 203)]
    overwrite_delta(
        spark.createDataFrame(
            [(f, p, AS_OF) for f, p in pairs], "follower_id bigint, followee_id bigint, created_at timestamp"
        ),
        tables / "follows",
    )
    overwrite_delta(
        spark.createDataFrame(
            [(900, 101, AS_OF - timedelta(hours=1), None)],
            "tweet_id bigint, author_id bigint, created_at timestamp, deleted_at timestamp",
        ),
        tables / "tweets",
    )
    overwrite_delta(
        spark.createDataFrame(
            [(1, 900, "like", AS_OF - timedelta(hours=1))],
            "user_id bigint, tweet_id bigint, action string, created_at timestamp",
        ),
        tables / "engagements",
    )
    result = dg.materialize(ALL_ASSETS, selection=simclusters_assets, resources=resources_from_settings(run_settings))
    assert result.success
    counts = {
        e.asset_key.to_user_string(): e.materialization.metadata["dagster/row_count"].value
        for e in result.get_asset_materialization_events()
    }
    # 3 + 3 producers with cosine 1 inside each block: 6 x 2 neighbours; 6 KnownFor rows;
    # 20 users x 1 cluster; 6 producers x 1 cluster; 1 tweet in 1 cluster.
    assert counts == {
        "simclusters_producer_similarity": 12,
        "simclusters_known_for": 6,
        "simclusters_interested_in": 20,
        "simclusters_producer_embeddings": 6,
        "simclusters_tweet_embeddings": 1,
        "simclusters_top_tweets_per_cluster": 1,
    }
    known_for = read_delta(spark, tables / "simclusters_known_for").toPandas()
    cluster = dict(zip(known_for.producer_id, known_for.cluster_id))
    assert cluster[101] == cluster[102] == cluster[103] != cluster[201] == cluster[202] == cluster[203]
