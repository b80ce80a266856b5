"""The logging policy: which tweets each user was shown, and when.

Policy (also written to truth/metadata.json):
  * Each user has a consumption level (lognormal, mean 1; 10% of users never read). Sessions per
    user ~ Poisson(impressions_per_user * level / mean_session_length), each starting at a
    diurnal time (user's local hour) inside the logging window; a session shows
    1 + Poisson(mean_session_length - 1) tweets, a few seconds apart.
  * Each slot is in-network with probability 1 - exploration_share: a followee (followed before
    the slot) is drawn ∝ its tweet count + 0.1 and the slot shows one of that followee's tweets
    (retweets included) from the last 48 h, recency weighted (density falling linearly with
    age rank), or its latest older tweet if it posted nothing in 48 h.
  * Otherwise (or when the in-network draw finds nothing) the slot explores out of network:
    with probability explore_popular_share a community ∝ its tweet volume, else one from the
    viewer's interests; then the best of 3 recent (Exp(12 h) back) originals/quotes of that topic
    by quality + popularity (log followers of the author; weighted more for the popular mode).
  * Dropped: own tweets, tweets deleted before the slot, authors the viewer blocked or muted
    before the slot, slots after the end of the world, and repeats of a (user, tweet) pair
    (only the first impression is logged). A session draws 2 candidates per slot as of its
    start and shows the first distinct ones, so repeats rarely leave a slot empty.
  Each impression is an `engagements` row with action "impression" and a dwell_ms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jobs.synthetic.config import US_PER_HOUR, US_PER_S, WorldConfig
from jobs.synthetic.graph import Follows
from jobs.synthetic.sampling import diurnal_times, gumbel, lookup, pair_keys, searchsorted
from jobs.synthetic.tweets import KIND_ORIGINAL, KIND_QUOTE, AuthorIndex, Tweets
from jobs.synthetic.users import Users, sample_interest

SOURCE_IN_NETWORK, SOURCE_EXPLORE_COMMUNITY, SOURCE_EXPLORE_POPULAR = 0, 1, 2
SOURCE_NAMES = ("in_network", "explore_community", "explore_popular")

IN_NETWORK_HORIZON_H = 48.0
EXPLORE_LAG_H = 12.0
EXPLORE_CANDIDATES = 3
SLOT_GAP_S = 6.0
OVERSAMPLE = 2  # candidates drawn per slot, so repeats can be skipped


_POLICY_HEADER = "Policy (also written to truth/metadata.json):"


def policy_json(cfg: WorldConfig) -> dict:
    return {
        "description": [
            " ".join(item.split()) for item in __doc__.split(_POLICY_HEADER)[1].split("\n  * ") if item.strip()
        ],
        "exploration_share": cfg.exploration_share,
        "explore_popular_share": cfg.explore_popular_share,
        "impressions_per_user": cfg.impressions_per_user,
        "mean_session_length": cfg.mean_session_length,
        "share_inactive_viewers": cfg.share_inactive_viewers,
        "in_network_horizon_hours": IN_NETWORK_HORIZON_H,
        "explore_recency_lag_hours": EXPLORE_LAG_H,
        "explore_candidates": EXPLORE_CANDIDATES,
        "mean_slot_gap_seconds": SLOT_GAP_S + 1.0,
        "sources": list(SOURCE_NAMES),
        "dedup": "first impression per (user, tweet)",
        "unlogged_likes": (
            f"about {cfg.share_unlogged_likes:.1%} of likes come with no logged impression "
            "(profile visits, notifications): a followee's tweet at a random time"
        ),
    }


@dataclass
class PolicyContext:
    """Everything the policy and the model look up, built once per world."""

    follows: Follows
    follow_offsets: np.ndarray
    follow_keys: np.ndarray
    followee_cw: np.ndarray  # cumulative followee weight along the edge list
    authors: AuthorIndex
    pool_rows: np.ndarray  # explore pools: original/quote rows grouped by topic, time order
    pool_bounds: np.ndarray  # (k + 1,)
    pool_times: np.ndarray
    pool_quality: np.ndarray
    pool_pop: np.ndarray  # log1p(followers of the author)
    topic_volume_cdf: np.ndarray
    muted_keys: np.ndarray  # sorted user*n+target of blocks and mutes
    muted_since: np.ndarray
    past_keys: np.ndarray  # sorted viewer*n+author of replies/quotes/retweets
    past_since: np.ndarray


def build_context(
    cfg, users: Users, follows: Follows, tweets: Tweets, authors: AuthorIndex, social_keys, social_since
) -> PolicyContext:
    n = users.n
    offs = follows.offsets()
    posts = np.bincount(tweets.author, minlength=n).astype(np.float64)
    cw = np.cumsum(posts[follows.followee] + 0.1)
    eligible = (tweets.kind == KIND_ORIGINAL) | (tweets.kind == KIND_QUOTE)
    topic = np.where(eligible, tweets.topic, cfg.k)  # k: not eligible, sorts last
    by_topic = np.argsort(topic, kind="stable")
    bounds = np.searchsorted(topic[by_topic], np.arange(cfg.k + 1))
    rows = by_topic[: bounds[-1]]
    followers = follows.in_degree()
    volume = np.diff(bounds).astype(np.float64)
    # Past interactions: replies, quotes and retweets (viewer -> author of the target).
    tgt = tweets.target()
    d = np.flatnonzero(tgt >= 0)
    keys = pair_keys(tweets.author[d], tweets.author[tgt[d]], n)
    order = np.lexsort((tweets.created_us[d], keys))
    keys_s = keys[order]
    first = np.r_[True, keys_s[1:] != keys_s[:-1]] if len(keys_s) else np.zeros(0, bool)
    return PolicyContext(
        follows=follows,
        follow_offsets=offs,
        follow_keys=follows.keys,
        followee_cw=cw,
        authors=authors,
        pool_rows=rows,
        pool_bounds=bounds,
        pool_times=tweets.created_us[rows],
        pool_quality=tweets.quality[rows].astype(np.float64),
        pool_pop=np.log1p(followers[tweets.author[rows]]),
        topic_volume_cdf=np.cumsum(volume),
        muted_keys=social_keys,
        muted_since=social_since,
        past_keys=keys_s[first],
        past_since=tweets.created_us[d][order][first],
    )


def in_network(rng, ctx: PolicyContext, user: np.ndarray, t: np.ndarray, tweets: Tweets):
    """A followee's recent tweet per (user, time) row, or -1."""
    offs = ctx.follow_offsets
    lo, hi = offs[user], offs[user + 1]
    out = np.full(len(user), -1, dtype=np.int64)
    has = hi > lo
    if not has.any() or tweets.n == 0:
        return out
    cw = ctx.followee_cw
    lo_h, hi_h = lo[has], hi[has]
    base = np.where(lo_h > 0, cw[np.maximum(lo_h - 1, 0)], 0.0)
    target = base + rng.random(len(lo_h)) * (cw[hi_h - 1] - base)
    e = np.clip(searchsorted(cw, target, side="right"), lo_h, hi_h - 1)
    t_h = t[has]
    followed = ctx.follows.created_us[e] <= t_h
    horizon = int(IN_NETWORK_HORIZON_H * US_PER_HOUR)
    tw = ctx.authors.recent(rng, ctx.follows.followee[e].astype(np.int64), t_h, horizon)
    ok = followed & (tw >= 0)
    ok &= tweets.created_us[np.maximum(tw, 0)] <= t_h
    out[np.flatnonzero(has)[ok]] = tw[ok]
    return out


