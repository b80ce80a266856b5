"""Batch ranking in Spark (jobs/ranking.py) and the `ranked_feeds` asset on a hand-made warehouse.

The models are trained on random numbers: what is checked is the plumbing (features joined with
their defaults, the light-ranker cut, the heavy ranker's probabilities equal to the model's own on
the same vectors, fatigue, the heuristics' limits, the registry's refusals), not ranking quality.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from features.registry import FEATURES, features_of_asset, spark_schema_of
from jobs.candidates.config import CANDIDATES_SCHEMA
from jobs.delta_io import overwrite_delta
from jobs.ranking import (
    FEATURE_TABLES,
    RankingConfig,
    fatigue_days,
    feature_vectors,
    ranked_feeds,
)
from jobs.train_rankers import current_models
from models.fixed_rankers import register_fixed_rankers
from models.heavy_ranker import DEFAULT_HEAD_WEIGHTS, RankerInputs, final_scores
from models.ranker_features import HEAVY_RANKER_FEATURES
from models.registry import HEAVY_RANKER, LIGHT_RANKER, FeatureHashMismatch

AS_OF = datetime(2026, 10, 1, tzinfo=UTC)
USERS, TWEETS_PER_USER = (1, 2), 8
LIKES_24H = {1003: 40, 1005: 7}  # tweet_features rows for two tweets; every other tweet is at the defaults
DEFAULTS = {f.qualified_name: float(f.default) for f in FEATURES}


def candidate_rows():
    rows = []
    for user in USERS:
        for i in range(TWEETS_PER_USER):
            tweet = 1000 + 100 * (user - 1) + i
            author = 50 + i % 4  # four authors, two tweets each
            rows.append(
                (
                    user,
                    tweet,
                    author,
                    AS_OF - timedelta(hours=i + 1),
                    i + 1,
                    ["in_network"] if i % 2 else ["twhin"],
                    bool(i % 2),
                    *[None] * 12,
                    None,
                    [7],
                    1,
                    AS_OF,
                )
            )
    return rows


def _tweet_feature_row(schema, tweet: int, likes: int) -> tuple:
    values = {f.name: f.default for f in features_of_asset("tweet_features")}
    values.update(tweet_id=tweet, likes_24h=float(likes))
    return tuple(values[field.name] for field in schema.fields)


def write_warehouse(spark, warehouse):
    tables = warehouse / "tables"
    overwrite_delta(spark.createDataFrame(candidate_rows(), CANDIDATES_SCHEMA), tables / "candidates")
    for asset in FEATURE_TABLES:
        schema = spark_schema_of(asset)
        rows = (
            [_tweet_feature_row(schema, tweet, likes) for tweet, likes in LIKES_24H.items()]
            if asset == "tweet_features"
            else []
        )
        overwrite_delta(spark.createDataFrame(rows, schema), tables / asset)
    # User 1 said "not interested" to author 51 three days ago: 51 is dropped from user 1's feed.
    overwrite_delta(
        spark.createDataFrame(
            [(1, 1001, "not_interested", AS_OF - timedelta(days=3))],
            "user_id long, tweet_id long, action string, created_at timestamp",
        ),
        tables / "engagements",
    )
    overwrite_delta(
        spark.createDataFrame([(r[1], r[2]) for r in candidate_rows()], "tweet_id long, author_id long"),
        tables / "tweets",
    )


@pytest.fixture(scope="module")
def warehouse(spark, tmp_path_factory):
    path = tmp_path_factory.mktemp("ranking_wh")
    write_warehouse(spark, path)
    return path, register_fixed_rankers(path, reason="test")


def _read(spark, warehouse, name):
    return spark.read.format("delta").load(str(warehouse / "tables" / name))


def test_feature_vectors_join_the_tables_and_fill_the_defaults(spark, warehouse):
    path, _ = warehouse
    pairs = _read(spark, path, "candidates").select("user_id", "tweet_id", "author_id")
    vectors = feature_vectors(
        pairs,
        {a: _read(spark, path, a) for a in FEATURE_TABLES},
        ["tweet__likes_24h", "user__like_rate_7d", "user_author__follow_age_days"],
    ).toPandas()
    assert len(vectors) == len(USERS) * TWEETS_PER_USER
    likes = dict(zip(vectors["tweet_id"], vectors["tweet__likes_24h"]))
    assert likes[1003] == 40.0 and likes[1005] == 7.0 and likes[1000] == 0.0
    assert (vectors["user_author__follow_age_days"] == -1.0).all()  # declared default -1


def test_ranked_feeds_cut_score_and_shape_each_pool(spark, warehouse):
    path, heavy = warehouse
    read = lambda name: _read(spark, path, name)  # noqa: E731
    models = current_models(path)
    feeds = ranked_feeds(
        read("candidates"),
        {a: read(a) for a in FEATURE_TABLES},
        fatigue_days(read("engagements"), read("tweets"), as_of=AS_OF),
        light_model_dir=models[LIGHT_RANKER][0],
        light_features=models[LIGHT_RANKER][1],
        heavy_model_dir=models[HEAVY_RANKER][0],
        heavy_features=models[HEAVY_RANKER][1],
        config=RankingConfig(light_keep=6),
    ).toPandas()
    per_user = feeds.groupby("user_id")
    # user 2: the light ranker keeps 6 of 8; user 1: 6 kept minus author 51's tweets among them.
    assert per_user.size()[2] == 6
    assert 51 not in set(feeds[feeds.user_id == 1]["author_id"]) and per_user.size()[1] <= 6
    for _, rows in per_user:
        assert rows["rank"].tolist() == list(range(1, len(rows) + 1))
    # The heavy ranker's probabilities, recomputed here from the model on hand-built vectors.
    dense = np.tile(np.array([DEFAULTS[n] for n in HEAVY_RANKER_FEATURES], dtype=np.float32), (len(feeds), 1))
    likes = HEAVY_RANKER_FEATURES.index("tweet__likes_24h")
    dense[:, likes] = [LIKES_24H.get(t, 0.0) for t in feeds["tweet_id"]]
    expected = heavy.probabilities(
        RankerInputs(dense=dense, user_ids=feeds["user_id"].to_numpy(), author_ids=feeds["author_id"].to_numpy())
    )
    np.testing.assert_allclose(feeds["p_like"], expected[:, 0], rtol=1e-5)
    np.testing.assert_allclose(
        feeds["heavy_score"], final_scores(expected, heavy.heads, DEFAULT_HEAD_WEIGHTS), rtol=1e-5
    )
    assert (feeds["sources"].map(len) == 1).all() and (feeds["social_proof_count"] == 1).all()


def test_ranked_feeds_asset_writes_the_table(spark, ranked_build):
    """The asset (the per-user pass, jobs.feed_pass) on a generated world, through Dagster with the
    table's check: every user's feed ranked 1..n, at most 200 rows; tests/test_feed_pass.py compares
    its rows with the three steps it replaces."""
    settings, outcome = ranked_build
    assert outcome.success and "ranked_feeds" in outcome.materialized and not outcome.failed_checks
    table = _read(spark, settings.warehouse, "ranked_feeds").toPandas()
    users = set(_read(spark, settings.warehouse, "users").toPandas()["user_id"])
    assert set(table["user_id"]) <= users and len(set(table["user_id"])) > 0.9 * len(users)
    sizes = table.groupby("user_id").size()
    assert sizes.max() <= 200
    ranks = table.sort_values(["user_id", "rank"]).groupby("user_id")["rank"].apply(list)
    assert all(r == list(range(1, len(r) + 1)) for r in ranks)


def test_batch_scoring_refuses_a_model_trained_on_other_features(tmp_path):
    register_fixed_rankers(tmp_path, heavy_features=HEAVY_RANKER_FEATURES[:-1], reason="test")
    with pytest.raises(FeatureHashMismatch):
        current_models(tmp_path)
    with pytest.raises(LookupError, match="no promoted"):
        current_models(tmp_path / "empty")


# A world whose five feature tables all hold seeded random rows (a few keys left out, so defaults
# show), for the three-step reference the per-user pass is compared with (tests/test_feed_pass.py).
RICH_USERS, RICH_CANDIDATES, RICH_AUTHORS, RICH_KEEP = (11, 12, 13), 12, (70, 71, 72, 73), 7
FATIGUED = (12, 71)  # user 12 said "not interested" to author 71 two days ago


def _random_value(field, rng):
    if field.dataType.simpleString() == "boolean":
        return bool(rng.random() < 0.5)
    if field.dataType.simpleString() in ("int", "bigint"):
        return int(rng.integers(0, 50))
    return float(rng.uniform(0, 5))


def rich_world(spark, path):
    """Writes the world's tables under `path`; returns (candidate (user, tweet, author) triples,
    {asset: {keys: row dict}})."""
    rng = np.random.default_rng(7)
    triples = [
        (user, 5000 + 100 * user + i, RICH_AUTHORS[i % len(RICH_AUTHORS)])
        for user in RICH_USERS
        for i in range(RICH_CANDIDATES)
    ]
    candidates = [
        (u, t, a, AS_OF - timedelta(hours=1), 1, ["in_network"], True, *[None] * 12, None, [], 0, AS_OF)
        for u, t, a in triples
    ]
    overwrite_delta(spark.createDataFrame(candidates, CANDIDATES_SCHEMA), path / "tables" / "candidates")
    keys_of = {
        "user_features": lambda u, t, a: (u,),
        "author_features": lambda u, t, a: (a,),
        "tweet_features": lambda u, t, a: (t,),
        "user_author_features": lambda u, t, a: (u, a),
        "user_tweet_features": lambda u, t, a: (u, t),
    }
    rows_by_asset = {}
    for asset, keys in keys_of.items():
        schema, key_names = spark_schema_of(asset), FEATURE_TABLES[asset][1]
        wanted = sorted({keys(*triple) for triple in triples})[1:]  # the first key has no row: defaults
        rows = {
            key: {
                f.name: (dict(zip(key_names, key))[f.name] if f.name in key_names else _random_value(f, rng))
                for f in schema.fields
            }
            for key in wanted
        }
        rows_by_asset[asset] = rows
        overwrite_delta(
            spark.createDataFrame([tuple(r.values()) for r in rows.values()], schema), path / "tables" / asset
        )
    overwrite_delta(
        spark.createDataFrame(
            [(FATIGUED[0], 5000 + 100 * FATIGUED[0] + 1, "not_interested", AS_OF - timedelta(days=2))],
            "user_id long, tweet_id long, action string, created_at timestamp",
        ),
        path / "tables" / "engagements",
    )
    overwrite_delta(
        spark.createDataFrame([(t, a) for _, t, a in triples], "tweet_id long, author_id long"),
        path / "tables" / "tweets",
    )
    return triples, rows_by_asset


def expected_vectors(triples, rows_by_asset, names):
    """(rows, features) float32 built row by row from the written rows: independent of the joins."""
    entity_of = {asset: entity for asset, (entity, _) in FEATURE_TABLES.items()}
    key_of = {
        "user": lambda u, t, a: (u,),
        "author": lambda u, t, a: (a,),
        "tweet": lambda u, t, a: (t,),
        "user_author": lambda u, t, a: (u, a),
        "user_tweet": lambda u, t, a: (u, t),
    }
    out = np.empty((len(triples), len(names)), dtype=np.float32)
    for i, triple in enumerate(triples):
        for j, name in enumerate(names):
            entity, column = name.split("__", 1)
            asset = next(a for a, e in entity_of.items() if e == entity)
            row = rows_by_asset[asset].get(key_of[entity](*triple))
            out[i, j] = float(row[column]) if row is not None else DEFAULTS[name]
    return out


@pytest.fixture(scope="module")
def rich_warehouse(spark, tmp_path_factory):
    path = tmp_path_factory.mktemp("ranking_rich")
    triples, rows_by_asset = rich_world(spark, path)
    register_fixed_rankers(path, reason="test")
    return path, triples, rows_by_asset


def _reference_feeds(spark, path):
    """jobs.ranking.ranked_feeds over the rich world's candidates and feature tables."""
    read = lambda name: _read(spark, path, name)  # noqa: E731
    (light_dir, light_features), (heavy_dir, heavy_features) = (
        current_models(path)[n] for n in (LIGHT_RANKER, HEAVY_RANKER)
    )
    return ranked_feeds(
        read("candidates"),
        {a: read(a) for a in FEATURE_TABLES},
        fatigue_days(read("engagements"), read("tweets"), as_of=AS_OF),
        light_model_dir=light_dir,
        light_features=light_features,
        heavy_model_dir=heavy_dir,
        heavy_features=heavy_features,
        config=RankingConfig(light_keep=RICH_KEEP),
    )


