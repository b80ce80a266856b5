"""`homefeed eval ranking --higgs DIR`: the feed metrics of `homefeed eval ranking` on the real Higgs
Twitter import, with a time split and authors as items.

Higgs has no impressions (so no heads to train or calibrate) and its tweets are pseudo-posts (one
per author and hour), so the items are authors: a user's pool is the authors they follow, the
authors they engaged with before the cut, and the most engaged-with authors before the cut; a
row's gain is the engagement value (`DEFAULT_HEAD_WEIGHTS`: retweet 1.0, reply 13.5, profile click
as good_profile_click 12.0) of what the user did to the author's posts after the cut.

* `ranked`: an xgboost ranker (the light ranker's configuration) over user-author interaction,
  follow and popularity features, trained to predict a positive gain in the day before the cut
  from the history before that day, then applied with the history before the cut;
* `reverse_chron`: followed authors, newest post first (others not shown);
* `popularity`: engagements the author received before the cut;
* `als`: Spark MLlib implicit ALS on the user x author engagements before the cut;
* no `oracle`: a real dataset has no true probabilities.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from evaluation.ranking import FEED_K, als_scores
from features.labels import ACTION_OF_LABEL
from jobs.ranking_eval import feed_metrics, positions
from models.heavy_ranker import DEFAULT_HEAD_WEIGHTS
from models.light_ranker import LightRankerConfig, train_light_ranker

ACTION_WEIGHTS = {action: DEFAULT_HEAD_WEIGHTS[label] for label, action in ACTION_OF_LABEL.items()}
PAIR_FEATURES = (
    "retweets",
    "replies",
    "profile_clicks",
    "engagements",
    "hours_since_last",
    "follows",
    "followed_by",
    "author_received",
    "author_received_24h",
    "author_fans",
    "user_given",
)
POPULAR_AUTHORS = 50


def read_higgs(import_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(engagements with author_id, follows) of a `homefeed import-higgs` output, self-engagements dropped."""
    raw = import_dir / "raw"
    engagements = pq.read_table(
        raw / "engagements", columns=["user_id", "tweet_id", "action", "created_at"]
    ).to_pandas()
    tweets = pq.read_table(raw / "tweets", columns=["tweet_id", "author_id"]).to_pandas()
    engagements = engagements.merge(tweets, on="tweet_id", how="inner")
    engagements = engagements[engagements["user_id"] != engagements["author_id"]]
    follows = pq.read_table(raw / "follows", columns=["follower_id", "followee_id"]).to_pandas()
    return engagements, follows


def gains(engagements: pd.DataFrame, start: datetime, end: datetime) -> pd.DataFrame:
    """(user_id, author_id, gain): Σ action weight over the engagements in [start, end)."""
    window = engagements[(engagements["created_at"] >= start) & (engagements["created_at"] < end)]
    weighted = window.assign(gain=window["action"].map(ACTION_WEIGHTS).fillna(0.0))
    return weighted.groupby(["user_id", "author_id"], as_index=False)["gain"].sum()


def pools(users: np.ndarray, history: pd.DataFrame, follows: pd.DataFrame) -> pd.DataFrame:
    """(user_id, author_id) for each user: followed authors, authors engaged with in `history`, the
    most engaged-with authors of `history`; never the user."""
    followed = follows.rename(columns={"follower_id": "user_id", "followee_id": "author_id"})
    popular = history.groupby("author_id").size().nlargest(POPULAR_AUTHORS).index.to_numpy()
    parts = [
        followed[followed["user_id"].isin(users)][["user_id", "author_id"]],
        history[history["user_id"].isin(users)][["user_id", "author_id"]],
        pd.DataFrame({"user_id": np.repeat(users, len(popular)), "author_id": np.tile(popular, len(users))}),
    ]
    pool = pd.concat(parts, ignore_index=True).drop_duplicates()
    return pool[pool["user_id"] != pool["author_id"]].reset_index(drop=True)


