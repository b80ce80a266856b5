"""The per-user pass from requests to ranked feeds (the `ranked_feeds` asset, run by the
`ranked_build` fixture through Dagster with the table's check) against the three-step build it
replaces (candidates -> user_tweet_features -> `jobs.ranking.ranked_feeds`) on the same generated
world, models and as_of: the same feeds."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from core.heads import HEAD_COLUMNS


@pytest.fixture(scope="module")
def both_feeds(spark, ranked_build):
    """(the three steps' feeds, the pass's): the `ranked_feeds` asset (the pass) of the ranked build,
    and `jobs.ranking.ranked_feeds` over the build's `candidates` and `user_tweet_features` tables."""
    from jobs.delta_io import read_delta
    from jobs.ranking import FEATURE_TABLES, fatigue_days, ranked_feeds
    from jobs.train_rankers import current_models
    from models.registry import HEAVY_RANKER, LIGHT_RANKER

    settings, outcome = ranked_build
    assert outcome.success
    read = lambda name: read_delta(spark, settings.tables_dir / name)  # noqa: E731
    models = current_models(settings.warehouse)
    (light_dir, light_features), (heavy_dir, heavy_features) = models[LIGHT_RANKER], models[HEAVY_RANKER]
    three_steps = ranked_feeds(
        read("candidates"),
        {name: read(name) for name in FEATURE_TABLES},
        fatigue_days(read("engagements"), read("tweets"), as_of=settings.as_of),
        light_model_dir=light_dir,
        light_features=light_features,
        heavy_model_dir=heavy_dir,
        heavy_features=heavy_features,
    ).toArrow()
    return _sorted(three_steps), _sorted(read("ranked_feeds").toArrow())


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([("user_id", "ascending"), ("rank", "ascending")])


def _rows_by_pair(table: pa.Table) -> dict[tuple[int, int], int]:
    pairs = zip(table.column("user_id").to_pylist(), table.column("tweet_id").to_pylist(), strict=True)
    return {pair: i for i, pair in enumerate(pairs)}


def test_the_pass_gives_every_user_the_same_feed(both_feeds):
    """The same (user, tweet) rows with the same values; scores equal up to float32 noise (the heavy
    ranker runs on batches of another shape), so ranks may differ only between near-ties."""
    three_steps, one_pass = both_feeds
    assert three_steps.num_rows > 1000
    assert [(f.name, f.type) for f in one_pass.schema] == [(f.name, f.type) for f in three_steps.schema]
    ours, theirs = _rows_by_pair(one_pass), _rows_by_pair(three_steps)
    assert set(ours) == set(theirs)
    common = sorted(theirs)
    mine, other = [ours[p] for p in common], [theirs[p] for p in common]
    for name in ("author_id", "tweet_created_at", "is_in_network", "is_reply", "sources", "social_proof_user_ids"):
        assert one_pass.column(name).take(mine).to_pylist() == three_steps.column(name).take(other).to_pylist(), name
    np.testing.assert_array_equal(
        one_pass.column("light_score").take(mine), three_steps.column("light_score").take(other)
    )
    for name in ("final_score", "heavy_score", *HEAD_COLUMNS, "diversity_multiplier", "fatigue_multiplier"):
        np.testing.assert_allclose(
            one_pass.column(name).take(mine).to_numpy(),
            three_steps.column(name).take(other).to_numpy(),
            atol=1e-4,
            err_msg=name,
        )
    # Row by row in rank order: where the tweets differ, the two final scores at that rank are a near-tie.
    moved = np.flatnonzero(one_pass.column("tweet_id").to_numpy() != three_steps.column("tweet_id").to_numpy())
    assert len(moved) <= 0.001 * one_pass.num_rows
    scores = one_pass.column("final_score").to_numpy(), three_steps.column("final_score").to_numpy()
    assert np.all(np.abs(scores[0][moved] - scores[1][moved]) <= 1e-4)


def test_the_sample_holds_every_candidate_of_its_users_and_why_it_is_not_in_the_feed(spark, ranked_build):
    from jobs.delta_io import read_delta
    from jobs.feed_pass.sample import HEURISTICS, LIGHT_RANKER_CUT, light_ranker_recall
    from jobs.ranking import RankingConfig
    from models.ranker_features import HEAVY_RANKER_FEATURES

    settings, _ = ranked_build
    sample = read_delta(spark, settings.tables_dir / "ranked_feeds_sample")
    rows = sample.toPandas()
    feeds = read_delta(spark, settings.tables_dir / "ranked_feeds").toPandas()
    keep = RankingConfig().light_keep
    assert rows["user_id"].nunique() == 200  # min_users of a 300-user world, the same users every run
    kept = rows[rows["filtered_by"].isna()]
    assert rows.loc[rows["filtered_by"].notna(), "light_score"].isna().all()
    assert (
        rows.loc[rows["filtered_by"].notna(), "dropped_by"] == rows.loc[rows["filtered_by"].notna(), "filtered_by"]
    ).all()
    assert kept["dropped_by"].isna().eq(kept["feed_rank"].notna()).all()
    assert (kept.loc[kept["dropped_by"] == LIGHT_RANKER_CUT, "light_rank"] > keep).all()
    assert (kept.loc[kept["dropped_by"] != LIGHT_RANKER_CUT, "light_rank"] <= keep).all()
    assert (kept["dropped_by"] == HEURISTICS).any()
    assert set(kept["features"].iloc[0]) == set(HEAVY_RANKER_FEATURES)
    # The sampled users' feeds are the table's (up to near-ties of the float32 heavy scores).
    in_feed = kept[kept["feed_rank"].notna()]
    mine = set(zip(in_feed["user_id"], in_feed["tweet_id"], in_feed["feed_rank"].astype(int), strict=True))
    theirs = feeds[feeds["user_id"].isin(set(rows["user_id"]))]
    theirs = set(zip(theirs["user_id"], theirs["tweet_id"], theirs["rank"], strict=True))
    assert len(mine ^ theirs) <= 0.002 * len(theirs)
    # Recall of the heavy top 100 within the light ranker's cut, counted here with pandas.
    top = kept.sort_values(["user_id", "heavy_score", "tweet_id"], ascending=[True, False, True])
    top = top.groupby("user_id").head(100)
    per_user = (top["light_rank"] <= keep).groupby(top["user_id"]).mean()
    recall = light_ranker_recall(sample, keep=keep)
    assert recall["users"] == per_user.size
    assert recall["mean_user_recall"] == round(float(per_user.mean()), 4)
    assert recall["pair_recall"] == round(float((top["light_rank"] <= keep).mean()), 4)
