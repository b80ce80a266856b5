"""The per-user pipeline's data: a block of requests as numpy arrays, and one source's rows for it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True)
class Lists:
    """A list column of a block of users: `rows[i]` is the user (row in the block) of `values[i]`;
    rows ascending, each user's values in list order."""

    rows: np.ndarray
    values: np.ndarray

    @classmethod
    def of(cls, column: pa.Array, dtype) -> Lists:
        return cls(
            rows=np.asarray(pc.list_parent_indices(column).to_numpy(), dtype=np.int64),
            values=np.asarray(pc.list_flatten(column).to_numpy(zero_copy_only=False), dtype=dtype),
        )


def _aligned(column: pa.Array, dtype) -> np.ndarray:
    return np.asarray(pc.list_flatten(column).to_numpy(zero_copy_only=False), dtype=dtype)


@dataclass(frozen=True)
class RequestBlock:
    """A block of `candidate_requests` rows as numpy arrays."""

    user_ids: np.ndarray
    followed: Lists
    followed_weights: np.ndarray
    two_hop: Lists
    two_hop_counts: np.ndarray
    two_hop_proof_offsets: np.ndarray  # len(two_hop.values) + 1, into two_hop_proof_ids
    two_hop_proof_ids: np.ndarray
    clusters: Lists
    cluster_scores: np.ndarray
    embedded_rows: np.ndarray  # rows with a TwHIN vector
    embeddings: np.ndarray  # (len(embedded_rows), d) float32
    hidden: Lists
    seen: Lists

    @classmethod
    def from_arrow(cls, batch: pa.RecordBatch | pa.Table) -> RequestBlock:
        column = batch.column
        proofs = pc.list_flatten(column("two_hop_proofs"))
        lengths = np.asarray(pc.list_value_length(proofs).fill_null(0).to_numpy(), dtype=np.int64)
        embedding = column("embedding")
        valid = np.asarray(embedding.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        rows = np.flatnonzero(valid)
        flat = _aligned(embedding, np.float32)
        return cls(
            user_ids=np.asarray(column("user_id").to_numpy(), dtype=np.int64),
            followed=Lists.of(column("followed_ids"), np.int64),
            followed_weights=_aligned(column("followed_weights"), np.float64),
            two_hop=Lists.of(column("two_hop_ids"), np.int64),
            two_hop_counts=_aligned(column("two_hop_counts"), np.int64),
            two_hop_proof_offsets=np.r_[0, np.cumsum(lengths)].astype(np.int64),
            two_hop_proof_ids=_aligned(proofs, np.int64),
            clusters=Lists.of(column("cluster_ids"), np.int64),
            cluster_scores=_aligned(column("cluster_scores"), np.float64),
            embedded_rows=rows,
            embeddings=flat.reshape(rows.shape[0], -1) if rows.shape[0] else np.zeros((0, 0), dtype=np.float32),
            hidden=Lists.of(column("hidden_author_ids"), np.int64),
            seen=Lists.of(column("seen_tweet_ids"), np.int64),
        )

    def __len__(self) -> int:
        return int(self.user_ids.shape[0])


def request_blocks(batch: pa.RecordBatch, block_users: int) -> Iterator[RequestBlock]:
    """`batch` in blocks of at most `block_users` users."""
    for start in range(0, batch.num_rows, block_users):
        yield RequestBlock.from_arrow(batch.slice(start, block_users))


@dataclass(frozen=True)
class Retrieved:
    """One source's candidates for a block of users, ordered by user then rank."""

    source: str
    user_rows: np.ndarray
    cols: np.ndarray
    scores: np.ndarray
    ranks: np.ndarray
    clusters: np.ndarray | None = None  # simclusters: the cluster contributing most
    proof_offsets: np.ndarray | None = None  # uteg, frs: proofs of row i are ids[offsets[i]:offsets[i+1]]
    proof_ids: np.ndarray | None = None
    proof_counts: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.user_rows.shape[0])
