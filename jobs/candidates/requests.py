"""The Spark side of the job: the tweet pool every source retrieves from, and one request row per
user with everything the per-user pipeline reads."""

from __future__ import annotations

from datetime import datetime, timedelta

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.candidates.columns import between, count_where
from jobs.candidates.config import DEFAULTS, HIDING_SOCIAL_ACTIONS, CandidateInputs, CandidatesConfig

# The request columns, in order (`blocks.RequestBlock` reads them).
REQUEST_COLUMNS = (
    "user_id",
    "followed_ids",
    "followed_weights",
    "two_hop_ids",
    "two_hop_counts",
    "two_hop_proofs",
    "cluster_ids",
    "cluster_scores",
    "embedding",
    "hidden_author_ids",
    "seen_tweet_ids",
)


def tweet_pool(tweets: DataFrame, *, as_of: datetime, freshness_hours: float = DEFAULTS.freshness_hours) -> DataFrame:
    """(tweet_id, author_id, created_at): tweets created in [as_of - freshness, as_of] that were not
    deleted at or before as_of. Every source retrieves from this pool."""
    return tweets.where(
        between("created_at", as_of - timedelta(hours=freshness_hours), as_of)
        & (F.col("deleted_at").isNull() | (F.col("deleted_at") > F.lit(as_of)))
    ).select("tweet_id", "author_id", "created_at")


def tweet_pool_exclusions(
    tweets: DataFrame, *, as_of: datetime, freshness_hours: float = DEFAULTS.freshness_hours
) -> DataFrame:
    """One row (future, stale, deleted, eligible): how many tweets the pool leaves out and why
    (first reason in that order) and how many it keeps."""
    start = as_of - timedelta(hours=freshness_hours)
    future = F.col("created_at") > F.lit(as_of)
    stale = F.col("created_at") < F.lit(start)
    deleted = F.col("deleted_at").isNotNull() & (F.col("deleted_at") <= F.lit(as_of))
    return tweets.agg(
        count_where(future).alias("future"),
        count_where(~future & stale).alias("stale"),
        count_where(~future & ~stale & deleted).alias("deleted"),
        count_where(~future & ~stale & ~deleted).alias("eligible"),
    )


def followed_authors(
    follows: DataFrame, realgraph: DataFrame, *, as_of: datetime, floor: float = DEFAULTS.realgraph_floor
) -> DataFrame:
    """(user_id, author_id, weight): accounts the user follows at as_of, weighted by RealGraph
    (`floor` for pairs RealGraph does not hold)."""
    edges = follows.where(F.col("created_at") <= F.lit(as_of)).select(
        F.col("follower_id").alias("user_id"), F.col("followee_id").alias("author_id")
    )
    weights = realgraph.select("user_id", "author_id", F.col("score").alias("_rg"))
    return edges.join(weights, on=["user_id", "author_id"], how="left").select(
        "user_id", "author_id", F.coalesce(F.col("_rg"), F.lit(floor)).cast("double").alias("weight")
    )


def candidate_requests(inputs: CandidateInputs, *, as_of: datetime, config: CandidatesConfig = DEFAULTS) -> DataFrame:
    """One row per user who exists at as_of, with everything the per-user pipeline reads (arrays,
    null when the user has none), the columns of `REQUEST_COLUMNS`:

    - followed_ids, followed_weights: accounts followed at as_of and their RealGraph weights;
    - two_hop_ids, two_hop_counts, two_hop_proofs: the `frs_accounts` best two-hop accounts, by rank;
    - cluster_ids, cluster_scores: the best InterestedIn clusters, by score then id (as many as
      simclusters and popular read);
    - embedding: the TwHIN user vector;
    - hidden_author_ids: accounts blocked or muted at or before as_of;
    - seen_tweet_ids: tweets with a `seen_actions` engagement at or before as_of, from the
      freshness window (an engagement is never older than its tweet, so only those can be in
      the pool); empty unless `exclude_seen`.
    """
    users = inputs.users.where(F.col("created_at") <= F.lit(as_of)).select(F.col("user_id").cast("long"))
    parts = [
        followed_lists(inputs, as_of=as_of, config=config),
        two_hop_lists(inputs.follow_graph_two_hop, config=config),
        cluster_lists(inputs.simclusters_interested_in, config=config),
        inputs.twhin_user_embeddings.select(F.col("user_id").cast("long"), "embedding"),
        hidden_authors(inputs.social_actions, as_of=as_of),
    ]
    if config.exclude_seen:
        parts.append(seen_tweets(inputs.engagements, as_of=as_of, config=config))
    requests = users
    for part in parts:
        requests = requests.join(part, on="user_id", how="left")
    if not config.exclude_seen:
        requests = requests.withColumn("seen_tweet_ids", F.lit(None).cast("array<bigint>"))
    return requests.select(*REQUEST_COLUMNS)


