"""Import the real Higgs Twitter dataset (SNAP) into the raw data contract.

The dataset has accounts, a partial follow graph and one week of retweet/reply/mention events, but
no tweets, no impressions and no account metadata. This module turns it into the seven raw
contract tables (`core.contract`), written as `OUT/raw/<table>/part-00000.parquet` with
`arrow_schema(table)`. Every mapping choice, and the row counts it produces, is written down in
docs/higgs_import.md.

Reading happens at the edges (`read_activity`, `read_follow_prefix`, `write_raw_table`); the
`build_*` functions in between are pure and vectorised (numpy/pandas, no per-row Python).
The output is deterministic: the same input files give byte-identical Parquet files.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core.contract import (
    EARLIEST_VALID_TIME,
    ENGAGEMENTS,
    FOLLOWS,
    RAW_TABLES,
    TWEETS,
    USERS,
    RawTable,
    arrow_schema,
)

ACTIVITY_FILE = "higgs-activity_time.txt.gz"
FOLLOW_PREFIX_FILE = "higgs-social_network.PARTIAL_prefix.edgelist"
# Aggregates of the activity file, per type; used only to cross-check (see tests), never imported.
NETWORK_FILES = {
    "RT": "higgs-retweet_network.edgelist.gz",
    "RE": "higgs-reply_network.edgelist.gz",
    "MT": "higgs-mention_network.edgelist.gz",
}

# The dataset has no account creation times: one constant, a month before the first event.
USER_CREATED_AT = datetime(2012, 6, 1, tzinfo=UTC)
# The dataset has no follow times (the graph was crawled once): every follow exists from the
# start of the observed window, so in-network/out-of-network is defined for every event.
FOLLOW_CREATED_AT = datetime(2012, 7, 1, tzinfo=UTC)
HANDLE_PREFIX = "higgs_"

# Activity type -> contract engagement action. A mention ("A wrote a tweet naming @B") is an act
# aimed at the account, not at one of its tweets: the contract's only author-directed action is
# profile_click. See docs/higgs_import.md for the alternatives considered.
ACTION_BY_TYPE = {"RT": "retweet", "RE": "reply", "MT": "profile_click"}

# A pseudo-post is (author, UTC hour); its id packs both:
# tweet_id = author_id * HOUR_SLOTS + hours since the epoch.
PSEUDO_POST_SECONDS = 3600
HOUR_SLOTS = 1_000_000  # hours since 1970 stay below 10**6 until the year 2084
_INT64_MAX = np.iinfo(np.int64).max
_US_PER_S = 1_000_000


@dataclass(frozen=True)
class HiggsImportSummary:
    """What one import wrote and dropped.

    rows_per_table: rows written per contract table (all seven, zero where Higgs has no data).
    dropped: reason -> source rows not imported (zero counts kept, so every rule is visible).
    seconds: wall-clock time of the import.
    self_engagements: engagements kept although user_id is the pseudo-post's author (A == B);
        the contract allows them.
    incomplete_follow_source: the source user whose followee list the truncated prefix cut off
        (all its follows are dropped), derived from the file.
    """

    rows_per_table: dict[str, int]
    dropped: dict[str, int]
    seconds: float
    self_engagements: int = 0
    incomplete_follow_source: int | None = None


@dataclass(frozen=True)
class FollowPrefix:
    """The complete lines of the truncated follow edge list, and what the truncation cut off."""

    follower_id: np.ndarray  # int64, one entry per complete line, file order
    followee_id: np.ndarray
    incomplete_source: int | None  # the source whose followee list may be incomplete
    truncated_line: bytes  # the cut last line (b"" when the file ends with a newline)


# --------------------------------------------------------------------------------------- reading


def read_activity(path: Path) -> pd.DataFrame:
    """`userA userB unix_ts type` lines -> DataFrame(user_a, user_b, ts, type), file order."""
    table = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=["user_a", "user_b", "ts", "type"]),
        parse_options=pacsv.ParseOptions(delimiter=" "),
        convert_options=pacsv.ConvertOptions(
            column_types={"user_a": pa.int64(), "user_b": pa.int64(), "ts": pa.int64(), "type": pa.string()}
        ),
    )
    df = table.to_pandas()
    unknown = sorted(set(df["type"].unique()) - set(ACTION_BY_TYPE))
    if unknown:
        raise ValueError(f"{path.name}: unknown activity types {unknown}")
    earliest = int(EARLIEST_VALID_TIME.timestamp())
    if len(df) and int(df["ts"].min()) < earliest:
        raise ValueError(f"{path.name}: timestamps before {EARLIEST_VALID_TIME.isoformat()}")
    return df


def read_follow_prefix(path: Path) -> FollowPrefix:
    """Parse a truncated `follower followee` edge list and find the source it cut off.

    The file is a byte prefix of SNAP's edge list, in which each source's followees form one
    contiguous block. So every block is complete except the last one: the truncation point lies
    inside it, or (if the file happens to end on a line boundary) possibly right after a line of
    it. The last line without a trailing newline is a cut record and is never parsed.
    """
    raw = path.read_bytes()
    cut = raw.rfind(b"\n") + 1  # 0 when there is no newline at all
    complete, truncated = raw[:cut], raw[cut:]
    if complete:
        table = pacsv.read_csv(
            io.BytesIO(complete),
            read_options=pacsv.ReadOptions(column_names=["follower_id", "followee_id"]),
            parse_options=pacsv.ParseOptions(delimiter=" "),
            convert_options=pacsv.ConvertOptions(column_types={"follower_id": pa.int64(), "followee_id": pa.int64()}),
        )
        follower = table.column("follower_id").to_numpy()
        followee = table.column("followee_id").to_numpy()
    else:
        follower = followee = np.empty(0, dtype=np.int64)

    if len(follower):
        blocks = 1 + int(np.count_nonzero(follower[1:] != follower[:-1]))
        if blocks != len(np.unique(follower)):
            raise ValueError(
                f"{path.name}: source users are not in contiguous blocks; "
                "cannot tell complete followee lists from the cut one"
            )

    incomplete: int | None = None
    head = truncated.split(maxsplit=1)
    if len(head) == 2 and head[0].isdigit():
        # The cut line still holds a whole source id (a separator follows it): that source's
        # list is the one the cut went through.
        incomplete = int(head[0])
    elif len(follower):
        # The cut line is empty or ends inside the source id: the last parsed block is the
        # last one that may be incomplete.
        incomplete = int(follower[-1])
    return FollowPrefix(follower, followee, incomplete, truncated)


# ------------------------------------------------------------------------------ transformations


def _ts_array(seconds: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(seconds, dtype=np.int64) * _US_PER_S, type=pa.timestamp("us", tz="UTC"))


def _const_ts(value: datetime, n: int) -> pa.Array:
    return _ts_array(np.full(n, int(value.timestamp()), dtype=np.int64))


def _const(value, n: int, type_: pa.DataType) -> pa.Array:
    return pa.array(np.full(n, value), type=type_) if value is not None else pa.nulls(n, type_)


def _table(contract: RawTable, columns: dict[str, pa.Array]) -> pa.Table:
    schema = arrow_schema(contract)
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)


def build_users(*, user_ids: np.ndarray) -> pa.Table:
    """One account per distinct id, sorted by id, with the documented constant attributes."""
    ids = np.unique(np.asarray(user_ids, dtype=np.int64))
    n = len(ids)
    handles = pc.binary_join_element_wise(pa.array(np.full(n, HANDLE_PREFIX)), pa.array(ids).cast(pa.string()), "")
    return _table(
        USERS,
        {
            "user_id": pa.array(ids, type=pa.int64()),
            "handle": handles,
            "created_at": _const_ts(USER_CREATED_AT, n),
            "is_verified": _const(False, n, pa.bool_()),
            "allow_nsfw": _const(False, n, pa.bool_()),
            "lang": _const(None, n, pa.string()),
        },
    )


def build_follows(*, prefix: FollowPrefix) -> tuple[pa.Table, dict[str, int]]:
    """Complete followee lists only, without self-follows and duplicate pairs; sorted by key."""
    follower, followee = prefix.follower_id, prefix.followee_id
    dropped = {"follows_truncated_line": 1 if prefix.truncated_line.strip() else 0}

    keep = np.ones(len(follower), dtype=bool)
    if prefix.incomplete_source is not None:
        keep &= follower != prefix.incomplete_source
    dropped["follows_incomplete_source"] = int(np.count_nonzero(~keep))

    self_follow = keep & (follower == followee)
    dropped["follows_self_follow"] = int(np.count_nonzero(self_follow))
    keep &= ~self_follow

    follower, followee = follower[keep], followee[keep]
    order = np.lexsort((followee, follower))
    follower, followee = follower[order], followee[order]
    first = np.ones(len(follower), dtype=bool)
    first[1:] = (follower[1:] != follower[:-1]) | (followee[1:] != followee[:-1])
    dropped["follows_duplicate_pair"] = int(np.count_nonzero(~first))
    follower, followee = follower[first], followee[first]

    n = len(follower)
    table = _table(
        FOLLOWS,
        {
            "follower_id": pa.array(follower, type=pa.int64()),
            "followee_id": pa.array(followee, type=pa.int64()),
            "created_at": _const_ts(FOLLOW_CREATED_AT, n),
        },
    )
    return table, dropped


def pseudo_post_id(author_id: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """tweet_id of the pseudo-post (author, UTC hour of ts): author_id * 10**6 + epoch hours."""
    author_id = np.asarray(author_id, dtype=np.int64)
    hour = np.asarray(ts, dtype=np.int64) // PSEUDO_POST_SECONDS
    if len(author_id):
        if author_id.min() < 0 or author_id.max() > (_INT64_MAX - HOUR_SLOTS) // HOUR_SLOTS:
            raise ValueError("author id out of range for the pseudo-post id encoding")
        if hour.min() < 0 or hour.max() >= HOUR_SLOTS:
            raise ValueError("timestamp out of range for the pseudo-post id encoding")
    return author_id * HOUR_SLOTS + hour


def _row_keys(*cols: np.ndarray) -> pd.MultiIndex:
    return pd.MultiIndex.from_arrays([np.asarray(c) for c in cols])


def build_engagements(*, activity: pd.DataFrame) -> tuple[pa.Table, pa.Table, dict[str, int], int]:
    """Activity events -> (tweets, engagements, dropped, self_engagements).

    "A <type> B at t" becomes an engagement of A with B's pseudo-post for the hour of t. A mention
    at the same (A, B, second) as a reply or retweet of A to B is the @B inside that very tweet,
    not a separate act, and is dropped (every reply in the dataset has such a twin).
    """
    a = activity["user_a"].to_numpy(np.int64)
    b = activity["user_b"].to_numpy(np.int64)
    t = activity["ts"].to_numpy(np.int64)
    kind = activity["type"].to_numpy(object)

    keep, dropped = _mentions_not_twinned(a=a, b=b, t=t, kind=kind)
    a, b, t, kind = a[keep], b[keep], t[keep], kind[keep]
    actions, action_code = _action_codes(kind)
    tweet_id = pseudo_post_id(b, t)

    # Contract key (user_id, tweet_id, action, created_at); output order: time, then key.
    order = np.lexsort((action_code, tweet_id, a, t))
    a, b, t, tweet_id, action_code = (x[order] for x in (a, b, t, tweet_id, action_code))
    first = np.ones(len(a), dtype=bool)
    first[1:] = (
        (t[1:] != t[:-1]) | (a[1:] != a[:-1]) | (tweet_id[1:] != tweet_id[:-1]) | (action_code[1:] != action_code[:-1])
    )
    dropped["engagements_duplicate_key"] = int(np.count_nonzero(~first))
    a, b, t, tweet_id, action_code = (x[first] for x in (a, b, t, tweet_id, action_code))
    self_engagements = int(np.count_nonzero(a == b))

    engagements = _engagements_table(user_id=a, tweet_id=tweet_id, action_code=action_code, actions=actions, ts=t)
    tweets = _pseudo_posts_table(tweet_id=tweet_id, author_id=b, ts=t)
    return tweets, engagements, dropped, self_engagements


def _mentions_not_twinned(
    *, a: np.ndarray, b: np.ndarray, t: np.ndarray, kind: np.ndarray
) -> tuple[np.ndarray, dict[str, int]]:
    """The events to keep: all but the mentions at the same (A, B, second) as a reply or retweet
    of A to B; and the dropped mentions per reason."""
    dropped: dict[str, int] = {}
    is_mt = kind == "MT"
    keep = np.ones(len(a), dtype=bool)
    for twin_type, reason in (("RE", "engagements_mention_in_reply"), ("RT", "engagements_mention_in_retweet")):
        twin = kind == twin_type
        in_twin = np.zeros(len(a), dtype=bool)
        in_twin[is_mt] = _row_keys(a[is_mt], b[is_mt], t[is_mt]).isin(_row_keys(a[twin], b[twin], t[twin]))
        # A mention twinned with both a reply and a retweet is counted once, under reply.
        dropped[reason] = int(np.count_nonzero(in_twin & keep))
        keep &= ~in_twin
    return keep, dropped


def _action_codes(kind: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The contract actions (sorted) and, per event, the index of its action among them."""
    actions = np.array(sorted(set(ACTION_BY_TYPE.values())), dtype=object)
    # Vectorised type -> action: each distinct type maps to its action's index in `actions`.
    type_codes, type_index = np.unique(kind.astype(str), return_inverse=True)
    code_by_type = np.searchsorted(actions, [ACTION_BY_TYPE[c] for c in type_codes])
    return actions, np.asarray(code_by_type, dtype=np.int64)[type_index]


