"""One block of users from requests to ranked feeds, in numpy and Arrow: the six sources and their
merge (`jobs.candidates`), the light ranker on every kept candidate, each user's best
`light_keep`, the heavy ranker on those with the pair features computed for them alone, the
fatigue, and the feed heuristics (`jobs.ranking.feeds_of_whole_users`). No (user, candidate) row
leaves the block but the feed's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.feed_heuristics import FeedHeuristics
from core.heads import HEADS
from features.pair_kernel import PAIR_FEATURE_TYPES, list_entries, lookup, pair_features
from jobs.candidates.blocks import RequestBlock
from jobs.candidates.config import CandidatesConfig
from jobs.candidates.indexes import CandidateIndexes
from jobs.candidates.kernels import ranks_within
from jobs.candidates.merge import merge_block
from jobs.candidates.sources import retrieve_block
from jobs.feed_pass.hydration import KeyedTable, features_named, taken, user_author_columns
from jobs.ranking import CARRIED, IS_REPLY, RANKED_FEEDS_ARROW, feeds_of_whole_users, loaded_model

# The per-user list of (author_id, fatigue_days_since) in a request row.
FATIGUE_ROWS = "_fatigue_rows"
PAIR_FEATURE_NAMES = frozenset(f"user_tweet__{name}" for name in PAIR_FEATURE_TYPES)


@dataclass(frozen=True)
class PassTables:
    """What every task of the pass reads besides its request rows: the candidate indexes, the
    author and tweet features, the tweet side of the pair kernel, and r̄ for its topic rate."""

    indexes: CandidateIndexes
    authors: KeyedTable
    tweets: KeyedTable
    tweet_sides: KeyedTable
    overall_rate: float | None


@dataclass(frozen=True)
class PassModels:
    light_dir: str
    light_features: tuple[str, ...]
    heavy_dir: str
    heavy_features: tuple[str, ...]
    weights: Mapping[str, float]
    light_keep: int
    heuristics: FeedHeuristics


def hydrate(
    requests: pa.Table, tables: PassTables, pairs: pa.Table, user_rows: np.ndarray, names: Sequence[str]
) -> pa.Table:
    """The named features (qualified) of `pairs` (tweet_id, author_id), user `user_rows` of `requests`."""
    tweet_ids = pairs.column("tweet_id").to_numpy().astype(np.int64)
    author_ids = pairs.column("author_id").to_numpy().astype(np.int64)
    columns = {
        **taken(requests, user_rows, features_named(names, "user")),
        **taken(tables.authors.columns, tables.authors.rows_of(author_ids), features_named(names, "author")),
        **taken(tables.tweets.columns, tables.tweets.rows_of(tweet_ids), features_named(names, "tweet")),
    }
    user_author = features_named(names, "user_author")
    if user_author:
        entries, rows = user_author_columns(requests, user_rows, author_ids)
        columns.update(taken(entries, rows, user_author))
    pair = features_named(names, "user_tweet")
    if pair:
        values = pair_features(
            requests,
            tables.tweet_sides.columns,
            user_rows,
            tables.tweet_sides.rows_of(tweet_ids),
            overall_rate=tables.overall_rate,
        )
        computed = pa.table({f.qualified_name: values[f.name] for f in pair})
        columns.update(taken(computed, np.arange(len(user_rows)), pair))
    return pa.table({name: columns[name] for name in dict.fromkeys(names)})


def ranks_within_users(users: np.ndarray, scores: np.ndarray, tweet_ids: np.ndarray) -> np.ndarray:
    """1-based rank of each row among its user's rows by score (ties: smaller tweet id first)."""
    order = np.lexsort((tweet_ids, -scores, users))
    ranks = np.empty(len(order), dtype=np.int32)
    ranks[order] = ranks_within(users[order])
    return ranks


def best_per_user(user_rows: np.ndarray, scores: np.ndarray, tweet_ids: np.ndarray, keep: int) -> np.ndarray:
    """Indices (ascending) of each user's `keep` highest scores (ties: smaller tweet id first)."""
    return np.flatnonzero(ranks_within_users(user_rows, scores, tweet_ids) <= keep)


def _fatigue_days(requests: pa.Table, user_rows: np.ndarray, author_ids: np.ndarray) -> np.ndarray:
    column = requests.column(FATIGUE_ROWS).combine_chunks()
    offsets, keys, values = list_entries(column, "author_id", "fatigue_days_since")
    at = lookup(offsets, keys.to_numpy(zero_copy_only=False).astype(np.int64), user_rows, author_ids)
    days = pc.fill_null(values, np.nan).to_numpy(zero_copy_only=False) if len(values) else np.zeros(0)
    return np.where(at >= 0, days[np.maximum(at, 0)] if len(days) else np.nan, np.nan)