def test_reference_ranked_feeds_match_vectors_built_row_by_row(spark, rich_warehouse):
    from models.light_ranker import LightRanker

    path, triples, rows_by_asset = rich_warehouse
    models = current_models(path)
    feeds = _reference_feeds(spark, path).toPandas()
    light = LightRanker.load(models[LIGHT_RANKER][0])
    light_scores_expected = light.predict(expected_vectors(triples, rows_by_asset, list(models[LIGHT_RANKER][1])))
    by_pair = {(u, t): (a, s) for (u, t, a), s in zip(triples, light_scores_expected)}
    for user in RICH_USERS:
        ranked = sorted(((-s, t) for (u, t), (a, s) in by_pair.items() if u == user))[:RICH_KEEP]
        survivors = {t for _, t in ranked}
        if user == FATIGUED[0]:
            survivors = {t for t in survivors if by_pair[(user, t)][0] != FATIGUED[1]}
        assert set(feeds[feeds.user_id == user]["tweet_id"]) == survivors, user
    np.testing.assert_allclose(
        feeds["light_score"], [by_pair[(u, t)][1] for u, t in zip(feeds.user_id, feeds.tweet_id)], rtol=1e-6
    )
    heavy = heavy_ranker_of(path)
    fed = [(u, t, a) for u, t, a in zip(feeds.user_id, feeds.tweet_id, feeds.author_id)]
    expected = heavy.probabilities(
        RankerInputs(
            dense=expected_vectors(fed, rows_by_asset, list(models[HEAVY_RANKER][1])),
            user_ids=feeds["user_id"].to_numpy(),
            author_ids=feeds["author_id"].to_numpy(),
        )
    )
    np.testing.assert_allclose(feeds[[f"p_{h}" for h in heavy.heads]].to_numpy(), expected, rtol=1e-5, atol=1e-7)


