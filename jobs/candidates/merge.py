"""The merge of a block's source rows: one row per (user, tweet) with every source that retrieved
it, the social proof union, the viewer filters, and the interleaved total cap."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.sources import CANDIDATE_SOURCES
from jobs.candidates.arrow import list_array, nullable_array
from jobs.candidates.blocks import RequestBlock, Retrieved
from jobs.candidates.config import DEFAULTS, REMOVAL_REASONS, TAGGED_SCHEMA, CandidatesConfig
from jobs.candidates.filters import first_failed, viewer_filters
from jobs.candidates.indexes import TweetTable
from jobs.candidates.kernels import expand_ranges, pairs_in, ranks_within, run_starts


def merge_block(
    block: RequestBlock, retrieved: list[Retrieved], tweets: TweetTable, config: CandidatesConfig = DEFAULTS
) -> pa.RecordBatch:
    """One row per (user, tweet) of the block with every source that retrieved it, tagged with the
    first filter it fails (`filtered_by`) or ranked (`pool_rank`, interleaving order: min over its
    sources of rank / cap, ties by tweet id) up to `max_candidates_per_user`; rows of
    `TAGGED_SCHEMA`, by user then tweet."""
    parts = [r for r in retrieved if len(r)]
    groups = group_candidates(parts, len(tweets))
    sources = source_columns(groups, parts)
    proofs = merged_proofs(groups, parts, max_proofs=config.max_proofs)
    filtered = first_failed(viewer_filters(block, groups.rows, groups.cols, tweets, config), len(groups))
    pool_rank, reason = interleaved_cap(groups.rows, sources, filtered, config)
    return tagged_batch(block, tweets, groups, sources, proofs, pool_rank=pool_rank, reason=reason)


@dataclass(frozen=True)
class Groups:
    """The distinct (user, tweet) pairs among a block's source rows, in (user, tweet) order."""

    rows: np.ndarray  # the user (row in the block)
    cols: np.ndarray  # the tweet (column in the pool)
    of_part: list[np.ndarray]  # per source's rows (in the order given), the group of each row

    def __len__(self) -> int:
        return int(self.rows.shape[0])


def group_candidates(parts: list[Retrieved], n_tweets: int) -> Groups:
    """The (user, tweet) groups of the non-empty `parts`."""
    rows = np.concatenate([r.user_rows for r in parts]) if parts else np.zeros(0, dtype=np.int64)
    cols = np.concatenate([r.cols for r in parts]) if parts else np.zeros(0, dtype=np.int64)
    keys = rows * n_tweets + cols
    order = np.argsort(keys, kind="stable")
    first = run_starts(keys[order])
    sizes = np.diff(np.r_[first, order.shape[0]])
    group_of = np.empty(order.shape[0], dtype=np.int64)
    group_of[order] = np.repeat(np.arange(first.shape[0]), sizes)
    ends = np.cumsum([len(r) for r in parts], dtype=np.int64)
    return Groups(rows=rows[order][first], cols=cols[order][first], of_part=np.split(group_of, ends[:-1]))


@dataclass(frozen=True)
class SourceColumns:
    """Per group, what each source said (columns in CANDIDATE_SOURCES order)."""

    present: np.ndarray  # (groups, sources) bool: the source retrieved the pair
    scores: np.ndarray  # (groups, sources) float64
    ranks: np.ndarray  # (groups, sources) int32
    cluster: np.ndarray  # (groups,) simclusters' cluster, -1 when absent
    frs_count: np.ndarray  # (groups,) frs's social proof count, 0 when absent


def source_columns(groups: Groups, parts: list[Retrieved]) -> SourceColumns:
    n, width = len(groups), len(CANDIDATE_SOURCES)
    present, scores = np.zeros((n, width), dtype=bool), np.zeros((n, width))
    ranks = np.zeros((n, width), dtype=np.int32)
    cluster, frs_count = np.full(n, -1, dtype=np.int64), np.zeros(n, dtype=np.int64)
    for r, g in zip(parts, groups.of_part):
        s = CANDIDATE_SOURCES.index(r.source)
        present[g, s], scores[g, s], ranks[g, s] = True, r.scores, r.ranks
        if r.clusters is not None:
            cluster[g] = r.clusters
        if r.source == "frs" and r.proof_ids is not None:
            frs_count[g] = r.proof_counts
    return SourceColumns(present=present, scores=scores, ranks=ranks, cluster=cluster, frs_count=frs_count)


@dataclass(frozen=True)
class Proofs:
    """Per group: its proof ids (`ids[offsets[i]:offsets[i + 1]]`) and how many distinct ones it had."""

    offsets: np.ndarray
    ids: np.ndarray
    total: np.ndarray


def merged_proofs(groups: Groups, parts: list[Retrieved], *, max_proofs: int) -> Proofs:
    """uteg's proofs first, then frs's, each in its own order, deduplicated, at most `max_proofs`."""
    entries = [_proof_entries(r, g) for r, g in zip(parts, groups.of_part) if r.proof_ids is not None]
    group, priority, ids = [np.concatenate(c) for c in zip(*entries)] if entries else [np.zeros(0, dtype=np.int64)] * 3
    return Proofs(*union_proofs(len(groups), group, priority, ids, max_proofs=max_proofs))