def followed_lists(inputs: CandidateInputs, *, as_of: datetime, config: CandidatesConfig = DEFAULTS) -> DataFrame:
    """(user_id, followed_ids, followed_weights), by author id."""
    return _per_user_arrays(
        followed_authors(inputs.follows, inputs.realgraph, as_of=as_of, floor=config.realgraph_floor),
        F.col("author_id"),
        {"followed_ids": F.col("author_id"), "followed_weights": F.col("weight")},
    )


def two_hop_lists(two_hop: DataFrame, *, config: CandidatesConfig = DEFAULTS) -> DataFrame:
    """(user_id, two_hop_ids, two_hop_counts, two_hop_proofs): the `frs_accounts` best, by rank."""
    return _per_user_arrays(
        two_hop.where(F.col("rank") <= config.frs_accounts),
        F.col("rank"),
        {
            "two_hop_ids": F.col("candidate_id").cast("long"),
            "two_hop_counts": F.col("social_proof_count").cast("int"),
            "two_hop_proofs": F.col("proof_user_ids").cast("array<bigint>"),
        },
    )


def cluster_lists(interested_in: DataFrame, *, config: CandidatesConfig = DEFAULTS) -> DataFrame:
    """(user_id, cluster_ids, cluster_scores): the best InterestedIn clusters, by score then id, as
    many as simclusters and popular read."""
    return _per_user_arrays(
        _ranked_per_user(
            interested_in,
            order=[F.col("score").desc(), F.col("cluster_id")],
            k=max(config.simclusters_clusters, config.popular_user_communities),
        ),
        F.struct((-F.col("score")).alias("s"), F.col("cluster_id").alias("c")),
        {"cluster_ids": F.col("cluster_id").cast("long"), "cluster_scores": F.col("score").cast("double")},
    )


def hidden_authors(social_actions: DataFrame, *, as_of: datetime) -> DataFrame:
    """(user_id, hidden_author_ids): accounts the user blocked or muted at or before as_of."""
    return (
        social_actions.where(F.col("action").isin(*HIDING_SOCIAL_ACTIONS) & (F.col("created_at") <= F.lit(as_of)))
        .groupBy("user_id")
        .agg(F.collect_set(F.col("target_user_id").cast("long")).alias("hidden_author_ids"))
    )


def seen_tweets(engagements: DataFrame, *, as_of: datetime, config: CandidatesConfig = DEFAULTS) -> DataFrame:
    """(user_id, seen_tweet_ids): tweets with a `seen_actions` engagement in the freshness window."""
    return (
        engagements.where(
            F.col("action").isin(*config.seen_actions)
            & between("created_at", as_of - timedelta(hours=config.freshness_hours), as_of)
        )
        .groupBy("user_id")
        .agg(F.collect_set(F.col("tweet_id").cast("long")).alias("seen_tweet_ids"))
    )


def _ranked_per_user(df: DataFrame, *, order: list[Column], k: int) -> DataFrame:
    window = Window.partitionBy("user_id").orderBy(*order)
    return df.withColumn("_position", F.row_number().over(window)).where(F.col("_position") <= k).drop("_position")


def _per_user_arrays(df: DataFrame, sort_key: Column, columns: dict[str, Column]) -> DataFrame:
    """One row per user: `columns` as arrays, aligned, ordered by `sort_key` (ascending)."""
    entry = F.struct(sort_key.alias("_key"), *[c.alias(name) for name, c in columns.items()])
    return (
        df.groupBy("user_id")
        # sort_array, not array_sort, whose default comparator is an interpreted lambda (11x slower
        # on 6M entries); the entries are never null, where the two would order differently.
        .agg(F.sort_array(F.collect_list(entry)).alias("_entries"))
        # A field of an array of structs is the array of that field: compiled, where F.transform
        # is interpreted (and Spark 4.2 reads its SQL conf again for every element it touches).
        .select("user_id", *[F.col("_entries")[name].alias(name) for name in columns])
    )
