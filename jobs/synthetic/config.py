"""World configuration, seed streams and time helpers shared by the generator's stages."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from core.contract import EARLIEST_VALID_TIME

US_PER_S = 1_000_000
US_PER_MIN = 60 * US_PER_S
US_PER_HOUR = 60 * US_PER_MIN
US_PER_DAY = 24 * US_PER_HOUR

# The earliest account in a synthetic world; comfortably after EARLIEST_VALID_TIME.
FIRST_ACCOUNT_TIME = datetime(2007, 1, 1, tzinfo=UTC)

DEFAULT_END_TIME = datetime(2026, 11, 1, tzinfo=UTC)

# Sub-stream ids: each stage draws from its own SeedSequence(seed, spawn_key=(stage, ...)) so a
# change in one stage's number of draws never shifts another stage's randomness.
STAGE_COMMUNITIES = 1
STAGE_USERS = 2
STAGE_GRAPH = 3
STAGE_TWEETS = 4
STAGE_SOCIAL = 5
STAGE_LISTS = 6
STAGE_IMPRESSIONS = 7
STAGE_MODEL = 8


def to_us(dt: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime."""
    if dt.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware (UTC)")
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * US_PER_S + delta.microseconds


def stream(seed: int, *key: int) -> np.random.Generator:
    """A deterministic random generator for one stage (and optionally one block) of a world."""
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=tuple(key)))


