"""The pair-feature kernel: the (user, tweet) features the heavy ranker reads, from a user side and
a tweet side, in numpy on Arrow arrays. One kernel serves every caller, so training and scoring
cannot drift: `user_tweet_features` (the training set's and the debugging table's rows, one joined
row per pair) and the scoring pass (a block of users against the tweet pool, by index).

A side is an Arrow table with the columns below (a missing column counts as all nulls); a pair is
(row in the user side, row in the tweet side), -1 for a side without a row.

- user side: `_user_sc` map<int, double> (InterestedIn), `_user_tw` list<float> (TwHIN),
  `_content_profile` map<string, double> and `_content_norm` (tokens of the tweets the user engaged
  with), `_topic_values` map<int, struct<authored_share, followee_share, rate>> and
  `_topic_prior_rate` (features.topics)
- tweet side: `_tweet_sc` list<struct<cluster_id, score>>, `_tweet_tw` list<float>, `_tokens`
  list<string>, `topic` int, `topic_confidence` double

simclusters_dot = Σ_c user[c] · tweet[c] (0 when either side is missing); twhin_cosine and
has_twhin_embedding (`twhin_cosines`); content_affinity = Σ_token profile[token] / (norm · √#tokens)
when some token is in the profile, else null; the topic values at the tweet's topic (null without
a topic): the shares 0 without data, the rate falling back to the user's own, then `overall_rate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

USER_SC, TWEET_SC = "_user_sc", "_tweet_sc"
USER_TW, TWEET_TW = "_user_tw", "_tweet_tw"
CONTENT_PROFILE, CONTENT_NORM = "_content_profile", "_content_norm"
TWEET_TOKENS = "_tokens"
TOPIC_VALUES, TOPIC_PRIOR_RATE = "_topic_values", "_topic_prior_rate"
TOPIC, TOPIC_CONFIDENCE = "topic", "topic_confidence"
USER_SIDE_COLUMNS = (USER_SC, USER_TW, CONTENT_PROFILE, CONTENT_NORM, TOPIC_VALUES, TOPIC_PRIOR_RATE)
TWEET_SIDE_COLUMNS = (TWEET_SC, TWEET_TW, TWEET_TOKENS, TOPIC, TOPIC_CONFIDENCE)
TOPIC_VALUE_FIELDS = ("authored_share", "followee_share", "rate")
PAIR_FEATURE_TYPES: dict[str, pa.DataType] = {
    "simclusters_dot": pa.float64(),
    "twhin_cosine": pa.float64(),
    "has_twhin_embedding": pa.bool_(),
    "content_affinity": pa.float64(),
    "topic_confidence": pa.float64(),
    "topic_authored_share": pa.float64(),
    "topic_followee_share": pa.float64(),
    "topic_engagement_rate": pa.float64(),
}


@dataclass(frozen=True)
class SparseRows:
    """Rows of (key, value) entries: row i's entries are keys/values[offsets[i]:offsets[i + 1]];
    a null row has none."""

    offsets: np.ndarray  # int64, len(rows) + 1
    keys: pa.Array  # int64 keys, or strings (tokens)
    values: np.ndarray  # float64, one per key (ones for a plain list)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @classmethod
    def of_lists(cls, lists: pa.Array, key: str | None = None, value: str | None = None) -> SparseRows:
        """From a list or map array: a map's keys and items, a list of structs' `key` and `value`
        fields, or a plain list's elements (values 1)."""
        offsets, keys, values = list_entries(lists, key, value)
        values = np.ones(len(keys)) if values is None else _doubles(values, fill=0.0)
        return cls(offsets=offsets, keys=keys, values=values)


def list_entries(
    lists: pa.Array, key: str | None = None, value: str | None = None
) -> tuple[np.ndarray, pa.Array, pa.Array | None]:
    """(offsets from 0, keys, values or None) of a list or map array (`SparseRows.of_lists`). A
    slice's offsets point into its parent's entries, so the entries are taken by position."""
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    bounds = lists.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    valid = lists.is_valid().to_numpy(zero_copy_only=False)
    lengths = np.where(valid, np.diff(bounds), 0)
    positions = pa.array(_ranges(bounds[:-1], lengths))
    if pa.types.is_map(lists.type):
        keys, values = lists.keys.take(positions), lists.items.take(positions)
    else:
        flat = lists.values.take(positions)
        keys = flat.field(key) if key else flat
        values = flat.field(value) if value else None
    return np.r_[0, np.cumsum(lengths)].astype(np.int64), keys, values


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """starts[0] .. starts[0] + lengths[0] - 1, starts[1] ..., concatenated."""
    total = int(lengths.sum())
    within = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts, lengths) + within


def _doubles(array: pa.Array, *, fill: float = np.nan) -> np.ndarray:
    return pc.fill_null(pc.cast(array, pa.float64()), fill).to_numpy(zero_copy_only=False)


