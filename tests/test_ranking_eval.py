"""Offline feed metrics (jobs/ranking_eval.py), expected values worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from jobs.ranking_eval import engagement_value, feed_metrics, positions


def pool() -> pd.DataFrame:
    # user 1: gains 0, 3, 1 on tweets 10, 11, 12; user 2: no gain (left out of the means).
    return pd.DataFrame({
        "user_id": [1, 1, 1, 2, 2],
        "tweet_id": [10, 11, 12, 20, 21],
        "author_id": [100, 100, 101, 200, 201],
        "is_in_network": [True, False, True, True, True],
        "gain": [0.0, 3.0, 1.0, 0.0, 0.0],
    })


def test_engagement_value_is_the_clipped_weighted_sum_of_what_happened():
    labels = pd.DataFrame({"like": [1, 1, 0], "reply": [0, 1, 0], "negative_feedback": [0, 1, 1]})
    weights = {"like": 0.5, "reply": 13.5, "negative_feedback": -74.0, "report": -369.0}
    np.testing.assert_allclose(engagement_value(labels, weights), [0.5, 0.0, 0.0])


def test_positions_by_score_with_tweet_id_breaking_ties_and_unranked_rows():
    frame = pool()
    got = positions(frame, np.array([1.0, 5.0, 1.0, 0.0, 2.0]))
    np.testing.assert_array_equal(got, [2, 1, 3, 2, 1])
    got = positions(frame, np.array([1.0, 5.0, 1.0, 0.0, 2.0]), ranked=frame["is_in_network"].to_numpy())
    np.testing.assert_array_equal(got, [1, np.nan, 2, 2, 1])


def test_ndcg_recall_diversity_and_coverage_by_hand():
    frame = pool()
    # Order for user 1: tweet 12 (gain 1), 10 (gain 0), 11 (gain 3).
    got = feed_metrics(frame, np.array([2, 3, 1, 1, 2]), k=2)
    dcg = 1 / math.log2(2) + 0 / math.log2(3)
    idcg = 3 / math.log2(2) + 1 / math.log2(3)
    assert got["ndcg_at_2"] == pytest.approx(dcg / idcg, abs=1e-6)
    assert got["recall_at_2"] == pytest.approx(1 / 4)
    assert got["distinct_authors_at_2"] == pytest.approx(2.0)   # 101 and 100
    assert got["in_network_share_at_2"] == pytest.approx(1.0)
    assert got["coverage"] == pytest.approx(4 / 5)              # 12, 10, 20, 21 of 5 tweets
    assert got["users"] == 1
    perfect = feed_metrics(frame, np.array([3, 1, 2, 1, 2]), k=2)
    assert perfect["ndcg_at_2"] == pytest.approx(1.0) and perfect["recall_at_2"] == pytest.approx(1.0)


def test_rows_a_method_does_not_rank_count_as_not_shown():
    frame = pool()
    got = feed_metrics(frame, np.array([1, np.nan, 2, 1, 2]), k=35)
    assert got["recall_at_35"] == pytest.approx(1 / 4)
    assert got["ndcg_at_35"] == pytest.approx((1 / math.log2(3)) / (3 + 1 / math.log2(3)), abs=1e-6)
