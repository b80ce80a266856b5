"""The follow graph: homophily + preferential attachment + celebrities + reciprocity.

A follower u draws out-degree d_u ~ lognormal (heavy tailed). Each of its draws picks a community
c from u's interest mixture (probability `follow_in_interest_share`) or "anywhere", then a
followee v with probability ∝ popularity_v^a × interest_v(c) (anywhere: ∝ popularity_v^a).
Popularity is a heavy-tailed latent fitness times (1 + followers so far / mean)^b, updated over
`attachment_rounds` rounds (preferential attachment). Celebrities are additionally followed by a
share of all users (more within their community). Then ordinary accounts follow back with a
probability that decays with their follower count. Last, triadic closure: users follow some
accounts their followees follow (`triadic_closure_share` of their out-degree), which is what makes
friends-of-friends a signal, as on real networks. Self-follows and duplicate pairs are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jobs.synthetic.config import STAGE_GRAPH, US_PER_DAY, WorldConfig, stream
from jobs.synthetic.sampling import csr_offsets, pair_keys, sample_from_cdf, uniform_between
from jobs.synthetic.users import Users, sample_interest


class CommunitySampler:
    """Draws accounts inside a community ∝ popularity × interest weight, or anywhere ∝
    popularity."""

    def __init__(self, users: Users, k: int) -> None:
        n = users.n
        flat_c = users.interest_idx.ravel()
        flat_w = users.interest_w.ravel()
        flat_u = np.repeat(np.arange(n, dtype=np.int64), users.interest_idx.shape[1])
        keep = flat_w > 0
        order = np.argsort(flat_c[keep], kind="stable")
        self.k = k
        self.members = flat_u[keep][order]
        self.member_w = flat_w[keep][order]
        self.offsets = csr_offsets(flat_c[keep][order].astype(np.int64), k)

    def sample(self, rng: np.random.Generator, communities: np.ndarray, popularity: np.ndarray) -> np.ndarray:
        """One account per entry of `communities` (-1 = anywhere); popularity is per user."""
        out = np.empty(len(communities), dtype=np.int64)
        order = np.argsort(communities, kind="stable")
        bounds = np.searchsorted(communities[order], np.arange(-1, self.k + 1))
        glob = order[bounds[0] : bounds[1]]
        out[glob] = sample_from_cdf(rng, np.cumsum(popularity), len(glob))
        for c in range(self.k):
            rows = order[bounds[c + 1] : bounds[c + 2]]
            if len(rows) == 0:
                continue
            lo, hi = self.offsets[c], self.offsets[c + 1]
            if hi == lo:  # nobody is interested in c: fall back to anywhere
                out[rows] = sample_from_cdf(rng, np.cumsum(popularity), len(rows))
                continue
            members = self.members[lo:hi]
            cdf = np.cumsum(popularity[members] * self.member_w[lo:hi])
            out[rows] = members[sample_from_cdf(rng, cdf, len(rows))]
        return out


@dataclass
class Follows:
    """Edges sorted by (follower, followee); indices are user rows, not ids."""

    follower: np.ndarray  # int32
    followee: np.ndarray  # int32
    created_us: np.ndarray  # int64
    n_users: int

    def __len__(self) -> int:
        return len(self.follower)

    @property
    def keys(self) -> np.ndarray:
        """Sorted pair keys follower * n + followee (row i of the table)."""
        return pair_keys(self.follower, self.followee, self.n_users)

    def offsets(self) -> np.ndarray:
        return csr_offsets(self.follower, self.n_users)

    def in_degree(self) -> np.ndarray:
        return np.bincount(self.followee, minlength=self.n_users)

    def out_degree(self) -> np.ndarray:
        return np.bincount(self.follower, minlength=self.n_users)


def _dedup(follower, followee, created, n):
    """Drop self-follows and keep the first occurrence of each pair; sorted by pair."""
    ok = follower != followee
    keys = pair_keys(follower[ok], followee[ok], n)
    uniq, first = np.unique(keys, return_index=True)
    created = created[ok][first]
    return (uniq // n).astype(np.int32), (uniq % n).astype(np.int32), created


def make_follows(cfg: WorldConfig, users: Users, sampler: CommunitySampler) -> Follows:
    rng = stream(cfg.seed, STAGE_GRAPH)
    n = users.n
    end = cfg.end_us

    # Out-degrees: heavy tailed, a bit higher for active users.
    mean = min(cfg.mean_follows, 0.2 * (n - 1))
    s = cfg.follows_sigma
    deg = np.exp(rng.normal(np.log(mean) - 0.5 * s * s, s, size=n)) * (
        0.75 + 0.25 * np.minimum(users.consume_activity, 4.0)
    )
    deg = np.clip(np.round(deg), 1, min(cfg.max_follows, n - 1)).astype(np.int64)
    follower = np.repeat(np.arange(n, dtype=np.int64), deg)
    in_interest = rng.random(len(follower)) < cfg.follow_in_interest_share
    communities = np.full(len(follower), -1, dtype=np.int64)
    communities[in_interest] = sample_interest(rng, users, follower[in_interest])

    # Preferential attachment over rounds: popularity grows with the followers drawn so far.
    rounds = max(1, cfg.attachment_rounds)
    round_of = rng.integers(0, rounds, size=len(follower))
    followee = np.empty(len(follower), dtype=np.int64)
    indeg = np.zeros(n, dtype=np.float64)
    base = users.fitness**cfg.popularity_exponent
    for r in range(rounds):
        rows = np.flatnonzero(round_of == r)
        pop = base * (1.0 + indeg / max(indeg.mean(), 1.0)) ** cfg.attachment_exponent
        followee[rows] = sampler.sample(rng, communities[rows], pop)
        indeg += np.bincount(followee[rows], minlength=n)

    # Celebrities: followed by a sizeable share of everyone, more so inside their community.
    celeb_f, celeb_e = [follower[:0]], [followee[:0]]
    lo_r, hi_r = cfg.celebrity_reach
    all_rows = np.arange(n)
    for c in np.flatnonzero(users.is_celebrity):
        reach = np.exp(rng.uniform(np.log(lo_r), np.log(hi_r)))
        match = users.interest(all_rows, np.full(n, users.home[c]))
        p = np.minimum(1.0, reach * (0.4 + 2.4 * match))
        fans = np.flatnonzero(rng.random(n) < p)
        celeb_f.append(fans)
        celeb_e.append(np.full(len(fans), c, dtype=np.int64))
    follower = np.concatenate([follower] + celeb_f[1:])
    followee = np.concatenate([followee] + celeb_e[1:])

    # When: any time both accounts existed (most follows predate the window).
    lo = np.maximum(users.created_us[follower], users.created_us[followee])
    created = uniform_between(rng, lo, end)
    follower, followee, created = _dedup(follower, followee, created, n)

    # Reciprocity: v follows u back, less likely when v is popular; a bit after u followed v.
    indeg = np.bincount(followee, minlength=n)
    same = users.home[follower] == users.home[followee]
    p_back = cfg.reciprocity * np.where(same, 1.3, 0.7) / (1.0 + indeg[followee] / 100.0)
    back = rng.random(len(follower)) < p_back
    delay = np.floor(rng.exponential(2.0 * US_PER_DAY, size=int(back.sum()))).astype(np.int64)
    back_created = np.minimum(created[back] + delay, end)
    follower, followee, created = _dedup(
        np.concatenate([follower, followee[back]]),
        np.concatenate([followee, follower[back]]),
        np.concatenate([created, back_created]),
        n,
    )
    # Triadic closure: people follow accounts their followees follow.
    if cfg.triadic_closure_share > 0:
        follower, followee, created = _dedup(*_close_triads(rng, follower, followee, created, n, cfg), n)
    return Follows(follower=follower, followee=followee, created_us=created, n_users=n)


def _close_triads(rng, follower, followee, created, n, cfg: WorldConfig):
    """Add about `triadic_closure_share` x out-degree follows per user, each to a followee of a
    followee (a followee drawn uniformly, then one of its followees uniformly), made after both."""
    offsets = csr_offsets(follower.astype(np.int64), n)
    outdeg = np.diff(offsets)
    extra = rng.binomial(outdeg, cfg.triadic_closure_share)
    user = np.repeat(np.arange(n, dtype=np.int64), extra)
    first = offsets[user] + (rng.random(len(user)) * outdeg[user]).astype(np.int64)
    middle = followee[first].astype(np.int64)
    reachable = outdeg[middle] > 0
    user, first, middle = user[reachable], first[reachable], middle[reachable]
    second = offsets[middle] + (rng.random(len(middle)) * outdeg[middle]).astype(np.int64)
    target = followee[second].astype(np.int64)
    delay = np.floor(rng.exponential(US_PER_DAY, size=len(user))).astype(np.int64)
    when = np.minimum(np.maximum(created[first], created[second]) + delay, cfg.end_us)
    return (
        np.concatenate([follower, user]),
        np.concatenate([followee, target]),
        np.concatenate([created, when]),
    )
