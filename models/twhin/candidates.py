"""Who to follow from TwHIN embeddings: exact top-k by the follow relation's score.

For user u, every account v is scored dot(u, v + t_follow) (batched matrix products in torch);
accounts u already follows and u itself are excluded, and the k best are kept.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from models.twhin.export import table_to_matrix
from models.twhin.train import resolve_device, torch_runtime

CANDIDATES_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("candidate_id", pa.int64(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
    ]
)


def _as_matrix(user_embeddings) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(user_embeddings, pa.Table):
        return table_to_matrix(user_embeddings, "user_id")
    ids, matrix = user_embeddings
    ids = np.asarray(ids, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    return ids[order], np.asarray(matrix, dtype=np.float32)[order]


def twhin_follow_candidates(
    user_embeddings: pa.Table | tuple[np.ndarray, np.ndarray],
    follow_translation,
    train_follows: pa.Table,
    *,
    k: int = 50,
    batch_size: int = 1024,
    device: str = "cpu",
    num_threads: int | None = None,
) -> pa.Table:
    """Per user, the top-k accounts by dot(u, v + t_follow) that u does not follow (in
    `train_follows`: follower_id, followee_id) and is not; a pyarrow Table (user_id, candidate_id,
    score), ordered by user then score descending.

    `user_embeddings` is a `twhin_user_embeddings` table (user_id, embedding) or (ids, matrix).
    Users without an embedding get no candidates; fewer than k rows come back for a user when fewer
    than k accounts are left after the exclusions.
    """
    ids, matrix = _as_matrix(user_embeddings)
    n = ids.shape[0]
    if n == 0 or k <= 0:
        return CANDIDATES_SCHEMA.empty_table()
    torch_device = resolve_device(device)

    # Already-followed pairs as (row, column) indices into the embedding matrix.
    follower = np.asarray(train_follows["follower_id"].to_numpy(), dtype=np.int64)
    followee = np.asarray(train_follows["followee_id"].to_numpy(), dtype=np.int64)
    row = np.searchsorted(ids, follower).clip(0, n - 1)
    col = np.searchsorted(ids, followee).clip(0, n - 1)
    known = (ids[row] == follower) & (ids[col] == followee)
    row, col = row[known], col[known]
    order = np.argsort(row, kind="stable")
    row, col = row[order], col[order]
    row_starts = np.searchsorted(row, np.arange(n + 1))

    take = min(k, n)
    out_users, out_candidates, out_scores = [], [], []
    with torch_runtime(num_threads=num_threads, deterministic=False), torch.no_grad():
        users = torch.tensor(matrix, device=torch_device)
        targets = (
            users + torch.as_tensor(np.asarray(follow_translation, dtype=np.float32), device=torch_device)
        ).T.contiguous()
        for start in range(0, n, batch_size):
            end = min(start + batch_size, n)
            scores = users[start:end] @ targets  # (b, n)
            lo, hi = row_starts[start], row_starts[end]
            mask_rows = np.concatenate([row[lo:hi] - start, np.arange(end - start)])
            mask_cols = np.concatenate([col[lo:hi], np.arange(start, end)])
            scores[torch.from_numpy(mask_rows).to(torch_device), torch.from_numpy(mask_cols).to(torch_device)] = float(
                "-inf"
            )
            best, where = torch.topk(scores, take, dim=1, sorted=True)
            best, where = best.cpu().numpy(), where.cpu().numpy()
            keep = np.isfinite(best)
            out_users.append(np.broadcast_to(ids[start:end, None], best.shape)[keep])
            out_candidates.append(ids[where[keep]])
            out_scores.append(best[keep].astype(np.float64))
    return pa.table(
        [
            pa.array(np.concatenate(out_users)),
            pa.array(np.concatenate(out_candidates)),
            pa.array(np.concatenate(out_scores)),
        ],
        schema=CANDIDATES_SCHEMA,
    )
