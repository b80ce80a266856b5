"""Engagement rows: logged impressions plus actions drawn from the ground-truth model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.contract import ENGAGEMENT_ACTIONS
from jobs.synthetic.config import US_PER_S, WorldConfig
from jobs.synthetic.impressions import (
    Impressions,
    PolicyContext,
    blocked,
    by_user_time,
    in_network,
)
from jobs.synthetic.model import ACTIONS, DELAY_MEDIAN_S, click_dwell_ms, impression_dwell_ms
from jobs.synthetic.sampling import diurnal_times, lookup, pair_keys, sample_from_cdf
from jobs.synthetic.tweets import Tweets
from jobs.synthetic.users import Users

ACTION_CODE = {a: i for i, a in enumerate(ENGAGEMENT_ACTIONS)}
SHARE_NULL_IMPRESSION_DWELL = 0.01  # logging gaps: a few impressions come without dwell


@dataclass
class EngagementRows:
    user: np.ndarray  # int64 user row
    tweet: np.ndarray  # int64 tweet row
    action: np.ndarray  # int8 index into ENGAGEMENT_ACTIONS
    t_us: np.ndarray  # int64
    dwell_ms: np.ndarray  # int32, -1 = null

    def __len__(self) -> int:
        return len(self.user)


def _alive(cfg: WorldConfig, tweets: Tweets, tweet: np.ndarray, t: np.ndarray) -> np.ndarray:
    dele = tweets.deleted_us[tweet]
    return (t <= cfg.end_us) & ((dele < 0) | (t < dele))


def draw_engagements(
    rng, cfg: WorldConfig, tweets: Tweets, imp: Impressions, features: dict, probs: dict
) -> EngagementRows:
    """Impression rows, then each action independently with its true probability, a little after
    the impression (actions that would land after the end or after a deletion are not logged)."""
    m = len(imp.user)
    dwell = impression_dwell_ms(rng, features["interest"], features["quality"])
    dwell[rng.random(m) < SHARE_NULL_IMPRESSION_DWELL] = -1
    parts = [(imp.user, imp.tweet, np.zeros(m, dtype=np.int8), imp.t_us, dwell)]
    for action in ACTIONS:
        hit = np.flatnonzero(rng.random(m, dtype=np.float32) < probs[action])
        delay = np.exp(rng.normal(np.log(DELAY_MEDIAN_S[action]), 1.0, size=len(hit)))
        t = imp.t_us[hit] + np.floor(delay * US_PER_S).astype(np.int64)
        ok = _alive(cfg, tweets, imp.tweet[hit], t)
        hit, t = hit[ok], t[ok]
        if action == "click":
            d = click_dwell_ms(rng, features["interest"][hit], features["quality"][hit])
        else:
            d = np.full(len(hit), -1, dtype=np.int32)
        code = np.full(len(hit), ACTION_CODE[action], dtype=np.int8)
        parts.append((imp.user[hit], imp.tweet[hit], code, t, d))
    return _concat(parts)


def unlogged_likes(
    rng, cfg: WorldConfig, ctx: PolicyContext, users: Users, tweets: Tweets, lo: int, hi: int, logged: EngagementRows
) -> EngagementRows:
    """A few likes with no logged impression: a followee's tweet liked at a random time
    (from a profile visit or a notification), never a tweet the user already liked."""
    like = ACTION_CODE["like"]
    n_likes = int((logged.action == like).sum())
    m = int(rng.poisson(cfg.share_unlogged_likes * n_likes))
    level = users.consume_activity[lo:hi]
    if m == 0 or level.sum() <= 0:
        return _concat([])
    user = lo + sample_from_cdf(rng, np.cumsum(level), m)
    t = diurnal_times(rng, users.utc_offset_h[user], cfg.window_start_us, cfg.window_days)
    tweet = in_network(rng, ctx, user, t, tweets)
    ok = tweet >= 0
    user, tweet, t = user[ok], tweet[ok], t[ok]
    author = tweets.author[tweet]
    ok = (author != user) & _alive(cfg, tweets, tweet, t)
    ok &= ~blocked(ctx, users.n, user, author, t)
    user, tweet, t = user[ok], tweet[ok], t[ok]
    keys = pair_keys(user, tweet, tweets.n)
    is_like = logged.action == like
    liked = np.sort(pair_keys(logged.user[is_like], logged.tweet[is_like], tweets.n))
    ok = lookup(liked, keys) < 0
    _, first = np.unique(keys, return_index=True)
    fresh = np.zeros(len(keys), dtype=bool)
    fresh[first] = True
    ok &= fresh
    k = int(ok.sum())
    return EngagementRows(
        user=user[ok],
        tweet=tweet[ok],
        action=np.full(k, like, dtype=np.int8),
        t_us=t[ok],
        dwell_ms=np.full(k, -1, dtype=np.int32),
    )


def _concat(parts) -> EngagementRows:
    if not parts:
        z = np.zeros(0, dtype=np.int64)
        return EngagementRows(z, z, z.astype(np.int8), z, z.astype(np.int32))
    return EngagementRows(*(np.concatenate([p[i] for p in parts]) for i in range(5)))


def merge_sorted(a: EngagementRows, b: EngagementRows) -> EngagementRows:
    """All rows, sorted by (user, time); ties keep a's order then b's (deterministic)."""
    rows = _concat([(a.user, a.tweet, a.action, a.t_us, a.dwell_ms), (b.user, b.tweet, b.action, b.t_us, b.dwell_ms)])
    order = by_user_time(rows.user, rows.t_us)
    return EngagementRows(
        rows.user[order], rows.tweet[order], rows.action[order], rows.t_us[order], rows.dwell_ms[order]
    )
