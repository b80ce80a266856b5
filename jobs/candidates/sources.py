"""The six candidate sources: each takes a block of requests and the indexes and returns its rows
(`Retrieved`), at most its cap per user, rank 1 = best, ties by smaller tweet id."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from core.sources import CANDIDATE_SOURCES
from jobs.candidates.blocks import RequestBlock, Retrieved
from jobs.candidates.config import CandidatesConfig
from jobs.candidates.indexes import GLOBAL_COMMUNITY, CandidateIndexes
from jobs.candidates.kernels import expand_ranges, ranks_within, top_k_per_row
from jobs.candidates.sparse import sparse_top_k

SourceFunction = Callable[[RequestBlock, CandidateIndexes, CandidatesConfig], Retrieved]


def in_network_candidates(block: RequestBlock, indexes: CandidateIndexes, config: CandidatesConfig) -> Retrieved:
    """Tweets of followed accounts from the in-network window: RealGraph weight x recency decay."""
    s = sparse_top_k(
        block.followed.rows,
        block.followed.values,
        block.followed_weights,
        indexes.in_network,
        len(indexes.tweets),
        k=config.in_network_top_k,
    )
    return Retrieved("in_network", s.user_rows, s.cols, s.scores, s.ranks)


def uteg_candidates(block: RequestBlock, indexes: CandidateIndexes, config: CandidatesConfig) -> Retrieved:
    """Tweets the user's `uteg_followees` strongest followees (weight, ties by id) engaged with:
    score = sum of their weights; proofs = those followees, strongest first."""
    followed = block.followed
    order = np.lexsort((followed.values, -block.followed_weights, followed.rows))
    keep = order[ranks_within(followed.rows[order]) <= config.uteg_followees]
    ids, weights = followed.values[keep], block.followed_weights[keep]
    s = sparse_top_k(followed.rows[keep], ids, weights, indexes.uteg, len(indexes.tweets), k=config.uteg_top_k)
    return Retrieved(
        "uteg",
        s.user_rows,
        s.cols,
        s.scores,
        s.ranks,
        proof_offsets=s.contributor_offsets,
        proof_ids=ids[s.contributor_keys],
        proof_counts=np.diff(s.contributor_offsets),
    )


def simclusters_candidates(block: RequestBlock, indexes: CandidateIndexes, config: CandidatesConfig) -> Retrieved:
    """Tweets of the user's `simclusters_clusters` best clusters: sum of InterestedIn x index score;
    the cluster contributing most (ties: smaller id) is kept."""
    clusters = block.clusters
    keep = ranks_within(clusters.rows) <= config.simclusters_clusters
    ids = clusters.values[keep]
    s = sparse_top_k(
        clusters.rows[keep],
        ids,
        block.cluster_scores[keep],
        indexes.simclusters,
        len(indexes.tweets),
        k=config.simclusters_top_k,
    )
    return Retrieved("simclusters", s.user_rows, s.cols, s.scores, s.ranks, clusters=ids[s.best_keys])


def twhin_candidates(block: RequestBlock, indexes: CandidateIndexes, config: CandidatesConfig) -> Retrieved:
    """The `twhin_top_k` pool tweets with the largest dot(user vector, tweet vector), the user's own
    tweets excluded; exact: one matrix product per sub-block of users, then `top_k_per_row`."""
    import torch

    n = indexes.twhin_cols.shape[0]
    parts: list[tuple[np.ndarray, ...]] = []
    if n and block.embedded_rows.shape[0]:
        by_author = indexes.twhin_by_author
        authors_sorted = indexes.tweets.author_ids[indexes.twhin_cols][by_author]
        targets = torch.from_numpy(indexes.twhin_matrix).T
        step = max(1, config.twhin_block_scores // n)
        for start in range(0, block.embedded_rows.shape[0], step):
            rows = block.embedded_rows[start : start + step]
            vectors = torch.tensor(block.embeddings[start : start + step], dtype=torch.float32)
            scores = (vectors @ targets).numpy()
            users = block.user_ids[rows]
            own_owner, own = expand_ranges(
                np.searchsorted(authors_sorted, users, side="left"),
                np.searchsorted(authors_sorted, users, side="right"),
            )
            scores[own_owner, by_author[own]] = -np.inf
            r, c, v, k = top_k_per_row(scores, config.twhin_top_k)
            parts.append((rows[r], indexes.twhin_cols[c], v.astype(np.float64), k))
    if not parts:
        nothing = np.zeros(0, dtype=np.int64)
        return Retrieved("twhin", nothing, nothing, np.zeros(0), nothing.astype(np.int32))
    rows, cols, values, ranks = (np.concatenate(p) for p in zip(*parts))
    return Retrieved("twhin", rows, cols, values, ranks)


def frs_candidates(block: RequestBlock, indexes: CandidateIndexes, config: CandidatesConfig) -> Retrieved:
    """Tweets of the user's best two-hop accounts from the frs window: social proof count x recency
    decay; proofs = the two-hop proof users."""
    two_hop = block.two_hop
    keep = ranks_within(two_hop.rows) <= config.frs_accounts
    positions = np.flatnonzero(keep)
    s = sparse_top_k(
        two_hop.rows[keep],
        two_hop.values[keep],
        block.two_hop_counts[keep].astype(np.float64),
        indexes.frs,
        len(indexes.tweets),
        k=config.frs_top_k,
    )
    account = positions[s.best_keys]  # one author per tweet: the only contributor
    lo, hi = block.two_hop_proof_offsets[account], block.two_hop_proof_offsets[account + 1]
    _, proof_positions = expand_ranges(lo, hi)
    return Retrieved(
        "frs",
        s.user_rows,
        s.cols,
        s.scores,
        s.ranks,
        proof_offsets=np.r_[0, np.cumsum(hi - lo)].astype(np.int64),
        proof_ids=block.two_hop_proof_ids[proof_positions],
        proof_counts=block.two_hop_counts[account],
    )


def popular_candidates(block: RequestBlock, indexes: CandidateIndexes, config: CandidatesConfig) -> Retrieved:
    """The global popular list for every user, plus the lists of the user's
    `popular_user_communities` best clusters; score = the tweet's popularity."""
    clusters = block.clusters
    keep = ranks_within(clusters.rows) <= config.popular_user_communities
    users = np.arange(len(block), dtype=np.int64)
    rows = np.r_[users, clusters.rows[keep]]
    ids = np.r_[np.full(users.shape[0], GLOBAL_COMMUNITY, dtype=np.int64), clusters.values[keep]]
    order = np.argsort(rows, kind="stable")
    s = sparse_top_k(
        rows[order], ids[order], np.ones(rows.shape[0]), indexes.popular, len(indexes.tweets), k=config.popular_top_k
    )
    return Retrieved("popular", s.user_rows, s.cols, s.scores, s.ranks)


# One function per name of `core.sources.CANDIDATE_SOURCES`.
SOURCE_FUNCTIONS: dict[str, SourceFunction] = {
    "in_network": in_network_candidates,
    "uteg": uteg_candidates,
    "simclusters": simclusters_candidates,
    "twhin": twhin_candidates,
    "frs": frs_candidates,
    "popular": popular_candidates,
}


def retrieve_block(block: RequestBlock, indexes: CandidateIndexes, config: CandidatesConfig) -> list[Retrieved]:
    """Every source of `config.sources` for a block of users, in `CANDIDATE_SOURCES` order."""
    return [SOURCE_FUNCTIONS[name](block, indexes, config) for name in CANDIDATE_SOURCES if name in config.sources]