def _engagements_table(
    *, user_id: np.ndarray, tweet_id: np.ndarray, action_code: np.ndarray, actions: np.ndarray, ts: np.ndarray
) -> pa.Table:
    """The engagements contract table, one row per event, in the given order."""
    return _table(
        ENGAGEMENTS,
        {
            "user_id": pa.array(user_id, type=pa.int64()),
            "tweet_id": pa.array(tweet_id, type=pa.int64()),
            "action": pa.DictionaryArray.from_arrays(
                pa.array(action_code.astype(np.int32)), pa.array(actions, type=pa.string())
            ).cast(pa.string()),
            "created_at": _ts_array(ts),
            "dwell_ms": pa.nulls(len(user_id), pa.int32()),
        },
    )


def _pseudo_posts_table(*, tweet_id: np.ndarray, author_id: np.ndarray, ts: np.ndarray) -> pa.Table:
    """Pseudo-posts: one per distinct tweet_id, created at its first engagement; sorted by id."""
    post_order = np.lexsort((ts, tweet_id))
    sorted_ids = tweet_id[post_order]
    starts = np.ones(len(sorted_ids), dtype=bool)
    starts[1:] = sorted_ids[1:] != sorted_ids[:-1]
    post_ids = sorted_ids[starts]
    post_created = ts[post_order][starts]
    post_author = author_id[post_order][starts]
    m = len(post_ids)
    return _table(
        TWEETS,
        {
            "tweet_id": pa.array(post_ids, type=pa.int64()),
            "author_id": pa.array(post_author, type=pa.int64()),
            "created_at": _ts_array(post_created),
            "text": pa.nulls(m, pa.string()),
            "in_reply_to_tweet_id": pa.nulls(m, pa.int64()),
            "quoted_tweet_id": pa.nulls(m, pa.int64()),
            "retweet_of_tweet_id": pa.nulls(m, pa.int64()),
            "has_media": _const(False, m, pa.bool_()),
            "has_video": _const(False, m, pa.bool_()),
            "is_nsfw": _const(False, m, pa.bool_()),
            "lang": pa.nulls(m, pa.string()),
            "deleted_at": pa.nulls(m, pa.timestamp("us", tz="UTC")),
        },
    )


