"""The two-hop expansion of one block of users, in numpy (`jobs.follow_graph.follow_graph_two_hop`
is its Spark side).

A block holds its users' user -> intermediate -> candidate paths, one per row the Spark join
`recent follows x sampled followees` makes (a repeated edge counts twice, as it did when the join's
rows were grouped in Spark), and every account each user follows. The kernel groups the paths per
(user, candidate) with one sort, drops the user itself and the accounts it follows, and keeps the
top-k per user.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Paths:
    """user -> intermediate -> candidate paths of a block: `rows` (the user's row in the block),
    `via` (the intermediate), `candidates`; one entry per path."""

    rows: np.ndarray
    via: np.ndarray
    candidates: np.ndarray


@dataclass(frozen=True)
class TwoHopRows:
    """The kept (user, candidate) pairs of a block, ordered by user row then rank; the proofs of
    pair i are `proof_ids[proof_offsets[i]:proof_offsets[i + 1]]`, ascending."""

    rows: np.ndarray
    candidates: np.ndarray
    counts: np.ndarray
    ranks: np.ndarray
    proof_offsets: np.ndarray
    proof_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.rows.shape[0])


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The indices starts[0] .. starts[0] + lengths[0] - 1, then those of the next range, ..."""
    ends = np.cumsum(lengths)
    return np.repeat(starts - (ends - lengths), lengths) + np.arange(int(ends[-1]) if ends.shape[0] else 0)


def _runs(values: np.ndarray) -> np.ndarray:
    """The first index of each run of equal values."""
    if values.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, values[1:] != values[:-1]])


def _id_codes(ids: np.ndarray, rows: int) -> tuple[np.ndarray, int, Callable[[np.ndarray], np.ndarray]]:
    """(codes, width, decode): `ids` as codes in 0..width-1 in id order, such that
    `row * width + code` fits an int64 for row < `rows`: the offset from the smallest id where the
    ids' span allows (sortable keys without a sort to find them), else the rank among the distinct ids."""
    if ids.shape[0] == 0:
        return ids, 1, lambda codes: codes
    lowest, highest = int(ids.min()), int(ids.max())
    if (highest - lowest + 1) * max(rows, 1) < 2**62:
        return ids - lowest, highest - lowest + 1, lambda codes: codes + lowest
    distinct, codes = np.unique(ids, return_inverse=True)
    return codes, int(distinct.shape[0]), lambda codes: distinct[codes]


def _among(sorted_values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Whether each of `sorted_values` (ascending, distinct) is among `queries`."""
    spot = np.searchsorted(sorted_values, queries)
    inside = spot < sorted_values.shape[0]
    spot = spot[inside]
    found = np.zeros(sorted_values.shape[0], dtype=bool)
    found[spot[sorted_values[spot] == queries[inside]]] = True
    return found


def _smallest(values: np.ndarray, starts: np.ndarray, counts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, ids): group i's `min(counts[i], k)` smallest of `values[starts[i]:starts[i] + counts[i]]`,
    ascending (repeats kept), are `ids[offsets[i]:offsets[i + 1]]`."""
    members = values[_ranges(starts, counts)]
    order = np.lexsort((members, np.repeat(np.arange(starts.shape[0]), counts)))  # groups keep their order
    lengths = np.minimum(counts, k)
    offsets = np.zeros(lengths.shape[0] + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets, members[order][_ranges(np.cumsum(counts) - counts, lengths)]


def two_hop_block(
    user_ids: np.ndarray,
    paths: Paths,
    followed_rows: np.ndarray,
    followed_ids: np.ndarray,
    *,
    max_proofs: int,
    top_k: int,
    min_social_proof: int,
) -> TwoHopRows:
    """The candidates of the block's users (`user_ids[row]`) reached along `paths`, not the user
    and not among its followed accounts (`followed_ids[i]` is followed by row `followed_rows[i]`):
    `counts` the paths reaching each, at least `min_social_proof`; the `max_proofs` smallest
    intermediates (repeats kept); `ranks` from 1 by (count desc, candidate id asc), at most `top_k`."""
    away = paths.candidates != user_ids[paths.rows]
    rows, via, candidates = paths.rows[away], paths.via[away], paths.candidates[away]
    # (row, candidate) packed into one int64 key that sorts by row, then candidate id.
    codes, width, decode = _id_codes(np.concatenate([candidates, followed_ids]), user_ids.shape[0])
    keys = rows * width + codes[: candidates.shape[0]]
    followed_keys = followed_rows * width + codes[candidates.shape[0] :]
    order = np.argsort(keys)
    keys, via = keys[order], via[order]
    starts = _runs(keys)
    counts = np.diff(np.r_[starts, keys.shape[0]])
    pairs = keys[starts]
    kept = (counts >= min_social_proof) & ~_among(pairs, followed_keys)
    starts, counts, pairs = starts[kept], counts[kept], pairs[kept]
    # The pairs are in (row, candidate id) order: a stable sort by (row, count desc) ranks them.
    most = int(counts.max()) if counts.shape[0] else 0
    order = np.argsort((pairs // width) * (most + 1) + (most - counts), kind="stable")
    starts, counts, pairs = starts[order], counts[order], pairs[order]
    pair_rows = pairs // width
    first = _runs(pair_rows)
    ranks = np.arange(pair_rows.shape[0]) - np.repeat(first, np.diff(np.r_[first, pair_rows.shape[0]])) + 1
    top = ranks <= top_k
    starts, counts, pairs, pair_rows, ranks = (a[top] for a in (starts, counts, pairs, pair_rows, ranks))
    proof_offsets, proof_ids = _smallest(via, starts, counts, max_proofs)
    return TwoHopRows(
        rows=pair_rows,
        candidates=decode(pairs % width).astype(np.int64),
        counts=counts.astype(np.int32),
        ranks=ranks.astype(np.int32),
        proof_offsets=proof_offsets,
        proof_ids=proof_ids,
    )
