"""generate_world: users -> follows -> tweets -> social actions/lists -> impressions/engagements.

Stages draw from independent seed streams (config.stream), the big tables are written in
chunks with deterministic Parquet settings, and impressions/engagements are generated per block
of users so memory stays bounded by the graph and tweet arrays, not by the event log.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from core.contract import RAW_TABLES, RAW_TABLES_BY_NAME, arrow_schema
from jobs.synthetic import tables
from jobs.synthetic.config import STAGE_IMPRESSIONS, GenerationSummary, WorldConfig, stream
from jobs.synthetic.engagements import draw_engagements, merge_sorted, unlogged_likes
from jobs.synthetic.graph import CommunitySampler, Follows, make_follows
from jobs.synthetic.impressions import (
    SOURCE_NAMES,
    build_context,
    model_features,
    policy_json,
    sample_impressions,
)
from jobs.synthetic.model import model_json, probabilities
from jobs.synthetic.social import Lists, SocialActions, make_lists, make_social_actions
from jobs.synthetic.truth import (
    IMPRESSIONS_SCHEMA,
    communities_truth,
    impressions_truth,
    lists_truth,
    metadata,
    tweets_truth,
    users_truth,
    write_metadata,
)
from jobs.synthetic.tweets import Tweets, author_index, make_tweets
from jobs.synthetic.users import Communities, Users, make_communities, make_users
from jobs.synthetic.writer import PartWriter, reset_dir, write_single

log = logging.getLogger(__name__)

CHUNK_ROWS = 5_000_000  # rows converted to Arrow at a time for the big static tables


def _writer(raw: Path, name: str, cfg: WorldConfig) -> PartWriter:
    return PartWriter(raw / name, arrow_schema(RAW_TABLES_BY_NAME[name]), cfg)


def _chunks(n_rows: int) -> Iterator[tuple[int, int]]:
    """(lo, hi) row ranges of at most CHUNK_ROWS rows covering n_rows."""
    for lo in range(0, n_rows, CHUNK_ROWS):
        yield lo, min(lo + CHUNK_ROWS, n_rows)


def _write_raw_table(raw: Path, name: str, cfg: WorldConfig, parts: Iterable[pa.Table]) -> int:
    """Write the parts of raw table `name` in order; the rows written."""
    w = _writer(raw, name, cfg)
    for part in parts:
        w.write(part)
    return w.close()


def generate_world(config: WorldConfig, out_dir: Path) -> GenerationSummary:
    """Generate a synthetic world; write out_dir/raw/<table>/part-*.parquet for every contract
    table and the ground truth under out_dir/truth/. Same config => byte-identical files."""
    t0 = time.perf_counter()
    cfg = config
    out_dir = Path(out_dir)
    raw, truth = out_dir / "raw", out_dir / "truth"
    for t in RAW_TABLES:
        reset_dir(raw / t.name)
    reset_dir(truth)
    rows: dict[str, int] = {}
    truth_rows: dict[str, int] = {}

    def done(stage: str) -> None:
        log.info("%s done after %.1fs", stage, time.perf_counter() - t0)

    com = make_communities(cfg)
    users = make_users(cfg, com)
    handles = users.handles(cfg.seed)
    rows["users"] = _write_raw_table(raw, "users", cfg, [tables.users_table(users, handles)])
    done("users")

    sampler = CommunitySampler(users, com.k)
    follows = make_follows(cfg, users, sampler)
    follow_parts = (tables.follows_table(users, follows, lo, hi) for lo, hi in _chunks(len(follows)))
    rows["follows"] = _write_raw_table(raw, "follows", cfg, follow_parts)
    done("follows")

    tweets = make_tweets(cfg, users, com, handles)
    rows["tweets"], truth_rows["tweets"] = _write_tweets(cfg, raw, truth, users, tweets)
    tweets.text = None  # the largest array; not needed any more
    del handles
    gc.collect()
    done("tweets")

    social = make_social_actions(cfg, users, follows)
    lists = make_lists(cfg, users, com, sampler)
    done("social actions and lists")

    authors = author_index(tweets, cfg.tweet_start_us)
    ctx = build_context(cfg, users, follows, tweets, authors, *social.pair_index(users.n))
    done("policy context")
    rows["engagements"], truth_rows["impressions"], source_counts = _write_engagements(
        cfg, raw, truth, ctx, users, tweets, done
    )

    rows.update(_write_social_tables(cfg, raw, users, social, lists))
    truth_rows.update(_write_world_truth(cfg, truth, com, users, follows, lists))
    rows = {t.name: rows[t.name] for t in RAW_TABLES}
    policy = _policy_with_measured_shares(cfg, source_counts)
    write_metadata(truth / "metadata.json", metadata(cfg, com, policy, model_json(), rows, truth_rows))
    return GenerationSummary(
        out_dir=out_dir,
        rows_per_table=rows,
        truth_rows=truth_rows,
        seconds=time.perf_counter() - t0,
        n_communities=com.k,
        config=cfg,
    )


def _write_tweets(cfg: WorldConfig, raw: Path, truth: Path, users: Users, tweets: Tweets) -> tuple[int, int]:
    """The tweets raw table and its truth, chunk by chunk: the raw rows and truth rows written."""
    w = _writer(raw, "tweets", cfg)
    tw_truth = PartWriter(truth / "tweets", tweets_truth(tweets, 0, 0).schema, cfg)
    for lo, hi in _chunks(tweets.n):
        w.write(tables.tweets_table(users, tweets, lo, hi))
        tw_truth.write(tweets_truth(tweets, lo, hi))
    return w.close(), tw_truth.close()


def _write_social_tables(
    cfg: WorldConfig, raw: Path, users: Users, social: SocialActions, lists: Lists
) -> dict[str, int]:
    """The social_actions, lists and list_members raw tables: the rows written per table."""
    return {
        name: _write_raw_table(raw, name, cfg, [table])
        for name, table in (
            ("social_actions", tables.social_actions_table(users, social)),
            ("lists", tables.lists_table(users, lists)),
            ("list_members", tables.list_members_table(users, lists)),
        )
    }


def _write_world_truth(
    cfg: WorldConfig, truth: Path, com: Communities, users: Users, follows: Follows, lists: Lists
) -> dict[str, int]:
    """The single-file truth tables (communities, users, lists): the rows written per table."""
    return {
        "communities": write_single(truth / "communities.parquet", communities_truth(com), cfg),
        "users": write_single(truth / "users.parquet", users_truth(users, com.k, follows.in_degree()), cfg),
        "lists": write_single(truth / "lists.parquet", lists_truth(lists), cfg),
    }


def _policy_with_measured_shares(cfg: WorldConfig, source_counts: np.ndarray) -> dict:
    """The policy description with the share of impressions each source really served."""
    policy = policy_json(cfg)
    total = max(int(source_counts.sum()), 1)
    policy["measured_source_share"] = {name: round(int(c) / total, 4) for name, c in zip(SOURCE_NAMES, source_counts)}
    return policy


def _write_engagements(
    cfg: WorldConfig, raw: Path, truth: Path, ctx, users, tweets, done
) -> tuple[int, int, np.ndarray]:
    """Impressions and engagements, block by block of users: the engagement rows written, the
    impression truth rows written, and the impressions per policy source."""
    w = _writer(raw, "engagements", cfg)
    imp_truth = PartWriter(truth / "impressions", IMPRESSIONS_SCHEMA, cfg)
    source_counts = np.zeros(len(SOURCE_NAMES), dtype=np.int64)
    for b, lo in enumerate(range(0, users.n, cfg.users_per_block)):
        hi = min(lo + cfg.users_per_block, users.n)
        rng = stream(cfg.seed, STAGE_IMPRESSIONS, b)
        imp = sample_impressions(rng, cfg, ctx, users, tweets, lo, hi)
        feats = model_features(ctx, users, tweets, imp)
        source_counts += np.bincount(imp.source, minlength=len(SOURCE_NAMES))
        probs = probabilities(feats, tweets.has_video[imp.tweet])
        logged = draw_engagements(rng, cfg, tweets, imp, feats, probs)
        extra = unlogged_likes(rng, cfg, ctx, users, tweets, lo, hi, logged)
        w.write(tables.engagements_table(users, tweets, merge_sorted(logged, extra)))
        imp_truth.write(impressions_truth(users, tweets, imp, feats, probs))
        del imp, feats, probs, logged, extra
        done(f"impressions block {b}")
    return w.close(), imp_truth.close(), source_counts
