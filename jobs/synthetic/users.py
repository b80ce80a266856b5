"""Latent communities and accounts: interests, popularity, activity, flags, languages."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.synthetic.config import (
    FIRST_ACCOUNT_TIME,
    STAGE_COMMUNITIES,
    STAGE_USERS,
    US_PER_DAY,
    WorldConfig,
    stream,
    to_us,
)
from jobs.synthetic.sampling import categorical_rows, lognormal_mean1

TOPIC_NAMES = (
    "tech",
    "sports",
    "music",
    "politics",
    "gaming",
    "anime",
    "finance",
    "crypto",
    "science",
    "movies",
    "fashion",
    "food",
    "travel",
    "fitness",
    "art",
    "books",
    "news",
    "comedy",
    "kpop",
    "football",
    "basketball",
    "cricket",
    "climate",
    "health",
    "parenting",
    "pets",
    "photography",
    "cars",
    "space",
    "history",
    "education",
    "startups",
    "design",
    "memes",
    "religion",
    "law",
    "tv",
    "theatre",
    "dance",
    "outdoors",
)

# Community languages and the UTC offsets (hours) their members live at.
LANGS = ("en", "ja", "es", "pt", "ar", "fr", "ko", "de", "tr", "hi")
LANG_P = np.array([0.60, 0.09, 0.09, 0.06, 0.04, 0.04, 0.03, 0.02, 0.02, 0.01])
LANG_OFFSETS = {
    "en": (-5.0, -8.0, 0.0, -6.0),
    "ja": (9.0,),
    "es": (-5.0, 1.0, -3.0),
    "pt": (-3.0,),
    "ar": (3.0,),
    "fr": (1.0,),
    "ko": (9.0,),
    "de": (1.0,),
    "tr": (3.0,),
    "hi": (5.5,),
}
HANDLE_WORDS = (
    "the",
    "real",
    "its",
    "just",
    "hey",
    "mr",
    "ms",
    "dr",
    "team",
    "daily",
    "official",
    "big",
    "little",
    "cool",
    "pixel",
    "sunny",
    "cosmic",
    "lucky",
    "quiet",
    "wild",
)


@dataclass(frozen=True)
class Communities:
    k: int
    names: tuple[str, ...]
    share: np.ndarray  # (k,) population share of each community (as a home)
    lang: np.ndarray  # (k,) int index into LANGS
    utc_offset_h: np.ndarray  # (k,) float


def make_communities(cfg: WorldConfig) -> Communities:
    rng = stream(cfg.seed, STAGE_COMMUNITIES)
    k = cfg.k
    sizes = (np.arange(1, k + 1, dtype=np.float64)) ** -0.7  # unequal community sizes
    share = sizes / sizes.sum()
    lang = rng.choice(len(LANGS), size=k, p=LANG_P)
    lang[0] = 0  # the largest community speaks English
    offsets = np.array([rng.choice(LANG_OFFSETS[LANGS[li]]) for li in lang], dtype=np.float64)
    t = len(TOPIC_NAMES)
    names = tuple(TOPIC_NAMES[i % t] + ("" if i < t else str(i // t)) for i in range(k))
    return Communities(k=k, names=names, share=share, lang=lang, utc_offset_h=offsets)


@dataclass
class Users:
    """Row i is the account with user_id ids[i]; rows are in creation order."""

    n: int
    ids: np.ndarray  # int64
    created_us: np.ndarray  # int64
    home: np.ndarray  # int32 home community
    interest_idx: np.ndarray  # (n, 3) int32 communities (padding repeats with weight 0)
    interest_w: np.ndarray  # (n, 3) float64 weights, rows sum to 1
    fitness: np.ndarray  # float64 latent popularity (heavy tailed)
    is_celebrity: np.ndarray  # bool
    post_activity: np.ndarray  # float64, mean 1, heavy tailed
    consume_activity: np.ndarray  # float64, mean 1 over all users, 0 for inactive viewers
    propensity: np.ndarray  # float64 per-user engagement logit offset
    skill: np.ndarray  # float64 author's mean tweet quality
    is_verified: np.ndarray
    allow_nsfw: np.ndarray
    is_nsfw_poster: np.ndarray
    lang: np.ndarray  # int index into LANGS, -1 = null
    utc_offset_h: np.ndarray  # float64

    def interest(self, rows: np.ndarray, communities: np.ndarray) -> np.ndarray:
        """True interest match of users `rows` in communities (topics) `communities`."""
        match = self.interest_idx[rows] == communities[:, None]
        return (self.interest_w[rows] * match).sum(axis=1)

    def dense_interests(self, k: int) -> np.ndarray:
        out = np.zeros((self.n, k), dtype=np.float32)
        for j in range(self.interest_idx.shape[1]):
            np.add.at(out, (np.arange(self.n), self.interest_idx[:, j]), self.interest_w[:, j])
        return out

    def handles(self, seed: int) -> pa.Array:
        """Unique screen names: a word and the user id."""
        rng = stream(seed, STAGE_USERS, 1)
        words = pa.array(HANDLE_WORDS)
        prefix = words.take(pa.array(rng.integers(0, len(HANDLE_WORDS), self.n)))
        return pc.binary_join_element_wise(prefix, pc.cast(pa.array(self.ids), pa.string()), "_")


def make_users(cfg: WorldConfig, com: Communities) -> Users:
    """The accounts, drawn from the users stream in a fixed order: creation times, interests,
    popularity, activity, verification, NSFW flags, languages."""
    rng = stream(cfg.seed, STAGE_USERS)
    n = cfg.n_users
    created = _creation_times(rng, cfg, n)
    home, interest_idx, interest_w = _interests(rng, cfg, com, n)
    fitness, is_celebrity = _popularity(rng, cfg, created)
    post_activity, consume_activity, propensity, skill = _activity(rng, cfg, fitness, is_celebrity)
    is_verified = _verified(rng, cfg, fitness, is_celebrity)
    is_nsfw_poster = (rng.random(n) < cfg.share_nsfw_posters) & ~is_celebrity
    allow_nsfw = (rng.random(n) < cfg.share_allow_nsfw) | is_nsfw_poster
    lang, utc_offset_h = _languages(rng, cfg, com, home)
    return Users(
        n=n,
        ids=np.arange(1, n + 1, dtype=np.int64),
        created_us=created,
        home=home,
        interest_idx=interest_idx,
        interest_w=interest_w,
        fitness=fitness,
        is_celebrity=is_celebrity,
        post_activity=post_activity,
        consume_activity=consume_activity,
        propensity=propensity,
        skill=skill,
        is_verified=is_verified,
        allow_nsfw=allow_nsfw,
        is_nsfw_poster=is_nsfw_poster,
        lang=lang,
        utc_offset_h=utc_offset_h,
    )


def _creation_times(rng: np.random.Generator, cfg: WorldConfig, n: int) -> np.ndarray:
    """Account creation times: growth accelerates, so recent accounts are more common. Sorted =>
    ids increase with account age like real ids do."""
    first = to_us(FIRST_ACCOUNT_TIME)
    last = cfg.tweet_start_us - US_PER_DAY
    return np.sort(first + np.floor(rng.random(n) ** 0.7 * (last - first)).astype(np.int64))


def _interests(
    rng: np.random.Generator, cfg: WorldConfig, com: Communities, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A home community plus up to two others, sparse weights (home dominates): the home, the
    (n, 3) interest communities and their (n, 3) weights."""
    k = com.k
    home = rng.choice(k, size=n, p=com.share).astype(np.int32)
    m = rng.choice(3, size=n, p=np.asarray(cfg.interests_per_user_probs)) + 1
    idx = np.empty((n, 3), dtype=np.int32)
    idx[:, 0] = home
    idx[:, 1:] = rng.choice(k, size=(n, 2), p=com.share)
    w = np.stack([rng.gamma(4.0, size=n), rng.gamma(1.5, size=n), rng.gamma(1.5, size=n)], axis=1)
    w[np.arange(3)[None, :] >= m[:, None]] = 0.0
    w[:, 1][idx[:, 1] == idx[:, 0]] = 0.0
    w[:, 2][(idx[:, 2] == idx[:, 0]) | (idx[:, 2] == idx[:, 1])] = 0.0
    w /= w.sum(axis=1, keepdims=True)
    return home, idx, w


