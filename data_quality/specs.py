"""What every Delta table of the warehouse must satisfy, declared as data.

A `TableSpec` names a table's columns and types, its key, and the checks on its values: ranges,
sets, references to other tables (rows that must, or must not, match), ranks that count 1, 2, 3...
within a group, shares of rows within bounds, the mean size of a group, the share of a population
the table covers, and how fresh its newest row must be. `data_quality.suites` turns a spec into a
Great Expectations suite; the thresholds that are policy rather than fact come from
`QualityBounds` (settings `HOMEFEED_DQ_*`).

Where a table's schema is declared elsewhere (the raw-input contract, the feature registry, the
candidates and ranked-feeds schemas) the spec reads it from there rather than restating it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import types as T

from core.contract import RAW_TABLES, RawTable
from core.heads import HEAD_COLUMNS, HEADS
from core.sources import CANDIDATE_SOURCES
from features.realgraph import RealGraphConfig, feature_columns
from features.registry import ASSETS, FEATURES, keys_of_asset, spark_schema_of
from jobs.candidates.config import CANDIDATES_SCHEMA
from jobs.ingest import QUARANTINE_SCHEMA
from jobs.ranking import RANKED_FEEDS_SCHEMA


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    dtype: str  # Spark's simpleString: bigint, int, double, float, boolean, string, timestamp, array<bigint>...
    nullable: bool = False


@dataclass(frozen=True)
class Bound:
    """Every non-null value of `column` within [min, max] (None: open on that side), or at least
    the share `mostly` of them."""

    column: str
    min: float | None = None
    max: float | None = None
    mostly: float = 1.0


@dataclass(frozen=True)
class InSet:
    """Every non-null value of `column` (every element, for an array column) in `values`."""

    column: str
    values: tuple


@dataclass(frozen=True)
class Reference:
    """Every row's `columns` match `target_columns` of a row of `table` (where `target_filter` holds),
    or, with `forbidden`, no row's do. Rows with a null in `columns` are not checked."""

    name: str
    columns: tuple[str, ...]
    table: str
    target_columns: tuple[str, ...]
    target_filter: str | None = None  # Spark SQL over the target table
    forbidden: bool = False


@dataclass(frozen=True)
class ContiguousRank:
    """Within each `group`, `rank` is 1, 2, ..., n with no gap or repeat."""

    rank: str
    group: tuple[str, ...]


@dataclass(frozen=True)
class Share:
    """The share of rows for which `expression` (Spark SQL) holds is within the bounds named
    `bound` in QualityBounds (a (min, max) pair)."""

    name: str
    expression: str
    bound: str


@dataclass(frozen=True)
class GroupSize:
    """The mean number of rows per `group` is within QualityBounds' `bound`."""

    group: tuple[str, ...]
    bound: str


@dataclass(frozen=True)
class Coverage:
    """Of the distinct `columns` of the rows of `population_table` where `population_filter` holds
    (Spark SQL, `{as_of}` filled in with the build time), the share this table has is at least
    QualityBounds' `bound`."""

    name: str
    columns: tuple[str, ...]
    population_table: str
    population_filter: str
    bound: str


@dataclass(frozen=True)
class Freshness:
    """The newest `column` is at most QualityBounds' `bound` hours before the build time."""

    column: str
    bound: str = "freshness_hours"


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[ColumnSpec, ...]
    key: tuple[str, ...] = ()
    bounds: tuple[Bound, ...] = ()
    sets: tuple[InSet, ...] = ()
    references: tuple[Reference, ...] = ()
    ranks: tuple[ContiguousRank, ...] = ()
    shares: tuple[Share, ...] = ()
    group_sizes: tuple[GroupSize, ...] = ()
    coverage: tuple[Coverage, ...] = ()
    freshness: tuple[Freshness, ...] = ()
    distinct_columns: tuple[tuple[str, str], ...] = ()  # pairs that must differ within a row
    non_empty: bool = True

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


# The users active in the last 7 days: an engagement of any kind, impressions included.
RECENT_7_DAYS = "created_at >= timestamp'{as_of}' - INTERVAL 7 DAYS AND created_at < timestamp'{as_of}'"


