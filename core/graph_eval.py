"""Measuring graph representations against held-out data (shared by every method's evaluation).

Held-out follow prediction: a deterministic 10% of follows is hidden from the raw input before the
graph jobs are built; every method then proposes, per user, up to k accounts the user does not
already follow (in the training graph) and is not, and recall@k is the share of hidden follows
found among them, averaged over follows (micro).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

HOLDOUT_SHARE = 0.10
HOLDOUT_SALT = 0x5EED_F011


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a fixed, well-mixed hash of int64 values (no Python hash seeding)."""
    z = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z


def holdout_mask(
    follower_ids: np.ndarray, followee_ids: np.ndarray, *, share: float = HOLDOUT_SHARE, salt: int = HOLDOUT_SALT
) -> np.ndarray:
    """True for the follows hidden from training: a pure function of the pair, so any run agrees."""
    with np.errstate(over="ignore"):
        key = _mix64(follower_ids.astype(np.int64)) ^ (_mix64(followee_ids.astype(np.int64) + np.int64(salt)))
    return (_mix64(key.view(np.int64)) % np.uint64(1_000_000)) < np.uint64(round(share * 1_000_000))


def split_follows(follows: pa.Table, *, share: float = HOLDOUT_SHARE) -> tuple[pa.Table, pa.Table]:
    """(training follows, held-out follows) of a contract `follows` table."""
    mask = holdout_mask(follows.column("follower_id").to_numpy(), follows.column("followee_id").to_numpy(), share=share)
    hidden = pa.array(mask)
    return follows.filter(pc.invert(hidden)), follows.filter(hidden)


def follow_recall_at_k(candidates: pa.Table, heldout: pa.Table, *, k: int = 50) -> float:
    """Share of held-out (follower_id, followee_id) pairs found in the follower's top-k candidates.

    `candidates` has columns user_id, candidate_id, score; only each user's k best scores count
    (ties broken by candidate_id), so a method cannot gain by proposing more than k.
    """
    if heldout.num_rows == 0:
        return float("nan")
    import duckdb

    con = duckdb.connect()
    con.register("candidates", candidates)
    con.register("heldout", heldout)
    (found,) = con.execute(
        """
        WITH top AS (
            SELECT user_id, candidate_id FROM candidates
            QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY score DESC, candidate_id) <= ?
        )
        SELECT count(*) FROM heldout h
        JOIN top t ON t.user_id = h.follower_id AND t.candidate_id = h.followee_id
        """,
        [k],
    ).fetchone()
    return found / heldout.num_rows


def popularity_candidates(train_follows: pa.Table, *, k: int = 50) -> pa.Table:
    """The baseline: for each follower, the k most-followed accounts they do not follow and are not."""
    import duckdb

    con = duckdb.connect()
    con.register("follows", train_follows)
    # Over-fetch popular accounts so that after removing those already followed k remain.
    return con.sql(
        """
        WITH popular AS (
            SELECT followee_id AS candidate_id, count(*) AS followers FROM follows
            GROUP BY ALL ORDER BY followers DESC, candidate_id LIMIT ?
        ),
        users AS (SELECT DISTINCT follower_id AS user_id FROM follows)
        SELECT u.user_id, p.candidate_id, p.followers::DOUBLE AS score
        FROM users u CROSS JOIN popular p
        WHERE p.candidate_id <> u.user_id
          AND NOT EXISTS (SELECT 1 FROM follows f WHERE f.follower_id = u.user_id AND f.followee_id = p.candidate_id)
        QUALIFY row_number() OVER (PARTITION BY u.user_id ORDER BY p.followers DESC, p.candidate_id) <= ?
        """,
        params=[k * 4 + 1000, k],
    ).to_arrow_table()


def normalized_mutual_information(labels_true: np.ndarray, labels_pred: np.ndarray) -> float:
    """NMI with arithmetic-mean normalisation (sklearn's default), from the contingency table."""
    if len(labels_true) == 0:
        return float("nan")
    _, t = np.unique(labels_true, return_inverse=True)
    _, p = np.unique(labels_pred, return_inverse=True)
    n = len(t)
    contingency = np.zeros((t.max() + 1, p.max() + 1))
    np.add.at(contingency, (t, p), 1)
    pij = contingency / n
    pi, pj = pij.sum(axis=1), pij.sum(axis=0)
    nz = pij > 0
    mi = float((pij[nz] * np.log(pij[nz] / np.outer(pi, pj)[nz])).sum())
    h_true = float(-(pi[pi > 0] * np.log(pi[pi > 0])).sum())
    h_pred = float(-(pj[pj > 0] * np.log(pj[pj > 0])).sum())
    if h_true == 0 and h_pred == 0:
        return 1.0
    denominator = (h_true + h_pred) / 2
    return mi / denominator if denominator > 0 else 0.0


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    from scipy.stats import rankdata

    labels = np.asarray(labels).astype(bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(np.asarray(scores, dtype=float))
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))
