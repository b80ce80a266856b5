"""The pair-feature kernel against a plain-Python reading of each feature's definition, on random
sides with missing rows, null vectors, sliced arrays and pairs by index."""

from __future__ import annotations

import math
import random

import numpy as np
import pyarrow as pa
import pytest

from features import pair_kernel as pk

TOPIC_VALUE = pa.struct([(name, pa.float64()) for name in pk.TOPIC_VALUE_FIELDS])
WORDS = [f"w{i}" for i in range(12)]


def _maybe(rng: random.Random, value, share: float = 0.2):
    return None if rng.random() < share else value


def _user(rng: random.Random) -> dict:
    dim = 4 if rng.random() < 0.9 else 3  # a few vectors of another length
    return {
        pk.USER_SC: _maybe(rng, {c: rng.random() for c in rng.sample(range(8), rng.randint(0, 4))}),
        pk.USER_TW: _maybe(rng, [0.0] * dim if rng.random() < 0.1 else [rng.uniform(-1, 1) for _ in range(dim)]),
        pk.CONTENT_PROFILE: _maybe(rng, {w: float(rng.randint(1, 3)) for w in rng.sample(WORDS, rng.randint(0, 5))}),
        pk.CONTENT_NORM: rng.uniform(1, 3),
        pk.TOPIC_VALUES: _maybe(
            rng,
            {
                t: {"authored_share": _maybe(rng, rng.random()), "followee_share": rng.random(), "rate": rng.random()}
                for t in rng.sample(range(5), rng.randint(0, 3))
            },
        ),
        pk.TOPIC_PRIOR_RATE: _maybe(rng, rng.random(), 0.4),
    }


def _tweet(rng: random.Random) -> dict:
    clusters = rng.sample(range(8), rng.randint(0, 4))
    return {
        pk.TWEET_SC: _maybe(rng, [{"cluster_id": c, "score": rng.random()} for c in clusters]),
        pk.TWEET_TW: _maybe(rng, [rng.uniform(-1, 1) for _ in range(4)]),
        pk.TWEET_TOKENS: _maybe(rng, rng.sample(WORDS, rng.randint(1, 4))),
        pk.TOPIC: _maybe(rng, rng.randrange(6), 0.3),
        pk.TOPIC_CONFIDENCE: rng.random(),
    }


USER_TYPES = {
    pk.USER_SC: pa.map_(pa.int32(), pa.float64()),
    pk.USER_TW: pa.list_(pa.float32()),
    pk.CONTENT_PROFILE: pa.map_(pa.string(), pa.float64()),
    pk.CONTENT_NORM: pa.float64(),
    pk.TOPIC_VALUES: pa.map_(pa.int32(), TOPIC_VALUE),
    pk.TOPIC_PRIOR_RATE: pa.float64(),
}
TWEET_TYPES = {
    pk.TWEET_SC: pa.list_(pa.struct([("cluster_id", pa.int32()), ("score", pa.float64())])),
    pk.TWEET_TW: pa.list_(pa.float32()),
    pk.TWEET_TOKENS: pa.list_(pa.string()),
    pk.TOPIC: pa.int32(),
    pk.TOPIC_CONFIDENCE: pa.float64(),
}


def _table(rows: list[dict], types: dict) -> pa.Table:
    columns = {}
    for name, type_ in types.items():
        raw = [row[name] for row in rows]
        if pa.types.is_map(type_):
            raw = [None if v is None else list(v.items()) for v in raw]
        columns[name] = pa.array(raw, type=type_)
    return pa.table(columns)


def _f32(values) -> list[float]:
    return [float(np.float32(v)) for v in values]


