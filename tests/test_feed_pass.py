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