# --------------------------------------------------------------------------------------- writing


def write_raw_table(table: pa.Table, *, name: str, out_dir: Path) -> Path:
    """Overwrite OUT/raw/<name>/ with one Parquet file (written to a temp name, then renamed)."""
    table_dir = out_dir / "raw" / name
    table_dir.mkdir(parents=True, exist_ok=True)
    for stale in table_dir.glob("part-*.parquet"):
        stale.unlink()
    target = table_dir / "part-00000.parquet"
    tmp = table_dir / ".part-00000.parquet.tmp"
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, target)
    return target


def import_higgs(src_dir: Path, out_dir: Path) -> HiggsImportSummary:
    """Read the Higgs files in `src_dir`, write all seven raw tables under `out_dir/raw/`."""
    started = time.perf_counter()
    src_dir, out_dir = Path(src_dir), Path(out_dir)

    activity = read_activity(src_dir / ACTIVITY_FILE)
    prefix = read_follow_prefix(src_dir / FOLLOW_PREFIX_FILE)

    follows, follow_drops = build_follows(prefix=prefix)
    tweets, engagements, engagement_drops, self_engagements = build_engagements(activity=activity)
    # Every id in any file is an account: activity ids, and ids on complete follow lines
    # (including the dropped incomplete block; the cut last line's ids are not trusted).
    id_parts = [activity["user_a"].to_numpy(), activity["user_b"].to_numpy(), prefix.follower_id, prefix.followee_id]
    if prefix.incomplete_source is not None:
        id_parts.append(np.array([prefix.incomplete_source], dtype=np.int64))
    users = build_users(user_ids=np.concatenate(id_parts))

    built = {"users": users, "follows": follows, "tweets": tweets, "engagements": engagements}
    rows: dict[str, int] = {}
    for contract in RAW_TABLES:
        table = built.get(contract.name, arrow_schema(contract).empty_table())
        write_raw_table(table, name=contract.name, out_dir=out_dir)
        rows[contract.name] = table.num_rows

    return HiggsImportSummary(
        rows_per_table=rows,
        dropped={**follow_drops, **engagement_drops},
        seconds=time.perf_counter() - started,
        self_engagements=self_engagements,
        incomplete_follow_source=prefix.incomplete_source,
    )