def explore(rng, cfg, ctx: PolicyContext, users: Users, user: np.ndarray, t: np.ndarray):
    """An out-of-network pick per row: (tweet row or -1, source code)."""
    m = len(user)
    popular = rng.random(m) < cfg.explore_popular_share
    comm = np.empty(m, dtype=np.int64)
    comm[~popular] = sample_interest(rng, users, user[~popular])
    vol = ctx.topic_volume_cdf
    if vol[-1] > 0:
        comm[popular] = np.searchsorted(vol, rng.random(int(popular.sum())) * vol[-1], side="right")
    else:
        comm[popular] = 0
    comm = np.minimum(comm, cfg.k - 1)
    pop_w = np.where(popular, 1.0, 0.5)
    lag = rng.exponential(EXPLORE_LAG_H * US_PER_HOUR, size=(m, EXPLORE_CANDIDATES))
    noise = gumbel(rng, (m, EXPLORE_CANDIDATES))
    out = np.full(m, -1, dtype=np.int64)
    order = np.argsort(comm, kind="stable")
    cb = np.searchsorted(comm[order], np.arange(cfg.k + 1))
    for c in range(cfg.k):
        rows = order[cb[c] : cb[c + 1]]
        p0, p1 = ctx.pool_bounds[c], ctx.pool_bounds[c + 1]
        if len(rows) == 0 or p1 == p0:
            continue
        times = ctx.pool_times[p0:p1]
        ci = searchsorted(times, (t[rows][:, None] - lag[rows]).astype(np.int64), side="right") - 1
        ok = ci >= 0
        ci = np.maximum(ci, 0) + p0
        score = ctx.pool_quality[ci] + pop_w[rows][:, None] * ctx.pool_pop[ci] + noise[rows]
        score[~ok] = -np.inf
        best = np.argmax(score, axis=1)
        pick_ok = ok[np.arange(len(rows)), best]
        out[rows[pick_ok]] = ctx.pool_rows[ci[np.arange(len(rows)), best][pick_ok]]
    source = np.where(popular, SOURCE_EXPLORE_POPULAR, SOURCE_EXPLORE_COMMUNITY).astype(np.int8)
    return out, source