def heavy_ranker_of(path):
    from models.heavy_ranker import HeavyRanker

    return HeavyRanker.load(current_models(path)[HEAVY_RANKER][0])


def test_feeds_of_sorted_batches_equal_each_users_own_feed():
    """Users split across Arrow batches (7 rows a batch) get the feed rank_user_feed gives each of
    them alone; what the heuristics do not touch comes through unchanged."""
    import pandas as pd
    import pyarrow as pa

    from core.feed_heuristics import FeedHeuristics, rank_user_feed
    from core.heads import HEAD_COLUMNS
    from jobs.ranking import RANKED_FEEDS_SCHEMA, feeds_of_sorted_batches

    rng = np.random.default_rng(3)
    sizes = {101: 3, 102: 12, 103: 1, 104: 9, 105: 7}
    rows = pd.DataFrame(
        [
            {
                "user_id": user,
                "tweet_id": 10 * user + i,
                "author_id": int(rng.integers(0, 3)),
                "tweet_created_at": pd.Timestamp("2026-10-01", tz="UTC") - pd.Timedelta(hours=i),
                "is_in_network": bool(rng.random() < 0.5),
                "sources": ["twhin"],
                "social_proof_user_ids": [user],
                "social_proof_count": 1,
                "light_score": float(rng.random()),
                **{column: float(rng.random()) for column in HEAD_COLUMNS},
                "heavy_score": float(rng.normal()),
                "is_reply": bool(rng.random() < 0.3),
                "fatigue_days_since": 3.0 if i == 0 else float("nan"),
            }
            for user, n in sizes.items()
            for i in range(n)
        ]
    )
    heuristics = FeedHeuristics(max_rows=5, page_size=3, in_network_cap=2, out_of_network_cap=2)
    batches = pa.Table.from_pandas(rows, preserve_index=False).to_batches(max_chunksize=7)
    assert len(batches) == 5
    got = pa.Table.from_batches(list(feeds_of_sorted_batches(iter(batches), heuristics))).to_pandas()
    expected = pd.concat(
        [rank_user_feed(user_rows, heuristics) for _, user_rows in rows.groupby("user_id")], ignore_index=True
    )
    assert list(got.columns) == [f.name for f in RANKED_FEEDS_SCHEMA.fields]
    assert got["user_id"].value_counts().to_dict() == expected["user_id"].value_counts().to_dict()
    assert set(got["user_id"]) == {101, 102, 104, 105}  # user 103's one row is from a fatigued author
    for column in (
        "user_id",
        "tweet_id",
        "rank",
        "page",
        "final_score",
        "diversity_multiplier",
        "fatigue_multiplier",
        "light_score",
        "p_like",
    ):
        assert got[column].tolist() == expected[column].tolist(), column
    assert [list(s) for s in got["sources"]] == [list(s) for s in expected["sources"]]
    assert (got["tweet_created_at"].to_numpy() == expected["tweet_created_at"].to_numpy()).all()