def _column(side: pa.Table, name: str, type_: pa.DataType) -> pa.Array:
    if name in side.column_names:
        return side.column(name).combine_chunks()
    return pa.nulls(side.num_rows, type_)


def _spans(rows: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For pairs whose side row is `rows` (-1: none): each entry of those rows as (pair, position)."""
    present = rows >= 0
    starts = np.where(present, offsets[np.maximum(rows, 0)], 0)
    lengths = np.where(present, offsets[np.maximum(rows, 0) + 1] - starts, 0)
    return np.repeat(np.arange(len(rows)), lengths), _ranges(starts, lengths)


def _key_ids(user_keys: pa.Array, tweet_keys: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Both key arrays as int64 ids (-1: null), strings through a dictionary of the user's keys."""
    if pa.types.is_integer(user_keys.type):
        user_ids, tweet_ids = user_keys, tweet_keys
    else:
        dictionary = pc.unique(user_keys)
        user_ids = pc.index_in(user_keys, value_set=dictionary)
        tweet_ids = pc.index_in(tweet_keys, value_set=dictionary)
    as_ids = lambda a: pc.fill_null(pc.cast(a, pa.int64()), -1).to_numpy(zero_copy_only=False)  # noqa: E731
    return as_ids(user_ids), as_ids(tweet_ids)


def lookup(offsets: np.ndarray, keys: np.ndarray, rows: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """The position of key `wanted[i]` among row `rows[i]`'s entries (`keys[offsets[r]:offsets[r + 1]]`,
    int64, unique within a row); -1 where it is not there, the row is -1 or the key negative."""
    found = np.full(len(rows), -1, dtype=np.int64)
    if not len(keys) or not len(rows):
        return found
    low = min(int(keys.min()), int(wanted.min()))
    width = max(int(keys.max()), int(wanted.max())) - low + 1
    row_of_entry = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    combined = row_of_entry * width + (keys - low)
    order = np.argsort(combined, kind="stable")
    ordered = combined[order]
    targets = rows * width + (wanted - low)
    at = np.minimum(np.searchsorted(ordered, targets), len(ordered) - 1)
    hit = (ordered[at] == targets) & (rows >= 0) & (wanted >= 0)
    found[hit] = order[at[hit]]
    return found


def sparse_dot(
    user: SparseRows, tweet: SparseRows, user_rows: np.ndarray, tweet_rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(Σ user[k] · tweet[k] over the tweet row's keys found in the user row, whether any was found)
    per pair (user_rows[i], tweet_rows[i])."""
    pairs = len(user_rows)
    pair, position = _spans(tweet_rows, tweet.offsets)
    if not len(pair) or not len(user.keys):
        return np.zeros(pairs), np.zeros(pairs, dtype=bool)
    user_ids, tweet_ids = _key_ids(user.keys, tweet.keys.take(pa.array(position)))
    at = lookup(user.offsets, user_ids, user_rows[pair], tweet_ids)
    hit = at >= 0
    products = np.where(hit, user.values[np.maximum(at, 0)] * tweet.values[position], 0.0)
    dot = np.bincount(pair, weights=products, minlength=pairs)
    return dot, np.bincount(pair, weights=hit, minlength=pairs) > 0


def twhin_cosines(users: pa.Array, tweets: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(cosine, present) per row of two aligned list<float> arrays; present is False (cosine 0)
    where a vector is null, zero, not finite, or the two lengths differ."""
    user_values, user_starts, user_lengths = _flat_lists(users)
    tweet_values, tweet_starts, tweet_lengths = _flat_lists(tweets)
    cosine = np.zeros(len(users))
    present = np.zeros(len(users), dtype=bool)
    comparable = (user_lengths == tweet_lengths) & (user_lengths > 0)
    for length in np.unique(user_lengths[comparable]):
        rows = np.flatnonzero(comparable & (user_lengths == length))
        offsets = np.arange(length)
        u = user_values[user_starts[rows, None] + offsets]
        t = tweet_values[tweet_starts[rows, None] + offsets]
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.einsum("ij,ij->i", u, t) / (np.linalg.norm(u, axis=1) * np.linalg.norm(t, axis=1))
        good = np.isfinite(values)
        cosine[rows[good]] = values[good]
        present[rows[good]] = True
    return cosine, present


def _flat_lists(lists: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values as float64, start of each row's list in them, each row's length; 0 for null)."""
    lengths = pc.list_value_length(lists).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    values = pc.list_flatten(lists).to_numpy(zero_copy_only=False).astype(np.float64)
    return values, np.cumsum(lengths) - lengths, lengths


def _taken(array: pa.Array, rows: np.ndarray) -> pa.Array:
    """`array` at `rows` (-1: null)."""
    present = rows >= 0
    if not present.any():
        return pa.nulls(len(rows), array.type)
    taken = array.take(pa.array(np.where(present, rows, 0)))
    return taken if present.all() else pc.if_else(pa.array(present), taken, pa.nulls(len(rows), array.type))


def _content_affinity(users: pa.Table, tweets: pa.Table, user_rows, tweet_rows) -> np.ndarray:
    profile = SparseRows.of_lists(_column(users, CONTENT_PROFILE, pa.map_(pa.string(), pa.float64())))
    tokens = SparseRows.of_lists(_column(tweets, TWEET_TOKENS, pa.list_(pa.string())))
    dot, _ = sparse_dot(profile, tokens, user_rows, tweet_rows)
    norm = _doubles(_taken(_column(users, CONTENT_NORM, pa.float64()), user_rows))
    counts = np.where(tweet_rows >= 0, np.diff(tokens.offsets)[np.maximum(tweet_rows, 0)], 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(dot > 0, dot / (norm * np.sqrt(counts)), np.nan)


def _topic_values(users: pa.Table, tweets: pa.Table, user_rows, tweet_rows, overall_rate: float) -> dict:
    topic = _taken(_column(tweets, TOPIC, pa.int32()), tweet_rows)
    has_topic = topic.is_valid().to_numpy(zero_copy_only=False)
    value_type = pa.struct([(name, pa.float64()) for name in TOPIC_VALUE_FIELDS])
    values = _column(users, TOPIC_VALUES, pa.map_(pa.int32(), value_type))
    offsets, topics, entries = list_entries(values)
    wanted = pc.fill_null(pc.cast(topic, pa.int64()), -1).to_numpy(zero_copy_only=False)
    topic_ids = pc.cast(topics, pa.int64()).to_numpy(zero_copy_only=False)
    at = lookup(offsets, topic_ids, user_rows, wanted)
    found = {
        field: np.where(at >= 0, _doubles(entries.field(field))[np.maximum(at, 0)] if len(entries) else np.nan, np.nan)
        for field in TOPIC_VALUE_FIELDS
    }
    prior = _doubles(_taken(_column(users, TOPIC_PRIOR_RATE, pa.float64()), user_rows))
    rate = np.where(np.isnan(found["rate"]), np.where(np.isnan(prior), overall_rate, prior), found["rate"])
    confidence = _doubles(_taken(_column(tweets, TOPIC_CONFIDENCE, pa.float64()), tweet_rows))
    keep = lambda v: np.where(has_topic, v, np.nan)  # noqa: E731
    return {
        "topic_confidence": keep(confidence),
        "topic_authored_share": keep(np.nan_to_num(found["authored_share"], nan=0.0)),
        "topic_followee_share": keep(np.nan_to_num(found["followee_share"], nan=0.0)),
        "topic_engagement_rate": keep(rate),
    }


def pair_features(
    users: pa.Table,
    tweets: pa.Table,
    user_rows: np.ndarray,
    tweet_rows: np.ndarray,
    *,
    overall_rate: float | None,
) -> dict[str, pa.Array]:
    """PAIR_FEATURE_TYPES per pair (user_rows[i], tweet_rows[i]) of the two sides; null where a
    feature has no value (content_affinity without a shared token, the topic values without a
    topic or, `overall_rate` None, without topic data)."""
    user_rows, tweet_rows = np.asarray(user_rows, dtype=np.int64), np.asarray(tweet_rows, dtype=np.int64)
    clusters_type = pa.list_(pa.struct([("cluster_id", pa.int32()), ("score", pa.float64())]))
    user_sc = SparseRows.of_lists(_column(users, USER_SC, pa.map_(pa.int32(), pa.float64())))
    tweet_sc = SparseRows.of_lists(_column(tweets, TWEET_SC, clusters_type), "cluster_id", "score")
    simclusters, _ = sparse_dot(user_sc, tweet_sc, user_rows, tweet_rows)
    vectors = pa.list_(pa.float32())
    cosine, present = twhin_cosines(
        _taken(_column(users, USER_TW, vectors), user_rows), _taken(_column(tweets, TWEET_TW, vectors), tweet_rows)
    )
    values: Mapping[str, np.ndarray] = {
        "simclusters_dot": simclusters,
        "twhin_cosine": cosine,
        "has_twhin_embedding": present,
        "content_affinity": _content_affinity(users, tweets, user_rows, tweet_rows),
    }
    if overall_rate is not None:
        values = {**values, **_topic_values(users, tweets, user_rows, tweet_rows, overall_rate)}
    out = {}
    for name, type_ in PAIR_FEATURE_TYPES.items():
        column = values.get(name)
        if column is None:
            out[name] = pa.nulls(len(user_rows), type_)
        elif type_ == pa.bool_():
            out[name] = pa.array(column, type=type_)
        else:
            out[name] = pa.array(column, type=type_, from_pandas=True)  # NaN -> null
    return out
