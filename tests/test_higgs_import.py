"""The Higgs import on the real SNAP files, checked against expectations computed here from the
source files directly (gzip/csv/numpy), never through jobs.higgs_import's own readers."""

from __future__ import annotations

import csv
import gzip
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from core.contract import RAW_TABLES, RAW_TABLES_BY_NAME, arrow_schema
from jobs.higgs_import import HiggsImportSummary, import_higgs, read_follow_prefix

SRC = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "higgs-twitter"
ACTIVITY = SRC / "higgs-activity_time.txt.gz"
FOLLOW_PREFIX = SRC / "higgs-social_network.PARTIAL_prefix.edgelist"
NETWORKS = {
    "RT": SRC / "higgs-retweet_network.edgelist.gz",
    "RE": SRC / "higgs-reply_network.edgelist.gz",
    "MT": SRC / "higgs-mention_network.edgelist.gz",
}
# The documented mapping (docs/higgs_import.md), restated here on purpose.
EXPECTED_ACTION = {"RT": "retweet", "RE": "reply", "MT": "profile_click"}
WINDOW_START = datetime(2012, 6, 30, tzinfo=UTC)
WINDOW_END = datetime(2012, 7, 8, tzinfo=UTC)


@pytest.fixture(scope="module")
def src() -> Path:
    if not SRC.is_dir():
        pytest.skip(f"Higgs dataset not present at {SRC} (shared/datasets/higgs-twitter)")
    return SRC


# ------------------------------------------------------------------ independent source readings


@pytest.fixture(scope="module")
def activity(src) -> list[tuple[int, int, int, str]]:
    with gzip.open(ACTIVITY, "rt", newline="") as f:
        return [(int(a), int(b), int(t), k) for a, b, t, k in csv.reader(f, delimiter=" ")]


@pytest.fixture(scope="module")
def follow_file(src) -> dict:
    raw = FOLLOW_PREFIX.read_bytes()
    *complete, last = raw.split(b"\n")
    edges = np.array([line.split() for line in complete], dtype=np.int64)
    return {"raw": raw, "edges": edges, "last_line": last}


@pytest.fixture(scope="module")
def expected_events(activity) -> list[tuple[int, int, int, str]]:
    """(A, B, t, action) per the documented rule: a mention at the same (A, B, second) as a reply
    or retweet of A to B is that tweet's own @-mention and is not an engagement of its own."""
    replied_or_retweeted = {(a, b, t) for a, b, t, k in activity if k in ("RE", "RT")}
    return [
        (a, b, t, EXPECTED_ACTION[k])
        for a, b, t, k in activity
        if not (k == "MT" and (a, b, t) in replied_or_retweeted)
    ]


# ---------------------------------------------------------------------------------- the import


@pytest.fixture(scope="module")
def imported(src, tmp_path_factory) -> tuple[Path, HiggsImportSummary]:
    out = tmp_path_factory.mktemp("higgs")
    return out, import_higgs(src_dir=SRC, out_dir=out)


@pytest.fixture(scope="module")
def tables(imported) -> dict[str, pd.DataFrame]:
    out, _ = imported
    return {t.name: pq.read_table(out / "raw" / t.name / "part-00000.parquet").to_pandas() for t in RAW_TABLES}