def blocked(ctx: PolicyContext, n: int, user: np.ndarray, author: np.ndarray, t: np.ndarray):
    return _active_pair(ctx.muted_keys, ctx.muted_since, pair_keys(user, author, n), t)


@dataclass
class Impressions:
    """Logged impressions of one block of users, sorted by (user, time)."""

    user: np.ndarray  # int64 user row
    tweet: np.ndarray  # int64 tweet row
    t_us: np.ndarray  # int64
    source: np.ndarray  # int8


def sample_impressions(
    rng, cfg: WorldConfig, ctx: PolicyContext, users: Users, tweets: Tweets, lo: int, hi: int
) -> Impressions:
    """The impressions of users [lo, hi): sessions of slots filled by the policy."""
    level = users.consume_activity[lo:hi]
    if tweets.n == 0:
        level = np.zeros_like(level)  # nothing to show
    n_sess = rng.poisson(cfg.impressions_per_user * level / cfg.mean_session_length)
    sess_user = np.repeat(np.arange(lo, hi, dtype=np.int64), n_sess)
    start = diurnal_times(rng, users.utc_offset_h[sess_user], cfg.window_start_us, cfg.window_days)
    length = 1 + rng.poisson(max(cfg.mean_session_length - 1.0, 0.0), size=len(sess_user))

    # Candidates: OVERSAMPLE per slot, all as of the session start; a session shows its first
    # `length` distinct candidates the user has not been shown before.
    n_cand = OVERSAMPLE * length
    cand_sess = np.repeat(np.arange(len(sess_user), dtype=np.int64), n_cand)
    user = sess_user[cand_sess]
    t_ref = start[cand_sess]
    tweet = np.full(len(user), -1, dtype=np.int64)
    source = np.full(len(user), SOURCE_IN_NETWORK, dtype=np.int8)
    rows = np.flatnonzero(rng.random(len(user)) >= cfg.exploration_share)
    tweet[rows] = in_network(rng, ctx, user[rows], t_ref[rows], tweets)
    rows = np.flatnonzero(tweet < 0)
    tweet[rows], source[rows] = explore(rng, cfg, ctx, users, user[rows], t_ref[rows])
    ok = _showable(cfg, ctx, users, tweets, user, tweet, t_ref)
    cand = np.flatnonzero(ok)  # in (session, candidate) order

    # First impression per (user, tweet): earliest session wins.
    order = cand[by_user_time(user[cand], t_ref[cand])]
    _, first = np.unique(user[order] * np.int64(tweets.n) + tweet[order], return_index=True)
    cand = np.sort(order[first])
    sess = cand_sess[cand]
    group_start = np.r_[0, np.flatnonzero(sess[1:] != sess[:-1]) + 1]
    sizes = np.diff(np.r_[group_start, len(sess)])
    rank = np.arange(len(sess)) - np.repeat(group_start, sizes)
    keep = rank < length[sess]
    cand, sess = cand[keep], sess[keep]

    # Slot times: the session start, then a few seconds per slot.
    gaps = np.floor((1.0 + rng.exponential(SLOT_GAP_S, size=len(cand))) * US_PER_S).astype(np.int64)
    cum = np.cumsum(gaps)
    head = np.r_[True, sess[1:] != sess[:-1]] if len(sess) else np.zeros(0, dtype=bool)
    head_cum = cum[head]
    t = start[sess] + cum - np.repeat(head_cum, np.diff(np.r_[np.flatnonzero(head), len(sess)]))
    user, tweet, source = user[cand], tweet[cand], source[cand]
    ok = _showable(cfg, ctx, users, tweets, user, tweet, t)
    user, tweet, t, source = user[ok], tweet[ok], t[ok], source[ok]
    order = by_user_time(user, t)
    return Impressions(user=user[order], tweet=tweet[order], t_us=t[order], source=source[order])