def test_apply_heuristics_equals_the_grouped_per_user_stage(spark):
    """In Spark, on 40 users' synthetic scored rows over 3 partitions: the streamed stage gives the
    table a plain groupBy(user_id).applyInPandas of rank_user_feed gives."""
    from benchmarks.ranking import grouped_heuristics, synthetic_scored_rows
    from core.feed_heuristics import FeedHeuristics
    from jobs.ranking import RANKED_FEEDS_SCHEMA, apply_heuristics

    heuristics = FeedHeuristics(max_rows=12, page_size=5, in_network_cap=3, out_of_network_cap=3)
    columns = [f.name for f in RANKED_FEEDS_SCHEMA.fields]
    scored = synthetic_scored_rows(spark, 40, 30).repartition(3)
    expected = grouped_heuristics(scored, heuristics).toPandas()
    got = apply_heuristics(scored, heuristics=heuristics).toPandas()
    order = ["user_id", "rank"]
    got, expected = (frame.sort_values(order).reset_index(drop=True) for frame in (got, expected))
    assert len(got) == len(expected) > 40 * 10
    for column in columns:
        if column in ("sources", "social_proof_user_ids"):
            assert [list(v) for v in got[column]] == [list(v) for v in expected[column]], column
        else:
            assert got[column].tolist() == expected[column].tolist(), column
