"""`homefeed eval ranking`: the rankers and the feed measured on a synthetic world's held-out last day.

1. Bronze tables from the world's raw input, as of the world's end, into the evaluation warehouse.
2. The training set with a time split (`TrainingWindow.ending_at(world end, days)`: the last day is
   `test`), then both rankers trained and registered there (`jobs.train_rankers`).
3. Heads, on the test impressions: AUC, log loss and expected calibration error (before and after
   Platt scaling) of the heavy ranker, next to the ceiling, the AUC of the world's true
   probabilities of the same impressions (`truth/impressions`).
4. Feeds: each user's test impressions are the pool, the gain of a row is the engagement value of
   what the user did (`jobs.ranking_eval`). Orderings compared: the ranked feed (heavy ranker +
   heuristics), the heavy ranker's score alone (what the heuristics cost), reverse-chronological in-network, popularity at the impression (engagements in the
   last 24 h), Spark MLlib ALS on the training engagements (user x author: the test day's tweets
   are new, so items are their authors) and the oracle (the true expected value).
5. A self-contained HTML report in the warehouse (`models.report`).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.delta_commits import last_commit_metadata
from core.feed_heuristics import FeedHeuristics, rank_user_feed
from core.graph_eval import roc_auc
from core.heads import HEADS
from core.settings import HomefeedSettings
from core.storage import is_delta_table
from evaluation.worlds import world_end_time
from features.labels import ACTION_OF_LABEL, LabelConfig
from features.realgraph import POSITIVE_ACTIONS
from features.registry import registry_hash
from jobs.delta_io import read_delta
from jobs.ranking_eval import engagement_value, feed_metrics, positions
from jobs.synthetic.model import CLICK_DWELL_SIGMA, click_dwell_log_mean
from jobs.train_rankers import (
    HEAVY_RANKER,
    LIGHT_RANKER,
    finite_metric,
    ranker_inputs,
    read_training_examples,
    split_of,
    train_rankers,
)
from jobs.training_set import TrainingWindow
from models.heavy_ranker import DEFAULT_HEAD_WEIGHTS, HeavyRanker, HeavyRankerConfig, final_scores, log_loss, sigmoid
from models.light_ranker import LightRanker
from models.ranker_features import feature_matrix
from models.registry import ModelRegistry
from models.report import (
    expected_calibration_error,
    histogram,
    reliability_bins,
    render_ranking_report,
    write_ranking_report,
)
from orchestration.side_builds import build_eval_warehouse
from orchestration.training_set import TRAINING_TABLE, build_training_set

FEED_K = 35
METHODS = ("ranked", "heavy_ranker_only", "reverse_chron", "popularity", "als", "oracle")
# Head -> the world's true probability column (good_click and reply_engaged_by_author are derived below).
TRUE_PROBABILITY = {label: f"p_{action}" for label, action in ACTION_OF_LABEL.items()}
REPORT_NAME = "ranking_report.html"


def true_head_probabilities(truth: pd.DataFrame, quality: np.ndarray, *, reply_engaged_rate: float) -> pd.DataFrame:
    """Each head's true probability per impression. good_click = P(click) × P(dwell >= 10 s), the
    dwell lognormal given interest and quality; reply_engaged_by_author = P(reply) × the training
    rate of author engagement after a reply (the world draws it outside the per-impression model)."""
    from scipy.special import ndtr

    out = pd.DataFrame({head: truth[column].to_numpy(np.float64) for head, column in TRUE_PROBABILITY.items()})
    log_mean = click_dwell_log_mean(truth["interest_match"].to_numpy(np.float64), quality)
    long_enough = 1.0 - ndtr((np.log(LabelConfig().good_click_dwell_ms) - log_mean) / CLICK_DWELL_SIGMA)
    out["good_click"] = truth["p_click"].to_numpy(np.float64) * long_enough
    out["reply_engaged_by_author"] = out["reply"] * reply_engaged_rate
    return out[list(HEADS)]


def read_truth(world_dir: Path, test: pd.DataFrame) -> pd.DataFrame:
    """The truth rows of the test impressions, aligned with `test` (user_id, tweet_id, impression_time)."""
    truth = (
        pq.read_table(world_dir / "truth" / "impressions")
        .to_pandas()
        .rename(columns={"impression_at": "impression_time"})
    )
    quality = pq.read_table(world_dir / "truth" / "tweets", columns=["tweet_id", "quality"]).to_pandas()
    keys = test[["user_id", "tweet_id", "impression_time"]].copy()
    keys["impression_time"] = pd.to_datetime(keys["impression_time"], utc=True)
    truth["impression_time"] = pd.to_datetime(truth["impression_time"], utc=True)
    joined = keys.merge(
        truth.drop_duplicates(["user_id", "tweet_id", "impression_time"]),
        on=["user_id", "tweet_id", "impression_time"],
        how="left",
    )
    joined = joined.merge(quality, on="tweet_id", how="left")
    missing = int(joined["p_like"].isna().sum())
    if missing:
        raise ValueError(f"{missing} test impressions have no truth row in {world_dir / 'truth'}")
    return joined


def head_report(
    labels: np.ndarray, calibrated: np.ndarray, uncalibrated: np.ndarray, truth: pd.DataFrame
) -> tuple[dict, dict]:
    """Per head metrics and calibration bins."""
    heads, bins = {}, {}
    for j, head in enumerate(HEADS):
        y = labels[:, j]
        ceiling = roc_auc(y, truth[head].to_numpy())
        heads[head] = {
            "auc": finite_metric(roc_auc(y, calibrated[:, j])),
            "auc_ceiling": finite_metric(ceiling),
            "logloss": finite_metric(log_loss(calibrated[:, j], y)),
            "logloss_ceiling": finite_metric(log_loss(truth[head].to_numpy(), y)),
            "ece": finite_metric(expected_calibration_error(calibrated[:, j], y)),
            "ece_uncalibrated": finite_metric(expected_calibration_error(uncalibrated[:, j], y)),
            "positives": int(y.sum()),
            "rows": int(len(y)),
        }
        bins[head] = {
            "uncalibrated": reliability_bins(uncalibrated[:, j], y),
            "calibrated": reliability_bins(calibrated[:, j], y),
        }
    return heads, bins


def als_scores(spark, interactions: pd.DataFrame, pairs: pd.DataFrame, *, rank: int = 16, seed: int = 0) -> np.ndarray:
    """Spark MLlib ALS (implicit feedback) on `interactions` (user_id, author_id, count); the score of each
    (user_id, author_id) of `pairs`, -inf where ALS knows the user or the author not."""
    from pyspark.ml.recommendation import ALS

    users, authors = pd.Index(interactions["user_id"].unique()), pd.Index(interactions["author_id"].unique())
    ratings = pd.DataFrame(
        {
            "u": users.get_indexer(interactions["user_id"]),
            "i": authors.get_indexer(interactions["author_id"]),
            "rating": interactions["count"].astype(np.float32),
        }
    )
    model = ALS(
        rank=rank,
        maxIter=10,
        regParam=0.1,
        alpha=10.0,
        implicitPrefs=True,
        userCol="u",
        itemCol="i",
        ratingCol="rating",
        seed=seed,
        coldStartStrategy="nan",
    ).fit(spark.createDataFrame(ratings))

    def factors(frame, size: int) -> tuple[np.ndarray, np.ndarray]:
        table, known = np.zeros((size, rank)), np.zeros(size, dtype=bool)
        table[frame["id"].to_numpy()] = np.stack(frame["features"].to_numpy())
        known[frame["id"].to_numpy()] = True
        return table, known

    user_table, user_known = factors(model.userFactors.toPandas(), len(users))
    item_table, item_known = factors(model.itemFactors.toPandas(), len(authors))
    u, i = users.get_indexer(pairs["user_id"]), authors.get_indexer(pairs["author_id"])
    ok = (u >= 0) & (i >= 0)
    ok[ok] = user_known[u[ok]] & item_known[i[ok]]
    scores = np.full(len(pairs), -np.inf)
    scores[ok] = np.einsum("ij,ij->i", user_table[u[ok]], item_table[i[ok]])
    return scores


def ranked_feed_positions(pool: pd.DataFrame, heavy_score: np.ndarray, heuristics: FeedHeuristics) -> np.ndarray:
    """Positions from the heuristics applied to each user's scored pool (rows the feed leaves out: NaN)."""
    frame = pd.DataFrame(
        {
            "row": np.arange(len(pool)),
            "user_id": pool["user_id"].to_numpy(),
            "tweet_id": pool["tweet_id"].to_numpy(),
            "author_id": pool["author_id"].to_numpy(),
            "heavy_score": heavy_score,
            "is_in_network": pool["is_in_network"].to_numpy(bool),
            "is_reply": pool["is_reply"].to_numpy(bool),
            "fatigue_days_since": np.nan,
        }
    )
    out = np.full(len(pool), np.nan)
    for _, rows in frame.groupby("user_id", sort=False):
        feed = rank_user_feed(rows.drop(columns="user_id"), heuristics)
        out[feed["row"].to_numpy()] = feed["rank"].to_numpy()
    return out


