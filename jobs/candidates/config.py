"""What the candidates job reads, its parameters, and the schemas of what it writes."""

from __future__ import annotations

from dataclasses import dataclass, fields

from pyspark.sql import DataFrame
from pyspark.sql import types as T

from core.filters import CANDIDATE_FILTERS, TOTAL_CAP
from core.sources import CANDIDATE_SOURCES

# Why a merged row is not in the table: the first viewer filter it fails (`core.filters`'
# CANDIDATE_FILTERS, in the order they are checked, cheapest first), or TOTAL_CAP when it passed
# them all but fell beyond `max_candidates_per_user`. The tagged rows' `filtered_by` values.
REMOVAL_REASONS: tuple[str, ...] = CANDIDATE_FILTERS + (TOTAL_CAP,)
ENGAGEMENT_ACTIONS = ("like", "retweet", "reply", "quote")
HIDING_SOCIAL_ACTIONS = ("block", "mute")


@dataclass(frozen=True)
class CandidatesConfig:
    # --- shared ---
    # The tweet pool: tweets created at most this long before T (and not after it), not deleted.
    freshness_hours: float = 72.0
    # Home Mixer's previously-seen filter: drop tweets the user had one of `seen_actions` on.
    exclude_seen: bool = True
    seen_actions: tuple[str, ...] = ("impression",) + ENGAGEMENT_ACTIONS
    max_proofs: int = 5
    max_candidates_per_user: int = 1500
    sources: tuple[str, ...] = CANDIDATE_SOURCES
    # Recency decay of in_network and frs scores: 0.5 ** (tweet age / half-life).
    recency_half_life_hours: float = 24.0
    # --- in_network ---
    in_network_window_hours: float = 48.0
    in_network_top_k: int = 600
    # Weight of a followed account missing from `realgraph` (RealGraph scores are probabilities).
    realgraph_floor: float = 0.01
    # --- uteg ---
    uteg_followees: int = 20
    uteg_window_hours: float = 24.0
    uteg_actions: tuple[str, ...] = ENGAGEMENT_ACTIONS
    uteg_top_k: int = 300
    # --- simclusters ---
    simclusters_clusters: int = 20
    # How deep each cluster's index (`simclusters_top_tweets_per_cluster`, rank order) is read.
    simclusters_tweets_per_cluster: int = 500
    simclusters_top_k: int = 400
    # --- twhin ---
    twhin_top_k: int = 400
    # --- frs ---
    frs_accounts: int = 20
    frs_window_hours: float = 48.0
    frs_top_k: int = 100
    # --- popular ---
    popular_window_hours: float = 48.0
    popular_half_life_hours: float = 12.0
    popular_actions: tuple[str, ...] = ENGAGEMENT_ACTIONS
    popular_global_k: int = 50
    popular_per_community_k: int = 50
    popular_user_communities: int = 3
    # --- execution ---
    # Users processed together inside a task, and the most TwHIN scores (users x pool tweets)
    # held at once.
    block_users: int = 512
    twhin_block_scores: int = 16_000_000

    @property
    def popular_top_k(self) -> int:
        return self.popular_global_k + self.popular_user_communities * self.popular_per_community_k

    def source_caps(self) -> dict[str, int]:
        """Per-source cap per user: the denominator of the interleaving key."""
        return {
            "in_network": self.in_network_top_k,
            "uteg": self.uteg_top_k,
            "simclusters": self.simclusters_top_k,
            "twhin": self.twhin_top_k,
            "frs": self.frs_top_k,
            "popular": self.popular_top_k,
        }

    def __post_init__(self) -> None:
        unknown = set(self.sources) - set(CANDIDATE_SOURCES)
        if unknown:
            raise ValueError(f"unknown candidate sources {sorted(unknown)}; known: {CANDIDATE_SOURCES}")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
                raise ValueError(f"CandidatesConfig.{f.name} must be positive, got {value}")


DEFAULTS = CandidatesConfig()


@dataclass(frozen=True)
class CandidateInputs:
    """The tables candidate generation reads, as DataFrames with the warehouse's columns."""

    tweets: DataFrame
    follows: DataFrame
    engagements: DataFrame
    social_actions: DataFrame
    users: DataFrame
    realgraph: DataFrame
    follow_graph_two_hop: DataFrame
    simclusters_interested_in: DataFrame
    simclusters_top_tweets_per_cluster: DataFrame
    simclusters_known_for: DataFrame
    twhin_user_embeddings: DataFrame
    twhin_tweet_embeddings: DataFrame


CANDIDATES_SCHEMA = T.StructType(
    [
        T.StructField("user_id", T.LongType(), False),
        T.StructField("tweet_id", T.LongType(), False),
        T.StructField("author_id", T.LongType(), False),
        T.StructField("tweet_created_at", T.TimestampType(), False),
        T.StructField("pool_rank", T.IntegerType(), False),
        T.StructField("sources", T.ArrayType(T.StringType()), False),
        T.StructField("is_in_network", T.BooleanType(), False),
    ]
    + [T.StructField(f"{s}_score", T.DoubleType(), True) for s in CANDIDATE_SOURCES]
    + [T.StructField(f"{s}_rank", T.IntegerType(), True) for s in CANDIDATE_SOURCES]
    + [
        T.StructField("simclusters_cluster_id", T.IntegerType(), True),
        T.StructField("social_proof_user_ids", T.ArrayType(T.LongType()), False),
        T.StructField("social_proof_count", T.IntegerType(), False),
        T.StructField("built_at", T.TimestampType(), False),
    ]
)

# What the per-user kernel writes: the table's columns (the creation time as microseconds, no
# built_at) for every merged row, removed ones included (`filtered_by` set, `pool_rank` null).
TAGGED_SCHEMA = T.StructType(
    [
        T.StructField(f.name, f.dataType, f.nullable or f.name == "pool_rank")
        for f in CANDIDATES_SCHEMA.fields
        if f.name not in ("tweet_created_at", "built_at")
    ]
    + [T.StructField("created_us", T.LongType(), False), T.StructField("filtered_by", T.StringType(), True)]
)

# One source's rows before the merge (`retrieved_candidates`, for inspection and tests).
RETRIEVED_SCHEMA = T.StructType(
    [
        T.StructField("source", T.StringType(), False),
        T.StructField("user_id", T.LongType(), False),
        T.StructField("tweet_id", T.LongType(), False),
        T.StructField("author_id", T.LongType(), False),
        T.StructField("created_us", T.LongType(), False),
        T.StructField("score", T.DoubleType(), False),
        T.StructField("rank", T.IntegerType(), False),
        T.StructField("cluster_id", T.IntegerType(), True),
        T.StructField("proof_user_ids", T.ArrayType(T.LongType()), True),
        T.StructField("proof_count", T.IntegerType(), True),
    ]
)