def _popularity(rng: np.random.Generator, cfg: WorldConfig, created: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fitness, heavy tailed, older accounts a bit more popular; and the few celebrities."""
    n = len(created)
    age_years = (cfg.tweet_start_us - created) / (365.25 * US_PER_DAY)
    fitness = lognormal_mean1(rng, cfg.fitness_sigma, n) * (1.0 + age_years / 10.0)
    is_celebrity = np.zeros(n, dtype=bool)
    n_celeb = cfg.celebrities
    if n_celeb:
        # Celebrities are drawn among the oldest half of the accounts.
        celebs = rng.choice(n // 2, size=n_celeb, replace=False)
        is_celebrity[celebs] = True
        fitness[celebs] = np.maximum(fitness[celebs], np.quantile(fitness, 0.995))
    return fitness, is_celebrity


def _activity(
    rng: np.random.Generator, cfg: WorldConfig, fitness: np.ndarray, is_celebrity: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Posting and consumption activity (correlated, mean 1), engagement propensity and author
    skill."""
    n = len(fitness)
    z_post = rng.normal(size=n)
    z_cons = 0.5 * z_post + np.sqrt(0.75) * rng.normal(size=n)
    s = cfg.posting_sigma
    post_activity = np.exp(-0.5 * s * s + s * z_post)
    post_activity[is_celebrity] *= 2.0
    c = cfg.consumption_sigma
    consume = np.exp(-0.5 * c * c + c * z_cons)
    inactive = rng.random(n) < cfg.share_inactive_viewers
    consume[inactive] = 0.0
    consume /= max(consume.mean(), 1e-12)
    propensity = rng.normal(0.0, 0.6, size=n) + 0.3 * z_cons
    skill = rng.normal(0.0, 0.5, size=n) + 0.15 * np.log(fitness)
    return post_activity, consume, propensity, skill


def _verified(rng: np.random.Generator, cfg: WorldConfig, fitness: np.ndarray, is_celebrity: np.ndarray) -> np.ndarray:
    """Verified: the most popular accounts (with noise) plus all celebrities."""
    n = len(fitness)
    n_ver = int(round(cfg.share_verified * n))
    score = np.log(fitness) + rng.gumbel(size=n)
    is_verified = np.zeros(n, dtype=bool)
    if n_ver:
        is_verified[np.argsort(-score, kind="stable")[:n_ver]] = True
    return is_verified | is_celebrity


def _languages(
    rng: np.random.Generator, cfg: WorldConfig, com: Communities, home: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Language, mostly the home community's, some drawn globally, some unknown (-1); and the UTC
    offset, the home community's give or take an hour."""
    n = len(home)
    lang = com.lang[home].astype(np.int16)
    other = rng.random(n) < 0.15
    lang[other] = rng.choice(len(LANGS), size=int(other.sum()), p=LANG_P)
    lang[rng.random(n) < cfg.share_null_lang] = -1
    utc = com.utc_offset_h[home] + rng.choice([-1.0, 0.0, 0.0, 1.0], size=n)
    return lang, utc


def sample_interest(rng: np.random.Generator, users: Users, rows: np.ndarray) -> np.ndarray:
    """A community per row drawn from that user's interest mixture."""
    j = categorical_rows(rng, users.interest_w[rows])
    return users.interest_idx[rows, j]