def _build(
    settings: HomefeedSettings, world_dir: Path, warehouse: Path, window: TrainingWindow, *, daily: bool, rebuild: bool
) -> None:
    from orchestration.resource_bindings import resources_from_settings

    as_of = world_end_time(world_dir)
    fingerprint = hashlib.sha256(f"{world_dir.resolve()}:{as_of.isoformat()}".encode()).hexdigest()[:16]
    build_eval_warehouse(
        settings,
        raw_dir=world_dir / "raw",
        warehouse=warehouse,
        as_of=as_of,
        fingerprint=fingerprint,
        rebuild=rebuild,
        selection="group:bronze or key:mutual_follows",
    )
    local = settings.model_copy(update={"warehouse": warehouse, "raw_input": world_dir / "raw", "as_of": as_of})
    table_dir = local.tables_dir / TRAINING_TABLE
    if not rebuild and is_delta_table(table_dir):
        metadata = last_commit_metadata(table_dir)
        representations = "daily" if daily else "window_start"
        if (metadata.get("window"), metadata.get("registry_hash"), metadata.get("representations")) == (
            window.as_dict(),
            registry_hash(),
            representations,
        ):
            return
    spark = resources_from_settings(local)["spark"].get_session()
    build_training_set(local, spark, window=window, daily=daily, rebuild=rebuild)