def columns_of(schema: T.StructType, nullable: dict[str, bool] | None = None) -> tuple[ColumnSpec, ...]:
    """Column specs from a declared Spark schema (its nullability unless `nullable` overrides it)."""
    nullable = nullable or {}
    return tuple(ColumnSpec(f.name, f.dataType.simpleString(), nullable.get(f.name, f.nullable)) for f in schema.fields)


def _columns(*rows: tuple[str, str] | tuple[str, str, bool]) -> tuple[ColumnSpec, ...]:
    return tuple(ColumnSpec(*row) for row in rows)


def _users(name: str, column: str) -> Reference:
    return Reference(name, (column,), "users", ("user_id",))


def _tweets(name: str, column: str = "tweet_id") -> Reference:
    return Reference(name, (column,), "tweets", ("tweet_id",))


def _contract_spec(raw: RawTable) -> TableSpec:
    """A bronze table: the raw-input contract's columns, key and references (the ingest enforces them;
    the suite proves the written table kept them)."""
    return TableSpec(
        name=raw.name,
        columns=tuple(ColumnSpec(c.name, c.dtype, c.nullable) for c in raw.columns),
        key=raw.key,
        bounds=tuple(Bound(c.name, min=c.min_value) for c in raw.columns if c.min_value is not None),
        sets=tuple(InSet(c.name, c.allowed_values) for c in raw.columns if c.allowed_values),
        references=tuple(
            Reference(ref.rule.removeprefix("dangling_"), ref.columns, ref.target_table, ref.target_columns)
            for ref in raw.references
        ),
        distinct_columns=raw.distinct_columns,
        freshness=(Freshness("created_at"),) if raw.name in ("tweets", "engagements") else (),
        non_empty=raw.name not in ("social_actions", "lists", "list_members"),
    )


def _quarantine_spec(table: str) -> TableSpec:
    return TableSpec(
        name=f"quarantine_{table}",
        columns=columns_of(QUARANTINE_SCHEMA),
        sets=(InSet("source_table", (table,)),),
        non_empty=False,
    )


_NON_NEGATIVE_COUNT_FEATURES = ("count", "_1d", "_7d", "_1h", "_6h", "_24h", "_decayed", "rate", "share")
# Rates that count every positive action, so one impression liked, clicked and replied to counts 3:
# engagements per impression, with no upper bound.
_PER_IMPRESSION_RATES = {("user_features", "engagement_rate_7d")}
# A rate of one action is two windowed counts, and an action can land in the window while its
# impression fell just before it (the 100K-user world has 3 tweets of 840K liked twice on one
# impression in 24 h): at most 1 for all but this share of rows. A join that multiplied rows
# would push far more above.
RATE_AT_MOST_ONE_MOSTLY = 0.999


def _feature_spec(asset: str) -> TableSpec:
    """A feature table: the registry's schema; counts, rates and shares are not negative, shares at
    most 1, rates of one action at most 1 for nearly every row."""
    schema = spark_schema_of(asset)
    bounds = []
    for f in schema.fields[len(keys_of_asset(asset)) :]:
        if isinstance(f.dataType, T.DoubleType) and any(f.name.endswith(s) for s in _NON_NEGATIVE_COUNT_FEATURES):
            share = f.name.endswith("_share")
            bounds.append(Bound(f.name, min=0.0, max=1.0 if share else None))
            if f.name.endswith(("_rate_7d", "_rate_24h")) and (asset, f.name) not in _PER_IMPRESSION_RATES:
                bounds.append(Bound(f.name, max=1.0, mostly=RATE_AT_MOST_ONE_MOSTLY))
    return TableSpec(name=asset, columns=columns_of(schema), key=keys_of_asset(asset), bounds=tuple(bounds))


def _ranks_from_one(*specs: tuple[str, tuple[str, ...]]) -> tuple[ContiguousRank, ...]:
    return tuple(ContiguousRank(rank, group) for rank, group in specs)


_REALGRAPH_FEATURES = feature_columns(RealGraphConfig())
_SIGNED_REALGRAPH = {"hours_since_last", "follow_age_days"}  # -1 stands for "never"

