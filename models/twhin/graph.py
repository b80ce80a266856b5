"""The TwHIN heterogeneous graph: node types, relations, and the edge list built from Arrow tables.

Node types are `user` and `tweet`; every node type has its own id space mapped to contiguous
indices (the sorted unique ids, so the mapping is a pure function of the input). Relations:

| relation | lhs -> rhs | from |
|---|---|---|
| follow | user -> user | `follows` (follower -> followee) |
| like | user -> tweet | `engagements` action `like` |
| retweet | user -> tweet | `engagements` action `retweet`, and retweet rows of `tweets` (author -> original) |
| reply | user -> tweet | `engagements` action `reply`, and reply rows of `tweets` (author -> parent) |
| authored | user -> tweet | `tweets` (author -> tweet; pure retweets are not authored content) |

Impressions and the other actions are ignored. Duplicate (lhs, rhs) pairs within a relation are
kept once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

USER = "user"
TWEET = "tweet"
NODE_TYPES: tuple[str, ...] = (USER, TWEET)


@dataclass(frozen=True)
class RelationSpec:
    name: str
    lhs_type: str
    rhs_type: str


FOLLOW = RelationSpec("follow", USER, USER)
LIKE = RelationSpec("like", USER, TWEET)
RETWEET = RelationSpec("retweet", USER, TWEET)
REPLY = RelationSpec("reply", USER, TWEET)
AUTHORED = RelationSpec("authored", USER, TWEET)
RELATIONS: tuple[RelationSpec, ...] = (FOLLOW, LIKE, RETWEET, REPLY, AUTHORED)
RELATIONS_BY_NAME = {r.name: r for r in RELATIONS}

# engagements.action -> relation
ENGAGEMENT_RELATIONS = {"like": LIKE.name, "retweet": RETWEET.name, "reply": REPLY.name}


@dataclass(frozen=True)
class TwhinEdges:
    """The training graph: node ids per type and one row per (relation, lhs index, rhs index).

    `node_ids[t][i]` is the id of node `i` of type `t` (sorted, unique); `lhs`/`rhs` index into the
    node ids of the relation's lhs/rhs type; `rel` indexes `relations`.
    """

    node_ids: dict[str, np.ndarray]
    relations: tuple[RelationSpec, ...]
    rel: np.ndarray  # int64, (E,)
    lhs: np.ndarray  # int64, (E,)
    rhs: np.ndarray  # int64, (E,)

    @property
    def num_edges(self) -> int:
        return int(self.rel.shape[0])

    def num_nodes(self, node_type: str) -> int:
        return int(self.node_ids[node_type].shape[0])

    def relation_index(self, name: str) -> int:
        return next(i for i, r in enumerate(self.relations) if r.name == name)

    def edges_per_relation(self) -> dict[str, int]:
        counts = np.bincount(self.rel, minlength=len(self.relations))
        return {r.name: int(c) for r, c in zip(self.relations, counts)}

    def relation_edges(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(lhs, rhs) indices of one relation's edges."""
        mask = self.rel == self.relation_index(name)
        return self.lhs[mask], self.rhs[mask]


def _int64(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.int64)