def test_pool(test: pd.DataFrame, weights: dict[str, float]) -> pd.DataFrame:
    """The test impressions as pools: keys, in-network (the user follows the author), reply, gain."""
    return pd.DataFrame(
        {
            "user_id": test["user_id"],
            "tweet_id": test["tweet_id"],
            "author_id": test["author_id"],
            "is_in_network": test["user_author__follows_author"].astype(bool),
            "is_reply": test["tweet__is_reply"].astype(bool),
            "gain": engagement_value(test[list(HEADS)], weights),
        }
    )


def interactions_before(spark, tables_dir: Path, moment: datetime) -> pd.DataFrame:
    """(user_id, author_id, count) of the positive engagements before `moment` with someone else's tweets."""
    from pyspark.sql import functions as F

    engagements = read_delta(spark, tables_dir / "engagements")
    tweets = read_delta(spark, tables_dir / "tweets").select("tweet_id", "author_id")
    return (
        engagements.where(F.col("action").isin(*POSITIVE_ACTIONS) & (F.col("created_at") < F.lit(moment)))
        .join(tweets, on="tweet_id", how="inner")
        .where(F.col("user_id") != F.col("author_id"))
        .groupBy("user_id", "author_id")
        .count()
        .toPandas()
    )


def baseline_orderings(
    spark, test: pd.DataFrame, pool: pd.DataFrame, *, tables_dir: Path, test_start: datetime, oracle_score: np.ndarray
) -> dict[str, np.ndarray]:
    """Positions of the reverse-chronological, popularity, ALS and oracle orderings of the pools."""
    created = pd.to_datetime(test["impression_time"], utc=True) - pd.to_timedelta(test["tweet__age_hours"], unit="h")
    popularity = (test["tweet__likes_24h"] + test["tweet__retweets_24h"] + test["tweet__replies_24h"]).to_numpy(float)
    history = interactions_before(spark, tables_dir, test_start)
    return {
        "reverse_chron": positions(
            pool, created.astype("int64").to_numpy(float), ranked=pool["is_in_network"].to_numpy()
        ),
        "popularity": positions(pool, popularity),
        "als": positions(pool, als_scores(spark, history, pool)),
        "oracle": positions(pool, oracle_score),
    }