def by_user_time(user: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Stable order by (user, t): one int64 sort key when it fits, else a lexsort."""
    if len(user) == 0:
        return np.zeros(0, dtype=np.int64)
    u0, t0 = user.min(), t.min()
    span = int(t.max() - t0) + 1
    if (int(user.max() - u0) + 1) * span < 2**62:
        return np.argsort((user - u0) * np.int64(span) + (t - t0), kind="stable")
    return np.lexsort((t, user))


def _showable(cfg, ctx, users, tweets, user, tweet, t) -> np.ndarray:
    """Whether the policy may log `tweet` to `user` at `t` (see the module docstring)."""
    ok = (tweet >= 0) & (t <= cfg.end_us)
    tc = np.maximum(tweet, 0)
    author = tweets.author[tc]
    ok &= author != user
    ok &= tweets.created_us[tc] <= t
    dele = tweets.deleted_us[tc]
    ok &= (dele < 0) | (dele > t)
    ok &= ~blocked(ctx, users.n, user, author, t)
    return ok


def _active_pair(sorted_keys, since, keys, t) -> np.ndarray:
    """Whether each pair key is in `sorted_keys` with its `since` time at or before t."""
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), dtype=bool)
    pos = lookup(sorted_keys, keys)
    return (pos >= 0) & (since[np.maximum(pos, 0)] <= t)


def model_features(ctx: PolicyContext, users: Users, tweets: Tweets, imp: Impressions) -> dict:
    """The ground-truth model's inputs for each impression."""
    n = users.n
    u, tw, t = imp.user, imp.tweet, imp.t_us
    author = tweets.author[tw].astype(np.int64)
    keys = pair_keys(u, author, n)
    follows = _active_pair(ctx.follow_keys, ctx.follows.created_us, keys, t)
    past = _active_pair(ctx.past_keys, ctx.past_since + 1, keys, t)  # strictly before
    age_h = (t - tweets.created_us[tw]) / US_PER_HOUR
    return {
        "interest": users.interest(u, tweets.topic[tw]),
        "follows": follows.astype(np.float64),
        "community": (users.home[u] == users.home[author]).astype(np.float64),
        "past": past.astype(np.float64),
        "quality": tweets.quality[tw].astype(np.float64),
        "log_age_h": np.log1p(np.maximum(age_h, 0.0)),
        "nsfw_unwanted": (tweets.is_nsfw[tw] & ~users.allow_nsfw[u]).astype(np.float64),
        "has_media": tweets.has_media[tw].astype(np.float64),
        "propensity": users.propensity[u],
    }
