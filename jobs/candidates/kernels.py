"""numpy kernels of the per-user pipeline: sorted lookups, ranges, runs, per-row top k.

Every function takes and returns plain arrays; "rows" are users (positions in a block of users)
and "columns" are tweets (positions in the pool, tweet id order), so column order is the tie order.
"""

from __future__ import annotations

import numpy as np


def lookup(sorted_keys: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions in `sorted_keys` of the queries found there, which queries were found)."""
    if sorted_keys.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(queries.shape[0], dtype=bool)
    position = np.searchsorted(sorted_keys, queries).clip(0, sorted_keys.shape[0] - 1)
    found = sorted_keys[position] == queries
    return position[found], found


def pairs_in(rows: np.ndarray, ids: np.ndarray, member_rows: np.ndarray, member_ids: np.ndarray) -> np.ndarray:
    """Whether each (rows[i], ids[i]) is among the (member_rows, member_ids) pairs."""
    result = np.zeros(rows.shape[0], dtype=bool)
    if member_rows.shape[0] == 0 or rows.shape[0] == 0:
        return result
    # Pairs as int64 keys: row x (distinct member ids) + the id's position among them.
    universe = np.unique(member_ids)
    position, known = lookup(universe, ids)
    members = np.unique(member_rows * universe.shape[0] + np.searchsorted(universe, member_ids))
    _, result[known] = lookup(members, rows[known] * universe.shape[0] + position)
    return result


def expand_ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges [lo_i, hi_i): (owner i of each position, the positions), concatenated."""
    lengths = hi - lo
    owner = np.repeat(np.arange(lo.shape[0]), lengths)
    offsets = np.cumsum(lengths) - lengths
    positions = np.arange(int(lengths.sum()), dtype=np.int64) - offsets[owner] + lo[owner]
    return owner, positions


def run_starts(sorted_values: np.ndarray) -> np.ndarray:
    """Positions where a run of equal values begins."""
    return (
        np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
        if sorted_values.shape[0]
        else np.zeros(0, dtype=np.int64)
    )


def ranks_within(rows: np.ndarray) -> np.ndarray:
    """1-based position of each element within its run of equal `rows` (rows sorted)."""
    if rows.shape[0] == 0:
        return np.zeros(0, dtype=np.int32)
    starts = run_starts(rows)
    run_start = np.repeat(starts, np.diff(np.r_[starts, rows.shape[0]]))
    return (np.arange(rows.shape[0]) - run_start + 1).astype(np.int32)


def best_per_user(user_rows: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of each user's k best (score descending; among ties the earlier position), for
    `user_rows` ascending with each user's entries in tweet order; returned by user then rank."""
    bounds = (
        np.flatnonzero(np.r_[True, user_rows[1:] != user_rows[:-1], True])
        if user_rows.shape[0]
        else np.zeros(1, dtype=np.int64)
    )
    picks = [lo + np.argsort(-scores[lo:hi], kind="stable")[:k] for lo, hi in zip(bounds[:-1], bounds[1:])]
    return np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)


def top_k_per_row(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exact top-k of each row of a (b, n) score matrix, ties by column (lowest first), -inf never
    selected: (rows, cols, values, ranks), ordered by row then rank."""
    import torch

    b, n = scores.shape
    take = min(k, n)
    if b == 0 or take == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0), empty.astype(np.int32)
    # One more than needed: topk breaks ties arbitrarily, so a row whose k-th and (k+1)-th values
    # are equal is re-selected exactly (rare with float scores).
    values, cols = torch.topk(torch.from_numpy(scores), min(take + 1, n), dim=1, sorted=True)
    values, cols, spare = values.numpy()[:, :take].copy(), cols.numpy()[:, :take].copy(), values.numpy()[:, take:]
    crowded = (values[:, -1] == spare[:, 0]) if spare.shape[1] else np.zeros(b, dtype=bool)
    for row in np.flatnonzero(crowded & np.isfinite(values[:, -1])):
        order = np.lexsort((np.arange(n), -scores[row]))[:take]
        cols[row], values[row] = order, scores[row, order]
    rows = np.repeat(np.arange(b), take)
    cols, values = cols.reshape(-1), values.reshape(-1)
    keep = np.isfinite(values)
    rows, cols, values = rows[keep], cols[keep], values[keep]
    order = np.lexsort((cols, -values, rows))
    rows, cols, values = rows[order], cols[order].astype(np.int64), values[order]
    return rows, cols, values, ranks_within(rows)