def _proof_entries(r: Retrieved, group_of: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(group, priority, proof id) of every proof of a source's rows; priority orders by source,
    then by position in the row's proof list."""
    owner, positions = expand_ranges(r.proof_offsets[:-1], r.proof_offsets[1:])
    source = CANDIDATE_SOURCES.index(r.source)
    return group_of[owner], source * (1 << 40) + positions - r.proof_offsets[owner], r.proof_ids[positions]


def union_proofs(
    groups: int, group: np.ndarray, priority: np.ndarray, ids: np.ndarray, *, max_proofs: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group, its proof ids in priority order, each once (at its first occurrence), at most
    max_proofs: (offsets, ids), and how many distinct ids each group had."""
    order = np.lexsort((priority, ids, group))
    group, priority, ids = group[order], priority[order], ids[order]
    first = np.r_[True, (group[1:] != group[:-1]) | (ids[1:] != ids[:-1])] if group.shape[0] else np.zeros(0, bool)
    group, priority, ids = group[first], priority[first], ids[first]
    order = np.lexsort((priority, group))
    group, ids = group[order], ids[order]
    shown = ranks_within(group) <= max_proofs
    offsets = np.r_[0, np.cumsum(np.bincount(group[shown], minlength=groups))].astype(np.int64)
    return offsets, ids[shown], np.bincount(group, minlength=groups)


def interleaved_cap(
    user_rows: np.ndarray, sources: SourceColumns, reason: np.ndarray, config: CandidatesConfig = DEFAULTS
) -> tuple[np.ndarray, np.ndarray]:
    """(pool_rank, reason): the groups no filter removed (`reason` 0), ranked per user by
    min over their sources of rank / cap (ties by tweet id); those beyond `max_candidates_per_user`
    get the total cap's reason (the last of REMOVAL_REASONS, 1-based)."""
    caps = np.array([config.source_caps()[s] for s in CANDIDATE_SOURCES], dtype=np.float64)
    interleave = np.where(sources.present, sources.ranks / caps, np.inf).min(axis=1)
    kept = np.flatnonzero(reason == 0)
    # Groups are in (user, tweet) order and lexsort is stable: equal keys stay in tweet id order.
    kept = kept[np.lexsort((interleave[kept], user_rows[kept]))]
    pool_rank = np.zeros(reason.shape[0], dtype=np.int32)
    pool_rank[kept] = ranks_within(user_rows[kept])
    return pool_rank, np.where(pool_rank > config.max_candidates_per_user, len(REMOVAL_REASONS), reason)


def tagged_batch(
    block: RequestBlock,
    tweets: TweetTable,
    groups: Groups,
    sources: SourceColumns,
    proofs: Proofs,
    *,
    pool_rank: np.ndarray,
    reason: np.ndarray,
) -> pa.RecordBatch:
    """The groups as `TAGGED_SCHEMA` rows; `reason` indexes (None,) + REMOVAL_REASONS."""
    kept = reason == 0
    author_ids = tweets.author_ids[groups.cols]
    scores, ranks = sources.scores.T.copy(), sources.ranks.T.copy()  # one row per source
    alphabetical = sorted(CANDIDATE_SOURCES)
    _, named = np.nonzero(sources.present[:, [CANDIDATE_SOURCES.index(s) for s in alphabetical]])
    columns = {
        "user_id": pa.array(block.user_ids[groups.rows], type=pa.int64()),
        "tweet_id": pa.array(tweets.tweet_ids[groups.cols], type=pa.int64()),
        "author_id": pa.array(author_ids, type=pa.int64()),
        "pool_rank": nullable_array(pool_rank, kept, pa.int32()),
        "sources": list_array(
            np.r_[0, np.cumsum(sources.present.sum(axis=1))],
            pc.take(pa.array(alphabetical, type=pa.string()), pa.array(named)),
        ),
        "is_in_network": pa.array(
            pairs_in(groups.rows, author_ids, block.followed.rows, block.followed.values), type=pa.bool_()
        ),
        **{
            f"{s}_score": nullable_array(scores[i], sources.present[:, i], pa.float64())
            for i, s in enumerate(CANDIDATE_SOURCES)
        },
        **{
            f"{s}_rank": nullable_array(ranks[i], sources.present[:, i], pa.int32())
            for i, s in enumerate(CANDIDATE_SOURCES)
        },
        "simclusters_cluster_id": nullable_array(
            sources.cluster.astype(np.int32), sources.present[:, CANDIDATE_SOURCES.index("simclusters")], pa.int32()
        ),
        "social_proof_user_ids": list_array(proofs.offsets, pa.array(proofs.ids, type=pa.int64())),
        "social_proof_count": pa.array(np.maximum(proofs.total, sources.frs_count), type=pa.int32()),
        "created_us": pa.array(tweets.created_us[groups.cols], type=pa.int64()),
        "filtered_by": pc.take(
            pa.array((None,) + REMOVAL_REASONS, type=pa.string()), nullable_array(reason, ~kept, pa.int64())
        ),
    }
    return pa.RecordBatch.from_arrays([columns[f.name] for f in TAGGED_SCHEMA.fields], names=TAGGED_SCHEMA.fieldNames())
