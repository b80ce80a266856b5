"""Tweets: diurnal timing, topics from the author's interests, latent quality, conversations.

Row i of `Tweets` is the i-th tweet in time order; tweet ids are snowflake-style (milliseconds
since the Twitter epoch << 22 | sequence), so they increase with time like real ids.
Replies, quotes and retweets point at an earlier, not yet deleted, non-retweet tweet of the same
topic, chosen among a few recent candidates by quality and author popularity (so good tweets by
popular accounts collect more of them; replies may answer replies, forming conversations).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.synthetic.config import STAGE_TWEETS, US_PER_HOUR, WorldConfig, stream
from jobs.synthetic.sampling import diurnal_times, gumbel, searchsorted
from jobs.synthetic.users import Communities, Users, sample_interest

KIND_ORIGINAL, KIND_REPLY, KIND_RETWEET, KIND_QUOTE = 0, 1, 2, 3
KIND_NAMES = ("original", "reply", "retweet", "quote")
TWITTER_EPOCH_MS = 1_288_834_974_657
AUTHOR_KEY_SHIFT = 40  # author-time keys: author << 40 | ms since the first tweet

_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "ta", "vi", "so", "pe", "da", "zu", "fo", "ri", "ba")
MAX_WORDS = 10


def _vocabulary() -> pa.Array:
    s = _SYLLABLES
    return pa.array(sorted({a + b + c for a in s for b in s for c in s[:6]}))


@dataclass
class Tweets:
    n: int
    ids: np.ndarray  # int64 snowflake ids
    author: np.ndarray  # int32 user row
    created_us: np.ndarray  # int64, non-decreasing
    kind: np.ndarray  # int8
    reply_to: np.ndarray  # int64 tweet row or -1
    quoted: np.ndarray  # int64 tweet row or -1
    retweet_of: np.ndarray  # int64 tweet row or -1
    topic: np.ndarray  # int32 community
    quality: np.ndarray  # float32 latent quality (retweets carry their original's)
    has_media: np.ndarray
    has_video: np.ndarray
    is_nsfw: np.ndarray
    lang: np.ndarray  # int16 into LANGS, -1 = null
    deleted_us: np.ndarray  # int64 or -1
    text: pa.Array

    def target(self) -> np.ndarray:
        """The tweet a reply/quote/retweet points at (-1 for originals)."""
        return np.maximum(np.maximum(self.reply_to, self.quoted), self.retweet_of)


@dataclass
class AuthorIndex:
    """Tweets sorted by (author, time): find an author's latest tweet before a time."""

    order: np.ndarray  # tweet rows in (author, time) order
    keys: np.ndarray  # int64 author << 40 | ms since t0
    t0_us: int

    def key(self, author: np.ndarray, t_us: np.ndarray) -> np.ndarray:
        ms = np.maximum((t_us - self.t0_us) // 1000, 0)
        return (author.astype(np.int64) << AUTHOR_KEY_SHIFT) | ms

    def latest_before(self, author: np.ndarray, t_us: np.ndarray) -> np.ndarray:
        """Row of `author`'s latest tweet created at or before t_us (ms resolution), or -1."""
        if len(self.keys) == 0:
            return np.full(len(author), -1, dtype=np.int64)
        pos = searchsorted(self.keys, self.key(author, t_us), side="right") - 1
        ok = pos >= 0
        pos_c = np.maximum(pos, 0)
        ok &= (self.keys[pos_c] >> AUTHOR_KEY_SHIFT) == author
        return np.where(ok, self.order[pos_c], -1)

    def recent(self, rng: np.random.Generator, author: np.ndarray, t_us: np.ndarray, horizon_us: int) -> np.ndarray:
        """One of `author`'s tweets posted in (t - horizon, t], recency weighted (density
        falling linearly with age rank); the latest before t if none is that recent; else -1."""
        if len(self.keys) == 0:
            return np.full(len(author), -1, dtype=np.int64)
        hi = searchsorted(self.keys, self.key(author, t_us), side="right") - 1
        ok = hi >= 0
        hi_c = np.maximum(hi, 0)
        ok &= (self.keys[hi_c] >> AUTHOR_KEY_SHIFT) == author
        lo = searchsorted(self.keys, self.key(author, t_us - horizon_us), side="right")
        count = np.maximum(hi_c - lo + 1, 1)
        back = np.floor(count * (1.0 - np.sqrt(1.0 - rng.random(len(author))))).astype(np.int64)
        pos = hi_c - np.minimum(back, count - 1)
        return np.where(ok, self.order[pos], -1)


def author_index(tw: Tweets, t0_us: int) -> AuthorIndex:
    order = np.argsort(tw.author, kind="stable")  # rows are in time order already
    keys = (tw.author[order].astype(np.int64) << AUTHOR_KEY_SHIFT) | ((tw.created_us[order] - t0_us) // 1000)
    return AuthorIndex(order=order, keys=keys, t0_us=t0_us)


def make_tweets(cfg: WorldConfig, users: Users, com: Communities, handles: pa.Array) -> Tweets:
    rng = stream(cfg.seed, STAGE_TWEETS)
    days = cfg.window_days + cfg.tweet_lead_in_days
    end = cfg.end_us

    counts = rng.poisson(cfg.tweets_per_user_per_day * days * users.post_activity)
    author = np.repeat(np.arange(users.n, dtype=np.int32), counts)
    created = diurnal_times(rng, users.utc_offset_h[author], cfg.tweet_start_us, days)
    order = np.argsort(created, kind="stable")
    author, created = author[order], created[order]
    t = len(author)

    topic = sample_interest(rng, users, author).astype(np.int32)
    quality = (users.skill[author] + rng.normal(size=t)).astype(np.float32)
    u = rng.random(t)
    kind = np.full(t, KIND_ORIGINAL, dtype=np.int8)
    kind[u < cfg.share_replies + cfg.share_retweets + cfg.share_quotes] = KIND_QUOTE
    kind[u < cfg.share_replies + cfg.share_retweets] = KIND_RETWEET
    kind[u < cfg.share_replies] = KIND_REPLY

    has_media = rng.random(t) < cfg.share_media
    has_video = has_media & (rng.random(t) < cfg.share_video_of_media)
    poster = users.is_nsfw_poster[author]
    is_nsfw = np.where(poster, rng.random(t) < 0.6, rng.random(t) < 0.001)
    lang = users.lang[author].copy()
    flip = rng.random(t)
    lang[flip < 0.06] = 0  # some tweets in English whatever the author's language
    lang[flip < 0.03] = -1  # undetermined

    deleted = _deletion_times(rng, cfg, created, end)
    target = _conversation_targets(rng, com, users, author, topic, kind, created, quality)
    # No target (first tweets of a topic) or a target already deleted: an original tweet.
    tgt_c = np.maximum(target, 0)
    gone = (deleted[tgt_c] >= 0) & (deleted[tgt_c] <= created)
    target[(target >= 0) & gone] = -1
    kind[target < 0] = KIND_ORIGINAL

    # Retweets carry their original's content.
    rt = np.flatnonzero(kind == KIND_RETWEET)
    src = target[rt]
    quality[rt] = quality[src]
    has_media[rt] = has_media[src]
    has_video[rt] = has_video[src]
    is_nsfw[rt] = is_nsfw[src]
    lang[rt] = lang[src]

    reply_to = np.where(kind == KIND_REPLY, target, -1)
    quoted = np.where(kind == KIND_QUOTE, target, -1)
    retweet_of = np.where(kind == KIND_RETWEET, target, -1)

    ms = created // 1000 - TWITTER_EPOCH_MS
    ids = (ms << 22) | (np.arange(t, dtype=np.int64) & ((1 << 22) - 1))

    text = _texts(rng, cfg, com, handles, author, topic, kind, target)
    return Tweets(
        n=t,
        ids=ids,
        author=author,
        created_us=created,
        kind=kind,
        reply_to=reply_to,
        quoted=quoted,
        retweet_of=retweet_of,
        topic=topic,
        quality=quality,
        has_media=has_media,
        has_video=has_video,
        is_nsfw=is_nsfw,
        lang=lang,
        deleted_us=deleted,
        text=text,
    )


def _deletion_times(rng, cfg: WorldConfig, created: np.ndarray, end: int) -> np.ndarray:
    """A few deletions, some time after posting (never after the end of the world); -1: kept."""
    t = len(created)
    deleted = np.full(t, -1, dtype=np.int64)
    dele = np.flatnonzero(rng.random(t) < cfg.share_deleted)
    delay = np.floor(rng.exponential(12 * US_PER_HOUR, size=len(dele))).astype(np.int64)
    when = created[dele] + delay
    late = when > end
    when[late] = created[dele][late] + np.floor(rng.random(int(late.sum())) * (end - created[dele][late])).astype(
        np.int64
    )
    deleted[dele] = when

    return deleted


def _conversation_targets(
    rng,
    com: Communities,
    users: Users,
    author: np.ndarray,
    topic: np.ndarray,
    kind: np.ndarray,
    created: np.ndarray,
    quality: np.ndarray,
) -> np.ndarray:
    """Per reply, retweet or quote, its target row: per topic, the best of a few recent earlier
    non-retweets; -1 for originals and where no earlier tweet exists."""
    target = np.full(len(created), -1, dtype=np.int64)
    by_topic = np.argsort(topic, kind="stable")  # rows per topic, in time order
    bounds = np.searchsorted(topic[by_topic], np.arange(com.k + 1))
    log_fit = np.log(users.fitness)
    n_cand = 4
    for c in range(com.k):
        rows = by_topic[bounds[c] : bounds[c + 1]]
        pool = rows[kind[rows] != KIND_RETWEET]
        derived = rows[kind[rows] != KIND_ORIGINAL]
        if len(derived) == 0:
            continue
        n_before = np.searchsorted(pool, derived, side="left")
        has = n_before > 0
        derived, n_before = derived[has], n_before[has]
        if len(derived) == 0 or len(pool) == 0:
            continue
        pool_t = created[pool]
        mean_lag = np.where(kind[derived] == KIND_REPLY, 3.0, 8.0) * US_PER_HOUR
        lag = rng.exponential(1.0, size=(len(derived), n_cand)) * mean_lag[:, None]
        ci = searchsorted(pool_t, created[derived][:, None] - lag, side="right") - 1
        ci = np.clip(ci, 0, (n_before - 1)[:, None])
        cand = pool[ci]
        score = quality[cand] + 0.5 * log_fit[author[cand]] + gumbel(rng, cand.shape)
        target[derived] = cand[np.arange(len(cand)), np.argmax(score, axis=1)]
    return target


def _texts(rng, cfg, com, handles, author, topic, kind, target) -> pa.Array:
    """Short synthetic strings: "@handle " for replies, maybe a topic hashtag, 2-10 words."""
    t = len(author)
    vocab = _vocabulary()
    n_words = rng.integers(2, MAX_WORDS + 1, size=t)
    cols = []
    is_reply = kind == KIND_REPLY
    reply_handle = handles.take(pa.array(author[np.maximum(target, 0)]))
    at = pc.binary_join_element_wise("@", reply_handle, "")
    cols.append(pc.if_else(pa.array(is_reply), at, pa.nulls(t, pa.string())))
    tags = pa.array(["#" + name for name in com.names])
    tag = tags.take(pa.array(topic))
    cols.append(pc.if_else(pa.array(rng.random(t) < 0.4), tag, pa.nulls(t, pa.string())))
    # Words lean towards a topic-specific slice of the vocabulary.
    v = len(vocab)
    for j in range(MAX_WORDS):
        own = rng.random(t) < 0.5
        w = np.where(own, (topic * 37 + rng.integers(0, 40, size=t)) % v, rng.integers(0, v, t))
        mask = pa.array(j >= n_words)
        cols.append(pc.if_else(mask, pa.nulls(t, pa.string()), vocab.take(pa.array(w))))
    text = pc.binary_join_element_wise(*cols, " ", null_handling="skip")
    null = (kind == KIND_RETWEET) | (rng.random(t) < cfg.share_null_text)
    return pc.if_else(pa.array(null), pa.nulls(t, pa.string()), text)