def evaluate_ranking(
    settings: HomefeedSettings,
    world_dir: Path,
    warehouse: Path | None = None,
    *,
    days: float = 5.0,
    daily: bool = True,
    rebuild: bool = False,
    heavy_config: HeavyRankerConfig = HeavyRankerConfig(),
    heuristics: FeedHeuristics = FeedHeuristics(),
) -> dict:
    """Build, train and measure (module docstring); returns the JSON result, whose `report` is the HTML path."""
    from orchestration.resource_bindings import resources_from_settings

    warehouse = (warehouse or world_dir / "eval-ranking" / "warehouse").resolve()
    window = TrainingWindow.ending_at(world_end_time(world_dir), days=days)
    _build(settings, world_dir, warehouse, window, daily=daily, rebuild=rebuild)
    examples = read_training_examples(warehouse / "tables")
    trained = train_rankers(warehouse, heavy_config=heavy_config, examples=examples)
    registry = ModelRegistry.under(warehouse)
    heavy = HeavyRanker.load(registry.get(HEAVY_RANKER, trained["models"][HEAVY_RANKER]["version"]).path)
    light = LightRanker.load(registry.get(LIGHT_RANKER, trained["models"][LIGHT_RANKER]["version"]).path)

    table = examples[0]
    test_table = split_of(table, "test")
    test, inputs = test_table.to_pandas(), ranker_inputs(test_table)
    logits = heavy.logits(inputs)
    calibrated, uncalibrated = heavy.calibrated(logits), sigmoid(logits)
    true_probabilities = _true_probabilities(world_dir, test, split_of(table, "train"))
    heads, calibration = head_report(inputs.labels, calibrated, uncalibrated, true_probabilities)

    weights = dict(DEFAULT_HEAD_WEIGHTS)
    heavy_score = final_scores(calibrated, heavy.heads, weights)
    pool = test_pool(test, weights)
    spark = resources_from_settings(settings.model_copy(update={"warehouse": warehouse}))["spark"].get_session()
    orderings = {
        "ranked": ranked_feed_positions(pool, heavy_score, heuristics),
        "heavy_ranker_only": positions(pool, heavy_score),
        **baseline_orderings(
            spark,
            test,
            pool,
            tables_dir=warehouse / "tables",
            test_start=window.test_start,
            oracle_score=final_scores(true_probabilities.to_numpy(), HEADS, weights),
        ),
    }
    feed = {method: feed_metrics(pool, orderings[method], k=FEED_K) for method in METHODS}
    result = {
        "world": str(world_dir),
        "warehouse": str(warehouse),
        "window": window.as_dict(),
        "test_rows": int(len(test)),
        "test_users": int(test["user_id"].nunique()),
        "mean_pool_size": round(float(len(test) / max(test["user_id"].nunique(), 1)), 2),
        "model": {
            name: {"version": trained["models"][name]["version"], "promoted": trained["models"][name]["promoted"]}
            for name in trained["models"]
        },
        "heads": heads,
        "feed": feed,
        "light_ranker": trained["models"][LIGHT_RANKER]["metrics"],
        "ratios": _ratios(feed),
    }
    engaged = pool["gain"].to_numpy() > 0
    score_histograms = {
        "heavy score": _pos_neg_histograms(heavy_score, engaged),
        "light score": _pos_neg_histograms(light.predict(feature_matrix(test_table, light.feature_names)), engaged),
    }
    report = write_ranking_report(
        warehouse / REPORT_NAME,
        render_ranking_report(result, calibration=calibration, score_histograms=score_histograms),
    )
    result["report"] = str(report)
    (warehouse / "ranking_eval.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def _pos_neg_histograms(scores: np.ndarray, positive: np.ndarray) -> dict:
    lo, hi = float(np.nanmin(scores)), float(np.nanmax(scores))
    return {
        "positives": histogram(scores[positive], range_=(lo, hi)),
        "negatives": histogram(scores[~positive], range_=(lo, hi)),
    }


def _ratios(feed: dict) -> dict:
    ranked = feed["ranked"]["ndcg_at_35"] or 0.0

    def ratio(method: str) -> float | None:
        other = feed[method]["ndcg_at_35"]
        return round(ranked / other, 4) if other else None

    return {f"ranked_ndcg_over_{method}": ratio(method) for method in METHODS if method != "ranked"}


def _true_probabilities(world_dir: Path, test: pd.DataFrame, train: pa.Table) -> pd.DataFrame:
    """The world's true probability of each head for the test rows; reply_engaged_by_author's from
    the train split's share of replies the author engaged back with."""
    train_labels = train.select(["reply", "reply_engaged_by_author"]).to_pandas()
    reply_engaged_rate = float(train_labels["reply_engaged_by_author"].sum() / max(train_labels["reply"].sum(), 1))
    truth = read_truth(world_dir, test)
    return true_head_probabilities(truth, truth["quality"].to_numpy(np.float64), reply_engaged_rate=reply_engaged_rate)
