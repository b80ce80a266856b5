"""The raw-input data contract, declared once as data.

Every consumer reads these declarations: the synthetic generator and the Higgs importer write
Parquet with `arrow_schema(table)`, ingestion enforces the rules, docs/data_contract.md describes
them. Bump CONTRACT_VERSION on any change that a data provider must know about.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

CONTRACT_VERSION = "1.0.0"

# Twitter launched on 2006-03-21; anything earlier is a broken clock, not history.
EARLIEST_VALID_TIME = datetime(2006, 3, 21, tzinfo=UTC)

ENGAGEMENT_ACTIONS = (
    "impression",
    "click",
    "like",
    "retweet",
    "reply",
    "quote",
    "profile_click",
    "video_playback50",
    "bookmark",
    "share",
    "not_interested",
    "report",
)
SOCIAL_ACTIONS = ("block", "mute")


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str  # one of: bigint, int, string, timestamp, boolean
    nullable: bool = False
    description: str = ""
    allowed_values: tuple[str, ...] | None = None
    min_value: int | None = None


@dataclass(frozen=True)
class Reference:
    """`columns` of this table must match `target_columns` of a valid row of `target_table`.

    Null values in a nullable referencing column are not checked.
    """

    columns: tuple[str, ...]
    target_table: str
    target_columns: tuple[str, ...]
    # (this row's timestamp, the target's timestamp): the row must not precede its target,
    # e.g. nobody engages with a tweet before it was posted.
    not_before: tuple[str, str] | None = None

    @property
    def rule(self) -> str:
        return f"dangling_{'_'.join(self.columns)}"


@dataclass(frozen=True)
class RawTable:
    name: str
    description: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    references: tuple[Reference, ...] = ()
    # Pairs of columns that must differ (no self-follows, no self-blocks).
    distinct_columns: tuple[tuple[str, str], ...] = ()
    # (later, earlier): `later` must not precede `earlier` in the same row.
    ordered_timestamps: tuple[tuple[str, str], ...] = ()
    # The column a duplicate key is resolved by: the earliest row wins, later ones are quarantined.
    order_by: tuple[str, ...] = field(default=())

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


def _ts(name: str, nullable: bool = False, description: str = "") -> Column:
    return Column(name, "timestamp", nullable, description)


USERS = RawTable(
    name="users",
    description="Accounts.",
    columns=(
        Column("user_id", "bigint", description="Stable account id."),
        Column("handle", "string", description="Screen name without the @."),
        _ts("created_at", description="Account creation time."),
        Column("is_verified", "boolean"),
        Column("allow_nsfw", "boolean", description="Viewer opted in to sensitive media."),
        Column("lang", "string", nullable=True, description="Preferred language, ISO 639-1."),
    ),
    key=("user_id",),
    order_by=("created_at",),
)

FOLLOWS = RawTable(
    name="follows",
    description="Directed follow edges: follower_id follows followee_id.",
    columns=(
        Column("follower_id", "bigint"),
        Column("followee_id", "bigint"),
        _ts("created_at"),
    ),
    key=("follower_id", "followee_id"),
    references=(
        Reference(("follower_id",), "users", ("user_id",)),
        Reference(("followee_id",), "users", ("user_id",)),
    ),
    distinct_columns=(("follower_id", "followee_id"),),
    order_by=("created_at",),
)

TWEETS = RawTable(
    name="tweets",
    description="Tweets, replies, quotes and retweets.",
    columns=(
        Column("tweet_id", "bigint"),
        Column("author_id", "bigint"),
        _ts("created_at"),
        Column("text", "string", nullable=True),
        Column("in_reply_to_tweet_id", "bigint", nullable=True),
        Column("quoted_tweet_id", "bigint", nullable=True),
        Column("retweet_of_tweet_id", "bigint", nullable=True),
        Column("has_media", "boolean"),
        Column("has_video", "boolean"),
        Column("is_nsfw", "boolean"),
        Column("lang", "string", nullable=True),
        _ts("deleted_at", nullable=True, description="Set when the author deleted the tweet."),
    ),
    key=("tweet_id",),
    references=(
        Reference(("author_id",), "users", ("user_id",)),
        Reference(("in_reply_to_tweet_id",), "tweets", ("tweet_id",), not_before=("created_at", "created_at")),
        Reference(("quoted_tweet_id",), "tweets", ("tweet_id",), not_before=("created_at", "created_at")),
        Reference(("retweet_of_tweet_id",), "tweets", ("tweet_id",), not_before=("created_at", "created_at")),
    ),
    ordered_timestamps=(("deleted_at", "created_at"),),
    order_by=("created_at",),
)

ENGAGEMENTS = RawTable(
    name="engagements",
    description="What users did with tweets, impressions included.",
    columns=(
        Column("user_id", "bigint"),
        Column("tweet_id", "bigint"),
        Column("action", "string", allowed_values=ENGAGEMENT_ACTIONS),
        _ts("created_at"),
        Column(
            "dwell_ms",
            "int",
            nullable=True,
            min_value=0,
            description="Time spent on the tweet, for impressions and clicks.",
        ),
    ),
    key=("user_id", "tweet_id", "action", "created_at"),
    references=(
        Reference(("user_id",), "users", ("user_id",)),
        Reference(("tweet_id",), "tweets", ("tweet_id",), not_before=("created_at", "created_at")),
    ),
    order_by=("created_at",),
)

SOCIAL_ACTIONS_TABLE = RawTable(
    name="social_actions",
    description="Blocks and mutes: user_id blocked or muted target_user_id.",
    columns=(
        Column("user_id", "bigint"),
        Column("target_user_id", "bigint"),
        Column("action", "string", allowed_values=SOCIAL_ACTIONS),
        _ts("created_at"),
    ),
    key=("user_id", "target_user_id", "action"),
    references=(
        Reference(("user_id",), "users", ("user_id",)),
        Reference(("target_user_id",), "users", ("user_id",)),
    ),
    distinct_columns=(("user_id", "target_user_id"),),
    order_by=("created_at",),
)

LISTS = RawTable(
    name="lists",
    description="User-curated lists.",
    columns=(
        Column("list_id", "bigint"),
        Column("owner_id", "bigint"),
        Column("name", "string"),
        Column("is_private", "boolean"),
        _ts("created_at"),
    ),
    key=("list_id",),
    references=(Reference(("owner_id",), "users", ("user_id",)),),
    order_by=("created_at",),
)

LIST_MEMBERS = RawTable(
    name="list_members",
    description="Accounts on a list.",
    columns=(
        Column("list_id", "bigint"),
        Column("user_id", "bigint"),
        _ts("added_at"),
    ),
    key=("list_id", "user_id"),
    references=(
        Reference(("list_id",), "lists", ("list_id",)),
        Reference(("user_id",), "users", ("user_id",)),
    ),
    order_by=("added_at",),
)

# In dependency order: a table's references point only at tables before it (or itself).
RAW_TABLES: tuple[RawTable, ...] = (
    USERS,
    FOLLOWS,
    TWEETS,
    ENGAGEMENTS,
    SOCIAL_ACTIONS_TABLE,
    LISTS,
    LIST_MEMBERS,
)
RAW_TABLES_BY_NAME = {t.name: t for t in RAW_TABLES}


def arrow_schema(table: RawTable):
    """The Parquet schema a data provider writes for `table` (timestamps in UTC, microseconds)."""
    import pyarrow as pa

    arrow_types = {
        "bigint": pa.int64(),
        "int": pa.int32(),
        "string": pa.string(),
        "timestamp": pa.timestamp("us", tz="UTC"),
        "boolean": pa.bool_(),
    }
    return pa.schema([pa.field(c.name, arrow_types[c.dtype], nullable=c.nullable) for c in table.columns])