def _expected(user: dict | None, tweet: dict | None, overall_rate: float) -> dict:
    user, tweet = user or dict.fromkeys(USER_TYPES), tweet or dict.fromkeys(TWEET_TYPES)
    sc = user[pk.USER_SC] or {}
    dot = sum(sc.get(e["cluster_id"], 0.0) * e["score"] for e in tweet[pk.TWEET_SC] or [])
    cosine, present = 0.0, False
    u, t = user[pk.USER_TW], tweet[pk.TWEET_TW]
    if u is not None and t is not None and len(u) == len(t):
        u, t = _f32(u), _f32(t)
        norms = math.sqrt(sum(x * x for x in u)) * math.sqrt(sum(x * x for x in t))
        if norms > 0:
            cosine, present = sum(a * b for a, b in zip(u, t, strict=True)) / norms, True
    profile, tokens = user[pk.CONTENT_PROFILE] or {}, tweet[pk.TWEET_TOKENS] or []
    shared = sum(profile.get(w, 0.0) for w in tokens)
    content = shared / (user[pk.CONTENT_NORM] * math.sqrt(len(tokens))) if shared > 0 else None
    topic = tweet[pk.TOPIC]
    if topic is None:
        topics = dict.fromkeys(("confidence", "authored", "followee", "rate"))
    else:
        at = (user[pk.TOPIC_VALUES] or {}).get(topic)
        prior = user[pk.TOPIC_PRIOR_RATE]
        topics = {
            "confidence": tweet[pk.TOPIC_CONFIDENCE],
            "authored": (at or {}).get("authored_share") or 0.0,
            "followee": (at or {}).get("followee_share") or 0.0,
            "rate": at["rate"] if at else (prior if prior is not None else overall_rate),
        }
    return {
        "simclusters_dot": dot,
        "twhin_cosine": cosine,
        "has_twhin_embedding": present,
        "content_affinity": content,
        "topic_confidence": topics["confidence"],
        "topic_authored_share": topics["authored"],
        "topic_followee_share": topics["followee"],
        "topic_engagement_rate": topics["rate"],
    }


def _assert_close(actual: dict[str, pa.Array], expected: list[dict]) -> None:
    for name in pk.PAIR_FEATURE_TYPES:
        got = actual[name].to_pylist()
        want = [row[name] for row in expected]
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            if w is None or isinstance(w, bool):
                assert g == w, (name, i, g, w)
            else:
                assert g == pytest.approx(w, rel=1e-9, abs=1e-12), (name, i, g, w)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pairs_by_index_match_the_definitions(seed):
    rng = random.Random(seed)
    users = [_user(rng) for _ in range(40)]
    tweets = [_tweet(rng) for _ in range(60)]
    pairs = [(rng.randrange(-1, 40), rng.randrange(-1, 60)) for _ in range(500)]
    # Sliced sides: their list offsets point into the parents' entries.
    user_side = _table([_user(rng), *users], USER_TYPES).slice(1)
    tweet_side = _table([_tweet(rng), _tweet(rng), *tweets], TWEET_TYPES).slice(2)
    out = pk.pair_features(
        user_side,
        tweet_side,
        np.array([u for u, _ in pairs]),
        np.array([t for _, t in pairs]),
        overall_rate=0.125,
    )
    expected = [_expected(users[u] if u >= 0 else None, tweets[t] if t >= 0 else None, 0.125) for u, t in pairs]
    _assert_close(out, expected)
    assert any(row["content_affinity"] for row in expected) and any(row["simclusters_dot"] for row in expected)
    assert any(row["topic_engagement_rate"] is not None for row in expected)


def test_row_aligned_sides_and_absent_columns():
    rng = random.Random(5)
    users, tweets = [_user(rng) for _ in range(30)], [_tweet(rng) for _ in range(30)]
    rows = np.arange(30)
    out = pk.pair_features(_table(users, USER_TYPES), _table(tweets, TWEET_TYPES), rows, rows, overall_rate=0.2)
    _assert_close(out, [_expected(u, t, 0.2) for u, t in zip(users, tweets, strict=True)])
    # Without topic data (overall_rate None) or a side's columns, the features are null or their zero.
    bare = pk.pair_features(pa.table({"x": [1] * 30}), _table(tweets, TWEET_TYPES), rows, rows, overall_rate=None)
    assert bare["simclusters_dot"].to_pylist() == [0.0] * 30
    assert bare["has_twhin_embedding"].to_pylist() == [False] * 30
    assert bare["content_affinity"].null_count == 30 and bare["topic_engagement_rate"].null_count == 30