GRAPH_SPECS: tuple[TableSpec, ...] = (
    TableSpec(
        "follow_graph_two_hop",
        _columns(
            ("user_id", "bigint"),
            ("candidate_id", "bigint"),
            ("social_proof_count", "int"),
            ("proof_user_ids", "array<bigint>"),
            ("rank", "int"),
        ),
        key=("user_id", "candidate_id"),
        bounds=(Bound("social_proof_count", min=1),),
        references=(_users("user", "user_id"), _users("candidate", "candidate_id")),
        ranks=_ranks_from_one(("rank", ("user_id",))),
        distinct_columns=(("user_id", "candidate_id"),),
    ),
    TableSpec(
        "mutual_follows",
        _columns(("user_id", "bigint"), ("mutual_id", "bigint"), ("since", "timestamp")),
        key=("user_id", "mutual_id"),
        references=(Reference("follow", ("user_id", "mutual_id"), "follows", ("follower_id", "followee_id")),),
        distinct_columns=(("user_id", "mutual_id"),),
    ),
    TableSpec(
        "user_follow_counts",
        _columns(
            ("user_id", "bigint"),
            ("following_count", "bigint"),
            ("follower_count", "bigint"),
            ("mutual_count", "bigint"),
        ),
        key=("user_id",),
        references=(_users("user", "user_id"),),
        bounds=tuple(Bound(c, min=0) for c in ("following_count", "follower_count", "mutual_count")),
    ),
    TableSpec(
        "realgraph_features",
        _columns(("user_id", "bigint"), ("author_id", "bigint"), *((c, "double") for c in _REALGRAPH_FEATURES)),
        key=("user_id", "author_id"),
        bounds=tuple(Bound(c, min=-1.0 if c in _SIGNED_REALGRAPH else 0.0) for c in _REALGRAPH_FEATURES),
    ),
    TableSpec(
        "realgraph",
        _columns(("user_id", "bigint"), ("author_id", "bigint"), ("score", "double"), ("rank", "int")),
        key=("user_id", "author_id"),
        bounds=(Bound("score", min=0.0),),
        references=(_users("user", "user_id"), _users("author", "author_id")),
        ranks=_ranks_from_one(("rank", ("user_id",))),
    ),
    TableSpec(
        "simclusters_producer_similarity",
        _columns(("producer_id", "bigint"), ("neighbor_id", "bigint"), ("cosine", "double")),
        key=("producer_id", "neighbor_id"),
        bounds=(Bound("cosine", min=0.0, max=1.0 + 1e-9),),
        distinct_columns=(("producer_id", "neighbor_id"),),
    ),
    *(
        TableSpec(
            f"simclusters_{name}",
            _columns((entity, "bigint"), ("cluster_id", "int"), ("score", "double")),
            key=(entity, "cluster_id"),
            bounds=(Bound("score", min=0.0), Bound("cluster_id", min=0)),
            references=(_tweets("tweet") if entity == "tweet_id" else _users(entity.removesuffix("_id"), entity),),
        )
        for name, entity in (
            ("known_for", "producer_id"),
            ("interested_in", "user_id"),
            ("producer_embeddings", "producer_id"),
            ("tweet_embeddings", "tweet_id"),
        )
    ),
    TableSpec(
        "simclusters_top_tweets_per_cluster",
        _columns(("cluster_id", "int"), ("tweet_id", "bigint"), ("score", "double"), ("rank", "int")),
        key=("cluster_id", "tweet_id"),
        bounds=(Bound("score", min=0.0),),
        references=(_tweets("tweet"),),
        ranks=_ranks_from_one(("rank", ("cluster_id",))),
    ),
    TableSpec(
        "twhin_relations",
        _columns(
            ("relation", "string"),
            ("lhs_type", "string"),
            ("rhs_type", "string"),
            ("edges", "bigint"),
            ("translation", "array<float>"),
        ),
        key=("relation",),
        bounds=(Bound("edges", min=0),),
    ),
    TableSpec(
        "twhin_user_embeddings",
        _columns(("user_id", "bigint"), ("embedding", "array<float>")),
        key=("user_id",),
        references=(_users("user", "user_id"),),
    ),
    TableSpec(
        "twhin_tweet_embeddings",
        _columns(("tweet_id", "bigint"), ("embedding", "array<float>")),
        key=("tweet_id",),
        references=(_tweets("tweet"),),
    ),
)