def _pairs(table: pa.Table, lhs: str, rhs: str) -> tuple[np.ndarray, np.ndarray]:
    """Non-null (lhs, rhs) id pairs of two columns."""
    if table.num_rows == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    table = table.select([lhs, rhs]).filter(pc.and_(pc.is_valid(table[lhs]), pc.is_valid(table[rhs])))
    return _int64(table[lhs]), _int64(table[rhs])


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique by sorting (numpy 2's hash-based np.unique is several times slower on ids)."""
    values = np.sort(values, kind="stable")
    if values.size == 0:
        return values
    keep = np.empty(values.shape[0], dtype=bool)
    keep[0] = True
    np.not_equal(values[1:], values[:-1], out=keep[1:])
    return values[keep]


def _unique_pairs(lhs: np.ndarray, rhs: np.ndarray, rhs_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (lhs, rhs) index pairs, sorted by (lhs, rhs)."""
    keys = _sorted_unique(lhs * np.int64(max(rhs_size, 1)) + rhs)
    return keys // max(rhs_size, 1), keys % max(rhs_size, 1)


def build_edges(
    follows: pa.Table,
    engagements: pa.Table,
    tweets: pa.Table,
    *,
    relations: tuple[str, ...] | None = None,
) -> TwhinEdges:
    """The TwHIN edge list of contract tables (only the columns named below are read).

    follows: follower_id, followee_id. engagements: user_id, tweet_id, action. tweets: tweet_id,
    author_id and, when present, in_reply_to_tweet_id and retweet_of_tweet_id.
    `relations` restricts the graph to the named relations (default: all of `RELATIONS`).
    """
    wanted = tuple(r.name for r in RELATIONS) if relations is None else tuple(relations)
    unknown = set(wanted) - set(RELATIONS_BY_NAME)
    if unknown:
        raise ValueError(f"unknown TwHIN relations {sorted(unknown)}; known: {[r.name for r in RELATIONS]}")
    specs = tuple(r for r in RELATIONS if r.name in wanted)

    raw: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {r.name: [] for r in specs}
    if FOLLOW.name in raw:
        raw[FOLLOW.name].append(_pairs(follows, "follower_id", "followee_id"))

    engaged = engagements.select(["user_id", "tweet_id", "action"])
    for action, relation in ENGAGEMENT_RELATIONS.items():
        if relation in raw:
            rows = engaged.filter(pc.equal(engaged["action"], action))
            raw[relation].append(_pairs(rows, "user_id", "tweet_id"))

    columns = set(tweets.column_names)
    is_retweet = (
        pc.is_valid(tweets["retweet_of_tweet_id"])
        if "retweet_of_tweet_id" in columns
        else pa.array(np.zeros(tweets.num_rows, dtype=bool))
    )
    if AUTHORED.name in raw:
        raw[AUTHORED.name].append(_pairs(tweets.filter(pc.invert(is_retweet)), "author_id", "tweet_id"))
    if RETWEET.name in raw and "retweet_of_tweet_id" in columns:
        raw[RETWEET.name].append(_pairs(tweets, "author_id", "retweet_of_tweet_id"))
    if REPLY.name in raw and "in_reply_to_tweet_id" in columns:
        raw[REPLY.name].append(_pairs(tweets, "author_id", "in_reply_to_tweet_id"))

    per_relation: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, parts in raw.items():
        lhs = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, np.int64)
        rhs = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, np.int64)
        per_relation[name] = (lhs, rhs)

    # Node ids per type: every id that takes part in an edge.
    ids_by_type: dict[str, list[np.ndarray]] = {t: [np.empty(0, np.int64)] for t in NODE_TYPES}
    for spec in specs:
        lhs, rhs = per_relation[spec.name]
        ids_by_type[spec.lhs_type].append(lhs)
        ids_by_type[spec.rhs_type].append(rhs)
    node_ids = {t: _sorted_unique(np.concatenate(parts)) for t, parts in ids_by_type.items()}

    rel_parts, lhs_parts, rhs_parts = [], [], []
    for index, spec in enumerate(specs):
        lhs, rhs = per_relation[spec.name]
        lhs, rhs = _unique_pairs(
            np.searchsorted(node_ids[spec.lhs_type], lhs).astype(np.int64),
            np.searchsorted(node_ids[spec.rhs_type], rhs).astype(np.int64),
            node_ids[spec.rhs_type].shape[0],
        )
        rel_parts.append(np.full(lhs.shape[0], index, dtype=np.int64))
        lhs_parts.append(lhs)
        rhs_parts.append(rhs)
    return TwhinEdges(
        node_ids=node_ids,
        relations=specs,
        rel=np.concatenate(rel_parts) if rel_parts else np.empty(0, np.int64),
        lhs=np.concatenate(lhs_parts) if lhs_parts else np.empty(0, np.int64),
        rhs=np.concatenate(rhs_parts) if rhs_parts else np.empty(0, np.int64),
    )
