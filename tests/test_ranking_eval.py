"""Offline feed metrics (jobs/ranking_eval.py), expected values worked by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jobs.ranking_eval import engagement_value, feed_metrics, positions


def pool() -> pd.DataFrame:
    # user 1: gains 0, 3, 1 on tweets 10, 11, 12; user 2: no gain (left out of the means).
    return pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 2],
            "tweet_id": [10, 11, 12, 20, 21],
            "author_id": [100, 100, 101, 200, 201],
            "is_in_network": [True, False, True, True, True],
            "gain": [0.0, 3.0, 1.0, 0.0, 0.0],
        }
    )


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
    assert got["distinct_authors_at_2"] == pytest.approx(2.0)  # 101 and 100
    assert got["in_network_share_at_2"] == pytest.approx(1.0)
    assert got["coverage"] == pytest.approx(4 / 5)  # 12, 10, 20, 21 of 5 tweets
    assert got["users"] == 1
    perfect = feed_metrics(frame, np.array([3, 1, 2, 1, 2]), k=2)
    assert perfect["ndcg_at_2"] == pytest.approx(1.0) and perfect["recall_at_2"] == pytest.approx(1.0)


def test_rows_a_method_does_not_rank_count_as_not_shown():
    frame = pool()
    got = feed_metrics(frame, np.array([1, np.nan, 2, 1, 2]), k=35)
    assert got["recall_at_35"] == pytest.approx(1 / 4)
    assert got["ndcg_at_35"] == pytest.approx((1 / math.log2(3)) / (3 + 1 / math.log2(3)), abs=1e-6)


@pytest.mark.slow  # about 6 minutes: a world through the training set (and the rankers); `make test-slow`
def test_eval_ranking_command_on_a_generated_world(settings, spark, tmp_path, capsys):
    """`homefeed eval ranking` end to end on a tiny world: the JSON contract, the ceiling recomputed
    here from the truth files, the report written, the models registered."""
    import json

    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    from cli.main import main
    from core.graph_eval import roc_auc
    from core.heads import HEADS
    from jobs.synthetic import WorldConfig, generate_world

    world = tmp_path / "world"
    generate_world(WorldConfig(n_users=150, seed=11), out_dir=world)
    code = main(
        ["eval", "ranking", "--world", str(world), "--days", "3", "--representations", "window-start", "--json"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    result = json.loads(out)
    for head in HEADS:
        assert {"auc", "auc_ceiling", "logloss", "ece"} <= set(result["heads"][head])
    for method in ("ranked", "reverse_chron", "popularity", "als", "oracle"):
        assert {"ndcg_at_35", "recall_at_35", "distinct_authors_at_35"} <= set(result["feed"][method])
        assert 0.0 <= result["feed"][method]["ndcg_at_35"] <= 1.0
    assert result["feed"]["reverse_chron"]["in_network_share_at_35"] == 1.0

    warehouse = world / "eval-ranking" / "warehouse"
    test = DeltaTable(str(warehouse / "tables" / "training_examples")).to_pandas(
        columns=["user_id", "tweet_id", "impression_time", "split", "like"]
    )
    test = test[test["split"] == "test"]
    truth = pq.read_table(world / "truth" / "impressions").to_pandas()
    joined = test.merge(
        truth,
        left_on=["user_id", "tweet_id", "impression_time"],
        right_on=["user_id", "tweet_id", "impression_at"],
        how="left",
    )
    assert result["test_rows"] == len(test) and joined["p_like"].notna().all()
    assert result["heads"]["like"]["auc_ceiling"] == pytest.approx(roc_auc(joined["like"], joined["p_like"]), abs=1e-6)

    report = result["report"]
    html = Path(report).read_text()
    assert report.endswith(".html") and html.count("<svg") >= len(HEADS)
    manifest = json.loads((warehouse / "models" / "heavy_ranker" / "v0001" / "manifest.json").read_text())
    assert manifest["training_window"] == result["window"] and manifest["seed"] == 0


def _at(hours: float):
    return pd.Timestamp("2012-07-01", tz="UTC") + pd.Timedelta(hours=hours)


def test_higgs_gains_pools_and_pair_features_by_hand():
    from evaluation.higgs_ranking import gains, pair_features, pools

    engagements = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 3, 1],
            "author_id": [10, 10, 11, 10, 11, 11],
            "action": ["retweet", "reply", "profile_click", "retweet", "retweet", "reply"],
            "created_at": [_at(1), _at(2), _at(3), _at(4), _at(5), _at(30)],
        }
    )
    follows = pd.DataFrame({"follower_id": [1, 12], "followee_id": [12, 1]})
    got = gains(engagements, _at(0), _at(24)).set_index(["user_id", "author_id"])["gain"].to_dict()
    assert got == {(1, 10): 1.0 + 13.5, (1, 11): 12.0, (2, 10): 1.0, (3, 11): 1.0}
    history = engagements[engagements["created_at"] < _at(24)]
    pool = pools(np.array([1]), history, follows)
    # followee 12, engaged 10 and 11, popular (all of 10 and 11): no duplicates, never the user itself.
    assert sorted(pool["author_id"]) == [10, 11, 12]
    features = pair_features(pool, history, follows, cut=_at(24)).set_index("author_id")
    assert (
        features.loc[10, "retweets"] == 1 and features.loc[10, "replies"] == 1 and features.loc[10, "engagements"] == 2
    )
    assert features.loc[10, "hours_since_last"] == pytest.approx(22.0)
    assert features.loc[10, "author_received"] == 3 and features.loc[10, "author_fans"] == 2
    assert features.loc[12, "follows"] == 1.0 and features.loc[12, "followed_by"] == 1.0
    assert features.loc[12, "engagements"] == 0 and features.loc[11, "user_given"] == 3


def test_eval_ranking_on_a_higgs_style_import(spark, tmp_path, capsys):
    """`--higgs` reads only raw engagements, tweets and follows: a generated world's raw tables stand in."""
    import json

    from cli.main import main
    from jobs.synthetic import WorldConfig, generate_world

    generate_world(WorldConfig(n_users=120, seed=2), out_dir=tmp_path / "imported")
    code = main(["eval", "ranking", "--higgs", str(tmp_path / "imported"), "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    result = json.loads(out)
    assert result["items"] == "authors" and set(result["feed"]) == {"ranked", "reverse_chron", "popularity", "als"}
    for metrics in result["feed"].values():
        assert 0.0 <= metrics["ndcg_at_35"] <= 1.0 and metrics["users"] == result["test_users"] > 0
    assert Path(result["report"]).read_text().startswith("<!DOCTYPE html>")
    assert main(["eval", "ranking", "--higgs", str(tmp_path / "missing")]) == 2
