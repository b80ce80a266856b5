"""Offline feed metrics: how well an ordering of each user's pool puts the held-out engagement value on top.

A pool row has a `gain`: the engagement value of what the user actually did with the tweet,
max(0, Σ head weight × label) (negative feedback only lowers the gain to 0: NDCG needs gains >= 0).
An ordering is a 1-based `position` per ranked row; rows a method does not rank (e.g. reverse
chronological leaves out-of-network tweets out) have none and count as not shown.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd


def engagement_value(labels: pd.DataFrame, weights: Mapping[str, float]) -> np.ndarray:
    """max(0, Σ weight × label) per row, over the heads in `weights` that `labels` has."""
    value = np.zeros(len(labels))
    for head, weight in weights.items():
        if head in labels:
            value += weight * labels[head].to_numpy(dtype=np.float64)
    return np.maximum(value, 0.0)


def positions(pool: pd.DataFrame, score: np.ndarray, *, ranked: np.ndarray | None = None) -> np.ndarray:
    """1-based position of each row within its user by descending `score` (ties: tweet_id ascending);
    rows where `ranked` is False get NaN."""
    keep = np.ones(len(pool), dtype=bool) if ranked is None else np.asarray(ranked, dtype=bool)
    frame = pd.DataFrame(
        {
            "user_id": pool["user_id"].to_numpy(),
            "tweet_id": pool["tweet_id"].to_numpy(),
            "score": np.asarray(score, dtype=np.float64),
        }
    )
    frame = frame[keep]
    order = frame.sort_values(["user_id", "score", "tweet_id"], ascending=[True, False, True], kind="mergesort")
    out = np.full(len(pool), np.nan)
    out[order.index.to_numpy()] = order.groupby("user_id").cumcount().to_numpy() + 1
    return out


def feed_metrics(pool: pd.DataFrame, position: np.ndarray, *, k: int = 35) -> dict[str, float]:
    """Means over users with a positive total gain: NDCG@k, recall@k (share of the user's gain in the
    top k), distinct authors and in-network share in the top k; plus coverage, the share of the
    pool's distinct tweets that appear in someone's top k.

    `pool`: user_id, tweet_id, author_id, is_in_network, gain; `position` aligned with it.
    """
    frame = pool.assign(position=np.asarray(position, dtype=np.float64)).reset_index(drop=True)
    frame["discount"] = 1.0 / np.log2(frame["position"].fillna(np.inf) + 1.0)
    top = frame[frame["position"] <= k]
    dcg = (top["gain"] * top["discount"]).groupby(top["user_id"]).sum()
    gained = frame.groupby("user_id")["gain"].sum()
    users = gained[gained > 0].index
    ideal = frame.sort_values(["user_id", "gain"], ascending=[True, False])
    ideal = ideal.assign(rank=ideal.groupby("user_id").cumcount() + 1)
    ideal = ideal[ideal["rank"] <= k]
    idcg = (ideal["gain"] / np.log2(ideal["rank"] + 1.0)).groupby(ideal["user_id"]).sum()
    ndcg = (dcg.reindex(users, fill_value=0.0) / idcg.reindex(users)).fillna(0.0)
    recall = top.groupby("user_id")["gain"].sum().reindex(users, fill_value=0.0) / gained.reindex(users)
    top_users = top[top["user_id"].isin(users)]
    authors = top_users.groupby("user_id")["author_id"].nunique().reindex(users, fill_value=0)
    in_network = top_users.groupby("user_id")["is_in_network"].mean()
    return {
        f"ndcg_at_{k}": _mean(ndcg),
        f"recall_at_{k}": _mean(recall),
        f"distinct_authors_at_{k}": _mean(authors),
        f"in_network_share_at_{k}": _mean(in_network),
        "coverage": float(top["tweet_id"].nunique() / max(frame["tweet_id"].nunique(), 1)),
        "users": int(len(users)),
    }


def _mean(series: pd.Series) -> float | None:
    return None if series.empty else round(float(series.mean()), 6)