_BLOCKED_AUTHOR = Reference(
    "blocked_author",
    ("user_id", "author_id"),
    "social_actions",
    ("user_id", "target_user_id"),
    target_filter="action = 'block'",
    forbidden=True,
)

CANDIDATES_SPEC = TableSpec(
    name="candidates",
    columns=columns_of(CANDIDATES_SCHEMA),
    key=("user_id", "tweet_id"),
    bounds=(Bound("social_proof_count", min=0), *(Bound(f"{s}_rank", min=1) for s in CANDIDATE_SOURCES)),
    sets=(InSet("sources", CANDIDATE_SOURCES),),
    references=(
        _users("user", "user_id"),
        _tweets("tweet"),
        Reference("tweet_author", ("tweet_id", "author_id"), "tweets", ("tweet_id", "author_id")),
        _BLOCKED_AUTHOR,
    ),
    ranks=_ranks_from_one(("pool_rank", ("user_id",))),
    group_sizes=(GroupSize(("user_id",), "candidates_per_user"),),
    coverage=(
        Coverage("active_users_with_candidates", ("user_id",), "engagements", RECENT_7_DAYS, "candidate_user_share"),
    ),
    freshness=(Freshness("tweet_created_at"),),
    distinct_columns=(("user_id", "author_id"),),
)

RANKED_FEEDS_SPEC = TableSpec(
    name="ranked_feeds",
    columns=columns_of(RANKED_FEEDS_SCHEMA),
    key=("user_id", "tweet_id"),
    bounds=(
        *(Bound(c, min=0.0, max=1.0) for c in HEAD_COLUMNS),
        Bound("light_score", min=0.0, max=1.0),
        Bound("diversity_multiplier", min=0.0, max=1.0),
        Bound("fatigue_multiplier", min=0.0, max=1.0),
        Bound("page", min=0),
        Bound("social_proof_count", min=0),
    ),
    sets=(InSet("sources", CANDIDATE_SOURCES),),
    references=(
        _users("user", "user_id"),
        _tweets("tweet"),
        Reference("tweet_author", ("tweet_id", "author_id"), "tweets", ("tweet_id", "author_id")),
        _BLOCKED_AUTHOR,
    ),
    ranks=_ranks_from_one(("rank", ("user_id",))),
    shares=(
        Share("in_network", "is_in_network", "feed_in_network_share"),
        *(Share(f"only_{s}", f"sources = array('{s}')", "source_share") for s in CANDIDATE_SOURCES),
    ),
    group_sizes=(GroupSize(("user_id",), "feed_length"),),
    coverage=(Coverage("active_users_with_feed", ("user_id",), "engagements", RECENT_7_DAYS, "feed_user_share"),),
    freshness=(Freshness("tweet_created_at"),),
    distinct_columns=(("user_id", "author_id"),),
)

TRAINING_EXAMPLES_SPEC = TableSpec(
    name="training_examples",
    columns=(
        *_columns(
            ("user_id", "bigint"),
            ("tweet_id", "bigint"),
            ("author_id", "bigint"),
            ("impression_time", "timestamp"),
            ("snapshot_time", "timestamp"),
            ("split", "string"),
        ),
        *(ColumnSpec(label, "int") for label in HEADS),
        *(ColumnSpec(f.qualified_name, f.spark_type.simpleString()) for f in FEATURES),
    ),
    key=("user_id", "tweet_id", "impression_time"),
    sets=(InSet("split", ("train", "validation", "test")), *(InSet(label, (0, 1)) for label in HEADS)),
    references=(
        _users("user", "user_id"),
        _tweets("tweet"),
        Reference("tweet_author", ("tweet_id", "author_id"), "tweets", ("tweet_id", "author_id")),
    ),
)

TABLE_SPECS: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        *(_contract_spec(raw) for raw in RAW_TABLES),
        *(_quarantine_spec(raw.name) for raw in RAW_TABLES),
        *GRAPH_SPECS,
        CANDIDATES_SPEC,
        *(_feature_spec(asset) for asset in ASSETS),
        TRAINING_EXAMPLES_SPEC,
        RANKED_FEEDS_SPEC,
    )
}
