"""Ground truth, written under out_dir/truth/ and never read by the pipeline.

truth/metadata.json           config, logging policy, engagement model and its coefficients,
                              file list and row counts
truth/communities.parquet     community, name, lang, population share, utc offset
truth/users.parquet           user_id, home_community, interest (dense, length K),
                              communities/weights (sparse), latent popularity, activity, ...
truth/tweets.parquet          tweet_id, topic, quality, kind, target_tweet_id
truth/lists.parquet           list_id, community
truth/impressions/part-*.parquet
                              one row per logged impression: user_id, tweet_id, impression_at,
                              source, follows_author, interest_match and the TRUE probability
                              p_<action> of every action
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from core.contract import CONTRACT_VERSION
from jobs.synthetic.impressions import SOURCE_NAMES, Impressions
from jobs.synthetic.model import ACTIONS
from jobs.synthetic.social import Lists
from jobs.synthetic.tweets import KIND_NAMES, Tweets
from jobs.synthetic.users import LANGS, Communities, Users
from jobs.synthetic.writer import TS, codes_to_strings, opt_int64, ts

IMPRESSIONS_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("tweet_id", pa.int64(), nullable=False),
        pa.field("impression_at", TS, nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("follows_author", pa.bool_(), nullable=False),
        pa.field("interest_match", pa.float32(), nullable=False),
    ]
    + [pa.field(f"p_{a}", pa.float32(), nullable=False) for a in ACTIONS]
)


def impressions_truth(users: Users, tweets: Tweets, imp: Impressions, features: dict, probs: dict) -> pa.Table:
    cols = [
        pa.array(users.ids[imp.user]),
        pa.array(tweets.ids[imp.tweet]),
        ts(imp.t_us),
        codes_to_strings(SOURCE_NAMES, imp.source),
        pa.array(features["follows"] > 0),
        pa.array(features["interest"].astype(np.float32)),
    ] + [pa.array(probs[a]) for a in ACTIONS]
    return pa.Table.from_arrays(cols, schema=IMPRESSIONS_SCHEMA)


def communities_truth(com: Communities) -> pa.Table:
    return pa.table(
        {
            "community": pa.array(np.arange(com.k, dtype=np.int32)),
            "name": pa.array(list(com.names)),
            "lang": codes_to_strings(LANGS, com.lang),
            "share": pa.array(com.share),
            "utc_offset_h": pa.array(com.utc_offset_h),
        }
    )


def users_truth(users: Users, k: int, in_degree: np.ndarray) -> pa.Table:
    dense = users.dense_interests(k)
    idx, w = users.interest_idx, users.interest_w
    keep = w > 0
    lengths = keep.sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    comms = pa.ListArray.from_arrays(pa.array(offsets), pa.array(idx[keep].astype(np.int32)))
    weights = pa.ListArray.from_arrays(pa.array(offsets), pa.array(w[keep].astype(np.float32)))
    interest = pa.FixedSizeListArray.from_arrays(pa.array(dense.ravel()), k)
    return pa.table(
        {
            "user_id": pa.array(users.ids),
            "home_community": pa.array(users.home),
            "interest": interest,
            "communities": comms,
            "community_weights": weights,
            "popularity": pa.array(users.fitness),
            "followers": pa.array(in_degree.astype(np.int64)),
            "is_celebrity": pa.array(users.is_celebrity),
            "is_nsfw_poster": pa.array(users.is_nsfw_poster),
            "post_activity": pa.array(users.post_activity),
            "consume_activity": pa.array(users.consume_activity),
            "propensity": pa.array(users.propensity),
            "skill": pa.array(users.skill),
            "utc_offset_h": pa.array(users.utc_offset_h),
        }
    )


def tweets_truth(tweets: Tweets, lo: int, hi: int) -> pa.Table:
    s = slice(lo, hi)
    tgt = tweets.target()[s]
    return pa.table(
        {
            "tweet_id": pa.array(tweets.ids[s]),
            "topic": pa.array(tweets.topic[s]),
            "quality": pa.array(tweets.quality[s]),
            "kind": codes_to_strings(KIND_NAMES, tweets.kind[s]),
            "target_tweet_id": opt_int64(np.where(tgt >= 0, tweets.ids[np.maximum(tgt, 0)], -1)),
        }
    )


def lists_truth(lists: Lists) -> pa.Table:
    return pa.table(
        {
            "list_id": pa.array(np.arange(1, len(lists.owner) + 1, dtype=np.int64)),
            "community": pa.array(lists.community),
        }
    )


def write_metadata(path: Path, meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def metadata(cfg, com: Communities, policy: dict, model: dict, rows: dict, truth_rows: dict) -> dict:
    return {
        "generator": "jobs.synthetic",
        "contract_version": CONTRACT_VERSION,
        "config": cfg.to_json(),
        "n_communities": com.k,
        "communities": list(com.names),
        "logging_policy": policy,
        "engagement_model": model,
        "raw_rows": rows,
        "truth_rows": truth_rows,
        "files": {
            "communities": "truth/communities.parquet",
            "users": "truth/users.parquet",
            "tweets": "truth/tweets/part-*.parquet",
            "lists": "truth/lists.parquet",
            "impressions": "truth/impressions/part-*.parquet",
        },
    }