def default_communities(n_users: int) -> int:
    """K grows with the square root of the world: 30 at 5K users, 42 at 10K, 133 at 100K, 420 at 1M
    (at most n/25). Communities of a few hundred accounts keep "popular in my communities" far
    from "popular everywhere", as on a real network with many topics."""
    k = int(round(0.42 * math.sqrt(n_users)))
    return int(max(2, min(512, k, max(2, n_users // 25))))


def default_celebrities(n_users: int) -> int:
    """A handful of celebrity accounts: 3 at 1K users, ~6 at 10K, 20 at 100K, ~63 at 1M."""
    return int(max(1, min(n_users // 50 or 1, max(3, round(2.0 * math.sqrt(n_users / 1_000))))))


@dataclass(frozen=True)
class WorldConfig:
    """Every knob of a synthetic world. Same config => byte-identical output."""

    n_users: int = 10_000
    seed: int = 0
    n_communities: int | None = None  # None: default_communities(n_users)
    window_days: int = 7  # the logging window: impressions and engagements happen in it
    end_time: datetime = DEFAULT_END_TIME  # the world's "now"; nothing happens after it
    # Tweets start this many days before the logging window so that the first day's timelines
    # are not empty; replies/retweets/impressions only ever point at earlier tweets.
    tweet_lead_in_days: int = 1

    # Users.
    interests_per_user_probs: tuple[float, float, float] = (0.45, 0.35, 0.20)  # 1, 2, 3 communities
    share_verified: float = 0.01
    share_nsfw_posters: float = 0.02
    share_allow_nsfw: float = 0.15
    share_null_lang: float = 0.05
    n_celebrities: int | None = None  # None: default_celebrities(n_users)
    celebrity_reach: tuple[float, float] = (0.02, 0.25)  # share of users following a celebrity

    # Follow graph.
    mean_follows: float = 40.0  # mean out-degree drawn (before dedup; celebrities come on top)
    follows_sigma: float = 1.0  # lognormal sigma of the out-degree
    max_follows: int = 5_000
    fitness_sigma: float = 1.2  # lognormal sigma of account popularity ("fitness")
    follow_in_interest_share: float = 0.8  # followees drawn in one of the follower's communities
    popularity_exponent: float = 1.0  # P(followee) ~ popularity^a * interest match
    attachment_rounds: int = 3  # preferential attachment: popularity grows with followers so far
    attachment_exponent: float = 0.5
    triadic_closure_share: float = 0.3  # extra follows of followees' followees, per follow
    reciprocity: float = 0.25  # chance an ordinary account follows back (less for popular ones)

    # Tweets.
    tweets_per_user_per_day: float = 1.2
    posting_sigma: float = 1.5  # lognormal sigma of posting activity
    share_replies: float = 0.20
    share_retweets: float = 0.15
    share_quotes: float = 0.04
    share_media: float = 0.25
    share_video_of_media: float = 0.35
    share_deleted: float = 0.01
    share_null_text: float = 0.02

    # Impressions (the logging policy) and engagements.
    impressions_per_user: float = 80.0  # slots per user (inactive included), before dedup/drops
    share_inactive_viewers: float = 0.10
    consumption_sigma: float = 0.9
    mean_session_length: float = 15.0
    exploration_share: float = 0.20
    explore_popular_share: float = 0.30  # of exploration: popular tweets of any community
    share_unlogged_likes: float = 0.01  # likes with no logged impression (profile visits, ...)

    # Social actions and lists.
    blocks_per_user: float = 0.02
    mutes_per_user: float = 0.05
    lists_per_user: float = 0.03
    mean_list_size: float = 20.0
    share_private_lists: float = 0.2

    # Output layout.
    users_per_block: int = 50_000  # impressions/engagements are generated and written per block
    row_group_size: int = 1_000_000
    max_rows_per_file: int = 20_000_000
    compression: str = "zstd"
    compression_level: int = 3

    def __post_init__(self) -> None:
        if self.n_users < 10:
            raise ValueError("n_users must be at least 10")
        if self.end_time.tzinfo is None:
            raise ValueError("end_time must be timezone-aware")
        if self.window_days < 1 or self.tweet_lead_in_days < 0:
            raise ValueError("window_days must be >= 1 and tweet_lead_in_days >= 0")
        if self.window_days + self.tweet_lead_in_days > 300:
            raise ValueError("window_days + tweet_lead_in_days must be at most 300")
        if self.tweet_start <= FIRST_ACCOUNT_TIME + timedelta(days=30):
            raise ValueError("end_time is too early for a world of accounts")
        if self.n_communities is not None and self.n_communities < 1:
            raise ValueError("n_communities must be >= 1")
        if abs(sum(self.interests_per_user_probs) - 1.0) > 1e-9:
            raise ValueError("interests_per_user_probs must sum to 1")
        if self.share_replies + self.share_retweets + self.share_quotes >= 1.0:
            raise ValueError("reply + retweet + quote shares must leave room for original tweets")
        for name in ("exploration_share", "explore_popular_share", "share_inactive_viewers"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")

    # Derived values.
    @property
    def k(self) -> int:
        return self.n_communities or default_communities(self.n_users)

    @property
    def celebrities(self) -> int:
        n = default_celebrities(self.n_users) if self.n_celebrities is None else self.n_celebrities
        return int(min(n, self.n_users // 2))

    @property
    def window_start(self) -> datetime:
        return self.end_time - timedelta(days=self.window_days)

    @property
    def tweet_start(self) -> datetime:
        return self.window_start - timedelta(days=self.tweet_lead_in_days)

    @property
    def end_us(self) -> int:
        return to_us(self.end_time)

    @property
    def window_start_us(self) -> int:
        return to_us(self.window_start)

    @property
    def tweet_start_us(self) -> int:
        return to_us(self.tweet_start)

    def to_json(self) -> dict:
        d = asdict(self)
        d["end_time"] = self.end_time.isoformat()
        d["effective_n_communities"] = self.k
        d["effective_n_celebrities"] = self.celebrities
        return d


@dataclass(frozen=True)
class GenerationSummary:
    """What generate_world wrote."""

    out_dir: Path
    rows_per_table: dict[str, int]
    truth_rows: dict[str, int]
    seconds: float
    n_communities: int
    config: WorldConfig = field(repr=False)


assert to_us(EARLIEST_VALID_TIME) < to_us(FIRST_ACCOUNT_TIME)