def _epoch_s(col: pd.Series) -> np.ndarray:
    return np.asarray((col - pd.Timestamp("1970-01-01", tz="UTC")) // pd.Timedelta(seconds=1), dtype=np.int64)


# ------------------------------------------------------------------------------------- the file


@pytest.mark.parametrize(
    ("content", "incomplete", "complete_lines"),
    [
        (b"1 2\n1 3\n5 6\n5 7", 5, 3),  # cut inside the last block's followee id
        (b"1 2\n1 3\n5 6\n9 1", 9, 3),  # cut line starts a new block: 5 is complete
        (b"1 2\n1 3\n5 6\n12", 5, 3),  # cut inside a source id: the last block is suspect
        (b"1 2\n1 3\n5 6\n", 5, 3),  # cut on a line end: the last block may still be cut
    ],
)
def test_incomplete_source_is_derived_from_the_cut(tmp_path, content, incomplete, complete_lines):
    path = tmp_path / "prefix.edgelist"
    path.write_bytes(content)
    prefix = read_follow_prefix(path)
    assert prefix.incomplete_source == incomplete
    assert len(prefix.follower_id) == complete_lines


def test_non_contiguous_sources_are_refused(tmp_path):
    path = tmp_path / "prefix.edgelist"
    path.write_bytes(b"1 2\n5 6\n1 3\n5 7")
    with pytest.raises(ValueError, match="contiguous"):
        read_follow_prefix(path)


def test_follow_prefix_is_cut_mid_record_as_documented(follow_file):
    raw, edges, last = follow_file["raw"], follow_file["edges"], follow_file["last_line"]
    assert not raw.endswith(b"\n")
    assert last and len(last.split()) == 2  # "22732 1": a source id, then a cut followee id
    sources = edges[:, 0]
    runs = 1 + int(np.count_nonzero(sources[1:] != sources[:-1]))
    assert runs == len(np.unique(sources)), "source users must form contiguous blocks"
    assert int(last.split()[0]) == int(sources[-1]), "the cut line continues the last block"


def test_network_files_are_aggregates_of_the_activity(activity):
    for kind, path in NETWORKS.items():
        counts = Counter((a, b) for a, b, _, k in activity if k == kind)
        with gzip.open(path, "rt", newline="") as f:
            weights = {(int(a), int(b)): int(w) for a, b, w in csv.reader(f, delimiter=" ")}
        assert weights == dict(counts), kind


# ------------------------------------------------------------------------------------- contract


def test_all_seven_tables_have_the_contract_schema(imported):
    out, summary = imported
    for t in RAW_TABLES:
        files = sorted((out / "raw" / t.name).iterdir())
        assert [f.name for f in files] == ["part-00000.parquet"], t.name
        assert pq.read_schema(files[0]).equals(arrow_schema(t)), t.name
        assert pq.read_metadata(files[0]).num_rows == summary.rows_per_table[t.name]
    for empty in ("social_actions", "lists", "list_members"):
        assert summary.rows_per_table[empty] == 0


def test_keys_are_unique(tables):
    for name, df in tables.items():
        key = list(RAW_TABLES_BY_NAME[name].key)
        assert not df.duplicated(key).any(), name


def test_references_resolve(tables):
    users = set(tables["users"]["user_id"])
    tweets = set(tables["tweets"]["tweet_id"])
    assert set(tables["follows"]["follower_id"]) <= users
    assert set(tables["follows"]["followee_id"]) <= users
    assert set(tables["tweets"]["author_id"]) <= users
    assert set(tables["engagements"]["user_id"]) <= users
    assert set(tables["engagements"]["tweet_id"]) <= tweets


def test_engagement_actions_are_allowed_and_no_self_follows(tables):
    allowed = set(RAW_TABLES_BY_NAME["engagements"].column("action").allowed_values)
    assert set(tables["engagements"]["action"]) <= allowed
    f = tables["follows"]
    assert not (f["follower_id"] == f["followee_id"]).any()


# -------------------------------------------------------------------------------------- users


def test_users_are_every_id_in_the_files(tables, activity, follow_file):
    expected = {a for a, *_ in activity} | {b for _, b, *_ in activity}
    expected |= set(follow_file["edges"].ravel().tolist())
    users = tables["users"]
    assert set(users["user_id"]) == expected
    assert (users["handle"] == "higgs_" + users["user_id"].astype(str)).all()
    assert not users["is_verified"].any() and not users["allow_nsfw"].any()
    assert users["lang"].isna().all()
    assert (users["created_at"] < pd.Timestamp(WINDOW_START)).all()


# ------------------------------------------------------------------------------------ follows


def test_incomplete_last_source_has_no_follows(tables, follow_file, imported):
    last_source = int(follow_file["last_line"].split()[0])
    assert last_source not in set(tables["follows"]["follower_id"])
    assert imported[1].incomplete_follow_source == last_source


def test_follows_equal_complete_lists_without_self_follows(tables, follow_file, imported):
    edges = follow_file["edges"]
    last_source = int(follow_file["last_line"].split()[0])
    expected = {(a, b) for a, b in edges.tolist() if a != last_source and a != b}
    f = tables["follows"]
    assert len(f) == len(expected)
    assert set(zip(f["follower_id"].tolist(), f["followee_id"].tolist())) == expected
    dropped = imported[1].dropped
    assert dropped["follows_incomplete_source"] == int(np.count_nonzero(edges[:, 0] == last_source))
    assert dropped["follows_self_follow"] == sum(1 for a, b in edges.tolist() if a == b and a != last_source)
    assert dropped["follows_truncated_line"] == 1


# -------------------------------------------------------------------- tweets and engagements


def test_engagement_counts_per_action(tables, expected_events):
    expected = Counter(action for *_, action in expected_events)
    assert tables["engagements"]["action"].value_counts().to_dict() == dict(expected)


def test_engagements_are_exactly_the_mapped_events(tables, expected_events, imported):
    e = tables["engagements"].merge(
        tables["tweets"][["tweet_id", "author_id", "created_at"]],
        on="tweet_id",
        how="left",
        suffixes=("", "_tweet"),
        validate="many_to_one",
    )
    actual = set(
        zip(e["user_id"].tolist(), e["author_id"].tolist(), _epoch_s(e["created_at"]).tolist(), e["action"].tolist())
    )
    assert len(actual) == len(e) == len(expected_events)
    assert actual == set(expected_events)
    assert imported[1].self_engagements == sum(1 for a, b, *_ in expected_events if a == b)
    assert e["dwell_ms"].isna().all()


def test_retweet_pairs_match_the_retweet_network(tables):
    e = tables["engagements"]
    e = e[e["action"] == "retweet"].merge(tables["tweets"][["tweet_id", "author_id"]], on="tweet_id", how="left")
    pairs = set(zip(e["user_id"].tolist(), e["author_id"].tolist()))
    with gzip.open(NETWORKS["RT"], "rt", newline="") as f:
        network = {(int(a), int(b)) for a, b, _ in csv.reader(f, delimiter=" ")}
    assert pairs == network


def test_pseudo_posts_are_author_hours_created_at_first_engagement(tables, expected_events):
    first: dict[tuple[int, int], int] = {}
    for _, b, t, _ in expected_events:
        key = (b, t // 3600)
        first[key] = min(first.get(key, t), t)
    tw = tables["tweets"]
    created = _epoch_s(tw["created_at"])
    authors = tw["author_id"].to_numpy()
    actual = dict(zip(zip(authors.tolist(), (created // 3600).tolist()), created.tolist()))
    assert actual == first
    # Documented id encoding: author_id * 10**6 + hours since the epoch.
    assert (tw["tweet_id"].to_numpy() == authors * 1_000_000 + created // 3600).all()
    for col in ("text", "in_reply_to_tweet_id", "quoted_tweet_id", "retweet_of_tweet_id", "lang", "deleted_at"):
        assert tw[col].isna().all(), col
    assert not (tw["has_media"] | tw["has_video"] | tw["is_nsfw"]).any()


def test_engagement_times_follow_their_tweet_and_lie_in_the_window(tables):
    e = tables["engagements"].merge(
        tables["tweets"][["tweet_id", "created_at"]], on="tweet_id", how="left", suffixes=("", "_tweet")
    )
    assert (e["created_at"] >= e["created_at_tweet"]).all()
    for col in (e["created_at"], tables["tweets"]["created_at"]):
        assert (col >= pd.Timestamp(WINDOW_START)).all() and (col < pd.Timestamp(WINDOW_END)).all()
    follow_times = tables["follows"]["created_at"]
    assert follow_times.min() >= tables["users"]["created_at"].max()


# ------------------------------------------------------------------------------ determinism


def test_rerun_is_byte_identical(imported, tmp_path):
    out, _ = imported
    again = import_higgs(src_dir=SRC, out_dir=tmp_path)
    assert again.rows_per_table == imported[1].rows_per_table
    for t in RAW_TABLES:
        rel = Path("raw") / t.name / "part-00000.parquet"
        assert (out / rel).read_bytes() == (tmp_path / rel).read_bytes(), t.name


def test_summary_accounts_for_every_source_row(imported, activity, follow_file):
    _, s = imported
    engagement_drops = sum(v for k, v in s.dropped.items() if k.startswith("engagements_"))
    assert s.rows_per_table["engagements"] + engagement_drops == len(activity)
    follow_drops = sum(v for k, v in s.dropped.items() if k.startswith("follows_"))
    assert s.rows_per_table["follows"] + follow_drops == len(follow_file["edges"]) + 1
    assert s.seconds < 60