def tagged_of_block(batch: pa.RecordBatch, indexes: CandidateIndexes, config: CandidatesConfig) -> pa.Table:
    """Every merged candidate of the block's users, by user then tweet, `filtered_by` set on those
    a filter or the total cap removed (`jobs.candidates.merge.merge_block`)."""
    block = RequestBlock.from_arrow(batch)
    return pa.Table.from_batches([merge_block(block, retrieve_block(block, indexes, config), indexes.tweets, config)])


def rows_of_users(batch: pa.RecordBatch, user_ids: np.ndarray) -> np.ndarray:
    """Each of `user_ids`' row in the block."""
    users = batch.column("user_id").to_numpy().astype(np.int64)
    order = np.argsort(users, kind="stable")
    return order[np.searchsorted(users[order], user_ids)]


def kept_candidates(batch: pa.RecordBatch, indexes: CandidateIndexes, config: CandidatesConfig) -> tuple:
    """(the block's kept candidates, by user then tweet, with their user's row in `batch`)."""
    tagged = tagged_of_block(batch, indexes, config)
    kept = tagged.filter(pc.is_null(tagged.column("filtered_by")))
    return kept, rows_of_users(batch, kept.column("user_id").to_numpy().astype(np.int64))


def scored_rows(
    kept: pa.Table,
    light: np.ndarray,
    heavy: pa.Table,
    probabilities: np.ndarray,
    heads: Sequence[str],
    weights: Mapping[str, float],
) -> pa.Table:
    """The survivors' columns the heuristics read (`jobs.ranking.apply_heuristics`' input)."""
    from models.heavy_ranker import final_scores

    created = pa.array(kept.column("created_us").to_numpy(), type=pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    columns = {name: kept.column(name) for name in CARRIED if name != "tweet_created_at"}
    columns["tweet_created_at"] = created
    columns["light_score"] = pa.array(light, type=pa.float64())
    by_head = dict(zip(heads, probabilities.T, strict=True))
    for head in HEADS:
        columns[f"p_{head}"] = pa.array(by_head[head].astype(np.float64))
    columns["heavy_score"] = pa.array(final_scores(probabilities, heads, weights))
    columns["is_reply"] = pc.cast(heavy.column(IS_REPLY), pa.bool_())
    return pa.table(columns)


def light_scores(requests: pa.Table, tables: PassTables, models: PassModels, kept: pa.Table, user_rows) -> np.ndarray:
    """The light ranker's score of each kept candidate."""
    from models.ranker_features import feature_matrix

    light_input = hydrate(requests, tables, kept, user_rows, models.light_features)
    model = loaded_model("light", models.light_dir)
    return model.predict(feature_matrix(light_input, models.light_features)).astype(np.float64)


def heavy_scored(
    requests: pa.Table, tables: PassTables, models: PassModels, rows: pa.Table, user_rows, light: np.ndarray
) -> tuple[pa.Table, pa.Table]:
    """(the rows the heuristics read, with the heavy ranker's heads and score and the fatigue; the
    heavy ranker's input features) of candidate `rows` of users `user_rows`."""
    from models.heavy_ranker import RankerInputs
    from models.ranker_features import feature_matrix

    heavy_model = loaded_model("heavy", models.heavy_dir)
    heavy = hydrate(requests, tables, rows, user_rows, [*models.heavy_features, IS_REPLY])
    author_ids = rows.column("author_id").to_numpy().astype(np.int64)
    inputs = RankerInputs(
        dense=feature_matrix(heavy, models.heavy_features),
        user_ids=rows.column("user_id").to_numpy(),
        author_ids=author_ids,
    )
    probabilities = heavy_model.probabilities(inputs)
    scored = scored_rows(rows, light, heavy, probabilities, heavy_model.heads, models.weights)
    fatigue = pa.array(_fatigue_days(requests, user_rows, author_ids))
    return scored.append_column("fatigue_days_since", fatigue), heavy


def feeds_of_scored(scored: pa.Table, heuristics: FeedHeuristics) -> pa.Table:
    """The feeds (RANKED_FEEDS_ARROW) of whole users' scored rows."""
    ordered = scored.take(pa.array(np.argsort(scored.column("user_id").to_numpy(), kind="stable")))
    return feeds_of_whole_users(ordered, heuristics).cast(RANKED_FEEDS_ARROW)


def feeds_of_block(batch: pa.RecordBatch, tables: PassTables, models: PassModels, config: CandidatesConfig) -> pa.Table:
    """The ranked feeds (RANKED_FEEDS_ARROW) of the block's users."""
    requests = pa.Table.from_batches([batch])
    kept, user_rows = kept_candidates(batch, tables.indexes, config)
    if kept.num_rows == 0:
        return RANKED_FEEDS_ARROW.empty_table()
    light = light_scores(requests, tables, models, kept, user_rows)
    tweet_ids = kept.column("tweet_id").to_numpy().astype(np.int64)
    best = best_per_user(user_rows, light, tweet_ids, models.light_keep)
    scored, _ = heavy_scored(requests, tables, models, kept.take(pa.array(best)), user_rows[best], light[best])
    return feeds_of_scored(scored, models.heuristics)
