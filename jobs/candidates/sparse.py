"""Sparse retrieval: key -> tweet indexes, and the per-user top k of weighted sums over a user's keys.

Five of the six sources are `sparse_top_k` over a different `SparseIndex` (docs/candidates.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jobs.candidates.kernels import best_per_user, expand_ranges, ranks_within, run_starts


@dataclass(frozen=True)
class SparseIndex:
    """key -> (tweet column, score) lists, as CSR: entries of keys[i] are [starts[i], starts[i+1])."""

    keys: np.ndarray
    starts: np.ndarray
    cols: np.ndarray
    scores: np.ndarray

    @classmethod
    def build(cls, keys: np.ndarray, cols: np.ndarray, scores: np.ndarray) -> SparseIndex:
        keys, cols = np.asarray(keys, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        order = np.lexsort((cols, keys))
        keys, cols, scores = keys[order], cols[order], np.asarray(scores, dtype=np.float64)[order]
        unique, first = np.unique(keys, return_index=True)
        return cls(keys=unique, starts=np.r_[first, keys.shape[0]].astype(np.int64), cols=cols, scores=scores)

    @classmethod
    def empty(cls) -> SparseIndex:
        nothing = np.zeros(0, dtype=np.int64)
        return cls(keys=nothing, starts=np.zeros(1, dtype=np.int64), cols=nothing, scores=np.zeros(0))

    def ranges(self, key_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[lo, hi) of each key's entries (empty for unknown keys)."""
        if self.keys.shape[0] == 0:
            zero = np.zeros(key_ids.shape[0], dtype=np.int64)
            return zero, zero
        position = np.searchsorted(self.keys, key_ids).clip(0, self.keys.shape[0] - 1)
        known = self.keys[position] == key_ids
        lo, hi = self.starts[position], self.starts[position + 1]
        return np.where(known, lo, 0), np.where(known, hi, 0)


@dataclass(frozen=True)
class SparseSelection:
    """`sparse_top_k`'s result: the selected (user, tweet) groups, by user then rank."""

    user_rows: np.ndarray
    cols: np.ndarray
    scores: np.ndarray
    ranks: np.ndarray
    best_keys: np.ndarray  # position (in the key arrays) of the largest contribution
    contributor_offsets: np.ndarray  # contributors of group i: contributor_keys[offsets[i]:offsets[i+1]]
    contributor_keys: np.ndarray  # key positions, in key order


def sparse_top_k(
    key_rows: np.ndarray, key_ids: np.ndarray, key_weights: np.ndarray, index: SparseIndex, n_cols: int, *, k: int
) -> SparseSelection:
    """score(user, tweet) = sum over the user's keys of weight x the key's index score for the tweet;
    each user's k best tweets (ties by tweet column). `key_rows` ascending. The largest contribution
    names `best_keys` (ties: the smaller key id); `contributor_keys` lists every contributing key,
    in the order the keys are given."""
    lo, hi = index.ranges(key_ids)
    owner, positions = expand_ranges(lo, hi)
    if positions.shape[0] == 0:
        nothing = np.zeros(0, dtype=np.int64)
        return SparseSelection(
            nothing, nothing, np.zeros(0), nothing.astype(np.int32), nothing, np.zeros(1, dtype=np.int64), nothing
        )
    group_key = key_rows[owner] * n_cols + index.cols[positions]
    contribution = key_weights[owner] * index.scores[positions]
    # Stable: within a (user, tweet) group the entries stay in key order, so sums are reproducible.
    order = np.argsort(group_key, kind="stable")
    group_key, contribution, owner = group_key[order], contribution[order], owner[order]
    first = run_starts(group_key)
    sizes = np.diff(np.r_[first, group_key.shape[0]])
    totals = np.add.reduceat(contribution, first)
    largest = np.repeat(np.maximum.reduceat(contribution, first), sizes)
    top_key_id = np.minimum.reduceat(np.where(contribution == largest, key_ids[owner], np.iinfo(np.int64).max), first)
    is_best = (contribution == largest) & (key_ids[owner] == np.repeat(top_key_id, sizes))
    best_entry = np.minimum.reduceat(np.where(is_best, np.arange(owner.shape[0]), np.iinfo(np.int64).max), first)
    users, cols = group_key[first] // n_cols, group_key[first] % n_cols
    chosen = best_per_user(users, totals, k)
    contributor_owner, contributor_positions = expand_ranges(first[chosen], first[chosen] + sizes[chosen])
    return SparseSelection(
        user_rows=users[chosen],
        cols=cols[chosen],
        scores=totals[chosen],
        ranks=ranks_within(users[chosen]),
        best_keys=owner[best_entry[chosen]],
        contributor_offsets=np.r_[0, np.cumsum(sizes[chosen])].astype(np.int64),
        contributor_keys=owner[contributor_positions],
    )
