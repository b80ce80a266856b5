"""Blocks, mutes, lists and list members."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.synthetic.config import STAGE_LISTS, STAGE_SOCIAL, WorldConfig, stream
from jobs.synthetic.graph import CommunitySampler, Follows
from jobs.synthetic.sampling import lookup, pair_keys, sample_from_cdf, uniform_between
from jobs.synthetic.users import Communities, Users, sample_interest

ACTION_BLOCK, ACTION_MUTE = 0, 1
LIST_SUFFIXES = (
    "favorites",
    "must follow",
    "news",
    "people",
    "experts",
    "crew",
    "daily",
    "watchlist",
    "legends",
    "friends",
)


@dataclass
class SocialActions:
    """Sorted by (user, target, action); rows are user rows, not ids."""

    user: np.ndarray  # int32
    target: np.ndarray  # int32
    action: np.ndarray  # int8: 0 block, 1 mute
    created_us: np.ndarray  # int64

    def pair_index(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(sorted user*n+target keys, earliest time either action took effect)."""
        keys = pair_keys(self.user, self.target, n)
        uniq, first = np.unique(keys, return_index=True)
        t = np.minimum.reduceat(self.created_us, first) if len(keys) else self.created_us
        return uniq, t


def make_social_actions(cfg: WorldConfig, users: Users, follows: Follows) -> SocialActions:
    """Blocks hit popular accounts and NSFW posters more, never a followee; mutes often target
    followees (the usual way to quiet someone you follow) or popular accounts."""
    rng = stream(cfg.seed, STAGE_SOCIAL)
    n = users.n
    active = np.cumsum(users.consume_activity + 0.05)
    popular = np.cumsum(users.fitness)
    nsfw = np.flatnonzero(users.is_nsfw_poster)
    parts = []
    for action, rate in ((ACTION_BLOCK, cfg.blocks_per_user), (ACTION_MUTE, cfg.mutes_per_user)):
        m = int(rng.poisson(rate * n))
        user = sample_from_cdf(rng, active, m)
        target = sample_from_cdf(rng, popular, m)
        mode = rng.random(m)
        rand = mode < 0.2
        target[rand] = rng.integers(0, n, size=int(rand.sum()))
        if len(nsfw):
            nsfw_mode = (mode >= 0.2) & (mode < 0.4)
            target[nsfw_mode] = nsfw[rng.integers(0, len(nsfw), size=int(nsfw_mode.sum()))]
        followed = lookup(follows.keys, pair_keys(user, target, n)) >= 0
        if action == ACTION_MUTE:
            # Half of the mutes quiet a followee.
            offs = follows.offsets()
            deg = offs[user + 1] - offs[user]
            pick = (mode >= 0.5) & (deg > 0)
            step = np.floor(rng.random(int(pick.sum())) * deg[pick]).astype(np.int64)
            e = offs[user[pick]] + step
            target[pick] = follows.followee[e]
            keep = user != target
        else:
            keep = (user != target) & ~followed
        user, target = user[keep], target[keep]
        lo = np.maximum(users.created_us[user], users.created_us[target])
        created = uniform_between(rng, lo, cfg.end_us)
        parts.append((user, target, np.full(len(user), action, dtype=np.int8), created))
    user = np.concatenate([p[0] for p in parts])
    target = np.concatenate([p[1] for p in parts])
    action = np.concatenate([p[2] for p in parts])
    created = np.concatenate([p[3] for p in parts])
    key = pair_keys(user, target, n) * 2 + action
    _, first = np.unique(key, return_index=True)  # sorted by (user, target, action)
    return SocialActions(
        user=user[first].astype(np.int32),
        target=target[first].astype(np.int32),
        action=action[first],
        created_us=created[first],
    )


@dataclass
class Lists:
    owner: np.ndarray  # int32 user row; list i has list_id i + 1
    community: np.ndarray  # int32 (truth)
    is_private: np.ndarray
    created_us: np.ndarray
    name: pa.Array
    member_list: np.ndarray  # int64 list row, sorted by (list, user)
    member_user: np.ndarray  # int32
    member_added_us: np.ndarray


def make_lists(cfg: WorldConfig, users: Users, com: Communities, sampler: CommunitySampler) -> Lists:
    """Lists are about one community (mostly the owner's); members are popular accounts of it,
    with a few picks from anywhere."""
    rng = stream(cfg.seed, STAGE_LISTS)
    n = users.n
    m = int(rng.poisson(cfg.lists_per_user * n))
    owner = sample_from_cdf(rng, np.cumsum(users.post_activity + users.consume_activity), m)
    community = sample_interest(rng, users, owner).astype(np.int32)
    is_private = rng.random(m) < cfg.share_private_lists
    created = uniform_between(rng, users.created_us[owner], cfg.end_us)
    suffix = pa.array(LIST_SUFFIXES).take(pa.array(rng.integers(0, len(LIST_SUFFIXES), m)))
    name = pc.binary_join_element_wise(pa.array(com.names).take(pa.array(community)), suffix, " ")

    size = np.exp(rng.normal(np.log(cfg.mean_list_size) - 0.5, 1.0, size=m))
    size = np.clip(np.round(size), 1, min(1000, n - 1)).astype(np.int64)
    mlist = np.repeat(np.arange(m, dtype=np.int64), size)
    comm = community[mlist].astype(np.int64)
    comm[rng.random(len(mlist)) < 0.15] = -1  # from anywhere
    member = sampler.sample(rng, comm, users.fitness)
    key = mlist * n + member
    uniq, first = np.unique(key, return_index=True)
    mlist, member = uniq // n, (uniq % n).astype(np.int32)
    lo = np.maximum(created[mlist], users.created_us[member])
    added = uniform_between(rng, lo, cfg.end_us)
    return Lists(
        owner=owner.astype(np.int32),
        community=community,
        is_private=is_private,
        created_us=created,
        name=name,
        member_list=mlist,
        member_user=member,
        member_added_us=added,
    )