def pair_features(pool: pd.DataFrame, history: pd.DataFrame, follows: pd.DataFrame, *, cut: datetime) -> pd.DataFrame:
    """`pool` plus PAIR_FEATURES from the engagements before `cut` (`history`) and the follow graph."""
    counts = pd.crosstab([history["user_id"], history["author_id"]], history["action"])
    by_pair = history.groupby(["user_id", "author_id"])["created_at"]
    pair = pd.DataFrame(
        {
            "retweets": counts.get("retweet", 0),
            "replies": counts.get("reply", 0),
            "profile_clicks": counts.get("profile_click", 0),
            "engagements": counts.sum(axis=1),
            "hours_since_last": (cut - by_pair.max()).dt.total_seconds() / 3600.0,
        }
    ).reset_index()
    recent = history[history["created_at"] >= cut - timedelta(hours=24)]
    author = (
        pd.DataFrame(
            {
                "author_received": history.groupby("author_id").size(),
                "author_fans": history.groupby("author_id")["user_id"].nunique(),
            }
        )
        .join(recent.groupby("author_id").size().rename("author_received_24h"), how="left")
        .reset_index()
    )
    user = history.groupby("user_id").size().rename("user_given").reset_index()
    edges = follows.rename(columns={"follower_id": "user_id", "followee_id": "author_id"}).drop_duplicates()
    reverse = edges.rename(columns={"user_id": "author_id", "author_id": "user_id"})
    out = (
        pool.merge(pair, on=["user_id", "author_id"], how="left")
        .merge(author, on="author_id", how="left")
        .merge(user, on="user_id", how="left")
        .merge(edges.assign(follows=1.0), on=["user_id", "author_id"], how="left")
        .merge(reverse.assign(followed_by=1.0), on=["user_id", "author_id"], how="left")
    )
    out["hours_since_last"] = out["hours_since_last"].fillna(24.0 * 30)
    return out.fillna(0.0)


def labelled_pool(engagements: pd.DataFrame, follows: pd.DataFrame, *, cut: datetime, end: datetime) -> pd.DataFrame:
    """Users with a positive gain in [cut, end): their pools with the features as of `cut` and the gain."""
    history = engagements[engagements["created_at"] < cut]
    target = gains(engagements, cut, end)
    users = target.loc[target["gain"] > 0, "user_id"].unique()
    pool = pair_features(pools(users, history, follows), history, follows, cut=cut)
    pool = pool.merge(target, on=["user_id", "author_id"], how="left").fillna({"gain": 0.0})
    return pool[pool.groupby("user_id")["gain"].transform("sum") > 0].reset_index(drop=True)


def evaluate_higgs_ranking(spark, import_dir: Path, *, test_days: float = 2.0, seed: int = 0) -> dict:
    engagements, follows = read_higgs(import_dir)
    end = engagements["created_at"].max() + timedelta(microseconds=1)
    cut = end - timedelta(days=test_days)
    train_cut = cut - timedelta(days=1)
    train = labelled_pool(engagements, follows, cut=train_cut, end=cut)
    test = labelled_pool(engagements, follows, cut=cut, end=end)
    validation_users = train["user_id"].drop_duplicates().sample(frac=0.2, random_state=seed)
    is_validation = train["user_id"].isin(validation_users).to_numpy()
    features = list(PAIR_FEATURES)
    matrix = train[features].to_numpy(np.float32)
    label = (train["gain"] > 0).to_numpy(np.float32)
    model = train_light_ranker(
        matrix[~is_validation],
        label[~is_validation],
        matrix[is_validation],
        label[is_validation],
        feature_names=features,
        config=LightRankerConfig(seed=seed),
    )
    pool = test.assign(is_in_network=test["follows"] > 0, tweet_id=test["author_id"])  # the item is the author
    history = engagements[engagements["created_at"] < cut]
    latest_post = history.groupby("author_id")["created_at"].max()
    newest = pool["author_id"].map(latest_post).fillna(pd.Timestamp(0, tz="UTC")).astype("int64").to_numpy(float)
    orderings = {
        "ranked": positions(pool, model.predict(pool[features].to_numpy(np.float32))),
        "reverse_chron": positions(pool, newest, ranked=pool["is_in_network"].to_numpy()),
        "popularity": positions(pool, pool["author_received"].to_numpy(float)),
        "als": positions(
            pool,
            als_scores(
                spark, history.groupby(["user_id", "author_id"]).size().rename("count").reset_index(), pool, seed=seed
            ),
        ),
    }
    return {
        "dataset": str(import_dir),
        "items": "authors",
        "cut": cut.isoformat(),
        "train_cut": train_cut.isoformat(),
        "test_users": int(pool["user_id"].nunique()),
        "mean_pool_size": round(len(pool) / max(pool["user_id"].nunique(), 1), 2),
        "ranker_best_iteration": model.best_iteration,
        "feed": {name: feed_metrics(pool, order, k=FEED_K) for name, order in orderings.items()},
    }
