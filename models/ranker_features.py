"""What the rankers read: their feature lists (qualified registry names), their labels, and the
float32 matrices both training and scoring build from Arrow tables the same way.

The candidate-pool features (source flags and scores, pool rank, social proof, the pool's
in-network flag) are left out of both rankers: the training set cannot know them (an impression
does not record which source retrieved it, so they are at their defaults there) while scoring
would see real values, a training/serving skew the model would turn into noise. In-network is
still known to the rankers through `user_author__follows_author`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from core.heads import HEADS
from features.registry import FEATURES

CANDIDATE_POOL_FEATURES = frozenset(
    f"user_tweet__{name}"
    for name in (
        "social_proof_count",
        "from_in_network",
        "from_uteg",
        "from_simclusters",
        "from_twhin",
        "from_frs",
        "from_popular",
        "in_network_score",
        "uteg_score",
        "simclusters_score",
        "twhin_score",
        "frs_score",
        "popular_score",
        "source_count",
        "pool_rank",
        "is_in_network",
    )
)
HEAVY_RANKER_FEATURES: tuple[str, ...] = tuple(
    f.qualified_name for f in FEATURES if f.qualified_name not in CANDIDATE_POOL_FEATURES
)
# The light ranker runs on the whole pool, so it reads what is cheap to join: precomputed
# per-user, per-author and per-tweet tables and the pair's RealGraph/follow state, not the
# user-tweet embedding products.
LIGHT_RANKER_FEATURES: tuple[str, ...] = (
    "user__like_rate_7d",
    "user__engagement_rate_7d",
    "user__impressions_7d",
    "user__followee_count",
    "user__days_active_7d",
    "author__follower_count",
    "author__reputation",
    "author__like_rate_7d",
    "author__retweet_rate_7d",
    "author__reply_rate_7d",
    "author__negative_rate_7d",
    "author__media_share",
    "tweet__age_hours",
    "tweet__has_media",
    "tweet__has_video",
    "tweet__is_reply",
    "tweet__is_nsfw",
    "tweet__impressions_24h",
    "tweet__likes_24h",
    "tweet__like_rate_24h",
    "tweet__negative_24h",
    "user_author__realgraph_score",
    "user_author__follows_author",
    "user_author__engagements_decayed",
    "user_author__likes_7d",
    "user_author__impressions_7d",
)
# "Any positive engagement", the light ranker's label: every head but the negative ones.
POSITIVE_LABELS: tuple[str, ...] = tuple(label for label in HEADS if label not in ("negative_feedback", "report"))


def check_known(feature_names: Sequence[str]) -> None:
    known = {f.qualified_name for f in FEATURES}
    unknown = [name for name in feature_names if name not in known]
    if unknown:
        raise ValueError(f"not registered features: {', '.join(unknown)} (see `homefeed features`)")


check_known(LIGHT_RANKER_FEATURES)
check_known(sorted(CANDIDATE_POOL_FEATURES))


def feature_matrix(table: pa.Table, feature_names: Sequence[str]) -> np.ndarray:
    """(rows, features) float32 in `feature_names` order; booleans as 0/1, nulls as NaN."""
    missing = [name for name in feature_names if name not in table.column_names]
    if missing:
        raise ValueError(f"the input lacks the ranker features {', '.join(missing)}")
    out = np.empty((table.num_rows, len(feature_names)), dtype=np.float32)
    for j, name in enumerate(feature_names):
        column = table.column(name)
        if pa.types.is_boolean(column.type):
            column = column.cast(pa.int8())
        out[:, j] = column.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return out


def label_matrix(table: pa.Table, labels: Sequence[str] = HEADS) -> np.ndarray:
    """(rows, heads) float32 of the 0/1 labels."""
    return np.stack([table.column(label).to_numpy(zero_copy_only=False).astype(np.float32) for label in labels], axis=1)


def any_positive(table: pa.Table) -> np.ndarray:
    return (label_matrix(table, POSITIVE_LABELS).max(axis=1) > 0).astype(np.float32)
