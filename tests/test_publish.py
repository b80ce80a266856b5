"""Versioned Redis publication against a real redis-server: all or nothing, verified, rolled back,
and interrupted (on purpose, by SIGKILL, by a full Redis) without touching what is served."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
import redis
from deltalake import write_deltalake

import jobs.published_datasets
from core import redis_layout as layout
from core.heads import HEAD_COLUMNS
from core.redis_layout import CURRENT, FEED_ITEM_FIELDS, decode_feed, feed_key, manifest_key
from core.redis_server import free_port, start_redis
from jobs.publish import PublishError, connect, publication_status, publish_feeds, publish_warehouse, rollback
from jobs.published_datasets import PublicationConfig

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def ranked_feeds_table(users: int, per_user: int, *, salt: int = 0) -> pa.Table:
    """A ranked_feeds table: user u's item r (rank r) is tweet 1000*u + r + salt by author r % 7."""
    rows = []
    for u in range(1, users + 1):
        for r in range(1, per_user + 1):
            rows.append(
                {
                    "user_id": u,
                    "rank": r,
                    "tweet_id": 1000 * u + r + salt,
                    "author_id": r % 7 + 100,
                    "tweet_created_at": T0 - timedelta(minutes=r),
                    "final_score": 1.0 / r,
                    "heavy_score": 2.0 / r,
                    "light_score": 0.5,
                    **{c: 0.01 * (i + 1) for i, c in enumerate(HEAD_COLUMNS)},
                    "is_in_network": r % 2 == 0,
                    "is_reply": r % 3 == 0,
                    "sources": ["in_network"] if r % 2 == 0 else ["uteg", "twhin", "popular"][: r % 4 or 1],
                    "social_proof_user_ids": list(range(u, u + r % 3)),
                    "social_proof_count": r % 3,
                    "diversity_multiplier": 1.0,
                    "fatigue_multiplier": 1.0,
                    "page": 0,
                }
            )
    # Written in reverse order: the publisher must sort by (user, rank) itself.
    return pa.Table.from_pylist(rows[::-1])


def write_table(path, table: pa.Table) -> None:
    write_deltalake(str(path), table, mode="overwrite")


def expected_feed(table: pa.Table, user_id: int) -> list[dict]:
    """The user's rows as the feed stores them: in rank order, scores and probabilities as float32."""
    rows = sorted((r for r in table.to_pylist() if r["user_id"] == user_id), key=lambda r: r["rank"])
    return [
        {
            **{
                f: float(np.float32(r[f])) if isinstance(r[f], float) else r[f]
                for f in FEED_ITEM_FIELDS
                if f != "created_at_ms"
            },
            "created_at_ms": int(r["tweet_created_at"].timestamp() * 1000),
        }
        for r in rows
    ]


def served_feed(client, user_id: int) -> list[dict]:
    version = int(client.hget(CURRENT, "version"))
    return decode_feed(client.get(feed_key(version, user_id)))


def test_publish_writes_every_feed_and_switches_the_pointer(redis_client, tmp_path):
    table = ranked_feeds_table(users=30, per_user=5)
    write_table(tmp_path / "ranked_feeds", table)
    result = publish_feeds(redis_client, tmp_path / "ranked_feeds", batch_keys=7, metadata={"heavy_ranker": "v3"})
    assert (result.version, result.previous_version, result.users, result.items) == (1, None, 30, 150)
    status = publication_status(redis_client)
    assert status["published_version"] == 1 and status["previous_version"] is None
    assert status["users_published"] == 30 and status["heavy_ranker"] == "v3"
    for user in (1, 17, 30):
        assert served_feed(redis_client, user) == expected_feed(table, user)
    assert redis_client.hget(manifest_key(1), "state") == b"published"


def test_a_feed_split_across_arrow_batches_is_encoded_whole(tmp_path):
    import duckdb

    from jobs.duckdb_catalog import register_snapshot
    from jobs.published_datasets import encoded_feeds, feed_batches

    table = ranked_feeds_table(users=9, per_user=5)
    write_table(tmp_path / "ranked_feeds", table)
    con = duckdb.connect()
    register_snapshot(con, "ranked_feeds", tmp_path / "ranked_feeds")
    feeds = list(encoded_feeds(feed_batches(con, batch_rows=7)))  # 7 rows a batch: most users span two
    assert [user for user, _ in feeds] == list(range(1, 10))
    for user, value in feeds:
        assert decode_feed(value) == expected_feed(table, user)
    long = ranked_feeds_table(users=3, per_user=16)  # each user spans three batches
    write_table(tmp_path / "ranked_feeds", long)
    register_snapshot(con, "ranked_feeds", tmp_path / "ranked_feeds")
    assert len(list(feed_batches(con, batch_rows=7))) >= 7
    feeds = list(encoded_feeds(feed_batches(con, batch_rows=7)))
    assert [(user, decode_feed(value)) for user, value in feeds] == [(u, expected_feed(long, u)) for u in (1, 2, 3)]


def test_a_new_version_keeps_the_previous_and_expires_older_ones(redis_client, tmp_path):
    path = tmp_path / "ranked_feeds"
    for salt in (0, 1, 2):
        write_table(path, ranked_feeds_table(users=10, per_user=3, salt=salt))
        publish_feeds(redis_client, path, grace_seconds=600)
    status = publication_status(redis_client)
    assert (status["published_version"], status["previous_version"]) == (3, 2)
    assert served_feed(redis_client, 4)[0]["tweet_id"] == 4000 + 1 + 2
    assert redis_client.ttl(feed_key(2, 4)) == -1  # the previous version stays for a rollback
    assert 0 < redis_client.ttl(feed_key(1, 4)) <= 600  # older ones expire after the grace period


def test_rollback_returns_to_the_previous_version(redis_client, tmp_path):
    path = tmp_path / "ranked_feeds"
    with pytest.raises(PublishError, match="nothing is published"):
        rollback(redis_client)
    first = ranked_feeds_table(users=5, per_user=2)
    write_table(path, first)
    publish_feeds(redis_client, path)
    with pytest.raises(PublishError, match="no previous version"):
        rollback(redis_client)
    write_table(path, ranked_feeds_table(users=5, per_user=2, salt=50))
    publish_feeds(redis_client, path)
    pointer = rollback(redis_client)
    assert (pointer["version"], pointer["previous"], pointer["rolled_back_from"]) == ("1", "2", "2")
    assert served_feed(redis_client, 3) == expected_feed(first, 3)
    # A version written by an older layout is not served again: this code could not read it.
    redis_client.hset(manifest_key(2), "layout", "1")
    with pytest.raises(PublishError, match="layout 1"):
        rollback(redis_client)
    assert publication_status(redis_client)["published_version"] == 1


def _assert_still_serving(client, version: int, table: pa.Table) -> None:
    """`version` is current and every user's feed in it decodes to the table's rows."""
    assert publication_status(client)["published_version"] == version
    for user in sorted(set(table.column("user_id").to_pylist())):
        assert served_feed(client, user) == expected_feed(table, user), user


def test_a_publication_stopped_midway_leaves_the_previous_version_served(redis_client, tmp_path, monkeypatch):
    path = tmp_path / "ranked_feeds"
    first = ranked_feeds_table(users=20, per_user=4)
    write_table(path, first)
    publish_feeds(redis_client, path)
    write_table(path, ranked_feeds_table(users=20, per_user=4, salt=9))
    real_encoded_feeds = jobs.published_datasets.encoded_feeds

    def ten_then_fail(batches):
        for n, feed in enumerate(real_encoded_feeds(batches)):
            if n == 10:
                raise redis.ConnectionError("the connection broke")
            yield feed

    monkeypatch.setattr(jobs.published_datasets, "encoded_feeds", ten_then_fail)
    with pytest.raises(PublishError, match="failed after 10 keys .* version 1 is still served"):
        publish_feeds(redis_client, path, batch_keys=5)
    _assert_still_serving(redis_client, 1, first)
    # What the stopped publication wrote is gone (nobody ever read it), its manifest too.
    assert not redis_client.exists(feed_key(2, 1)) and not redis_client.exists(manifest_key(2))
    monkeypatch.setattr(jobs.published_datasets, "encoded_feeds", real_encoded_feeds)
    assert publish_feeds(redis_client, path).version == 3


def test_a_version_that_does_not_read_back_as_written_is_not_switched_to(redis_client, tmp_path, monkeypatch):
    path = tmp_path / "ranked_feeds"
    first = ranked_feeds_table(users=6, per_user=2)
    write_table(path, first)
    publish_feeds(redis_client, path)
    write_table(path, ranked_feeds_table(users=6, per_user=2, salt=3))
    real_pipeline = redis_client.pipeline

    def corrupting_pipeline(*args, **kwargs):
        pipe = real_pipeline(*args, **kwargs)
        real_set = pipe.set
        pipe.set = lambda key, value: real_set(key, value[:-1] + b"X" if key == feed_key(2, 4) else value)
        return pipe

    monkeypatch.setattr(redis_client, "pipeline", corrupting_pipeline)
    with pytest.raises(PublishError, match="verification of version 2 failed"):
        publish_feeds(redis_client, path)
    _assert_still_serving(redis_client, 1, first)


# A publication paced to last seconds (a sleep before each pipeline), to be killed while it writes.
SLOW_PUBLICATION = (
    "import sys, time, redis, jobs.publish as p\n"
    "client = redis.Redis.from_url(sys.argv[1])\n"
    "real = client.pipeline\n"
    "def slow(*a, **k):\n"
    "    pipe = real(*a, **k); execute = pipe.execute\n"
    "    def paced():\n"
    "        time.sleep(0.05); return execute()\n"
    "    pipe.execute = paced; return pipe\n"
    "client.pipeline = slow\n"
    "p.publish_feeds(client, sys.argv[2], batch_keys=20)\n"
)


def kill_a_publication_midway(redis_url: str, path, client) -> None:
    """SIGKILL a publication of the table at `path` once version 2 is being written (user 200's
    feed is in), as 3,000 users' feeds take seconds at that pace."""
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_PUBLICATION, redis_url, str(path)], env={**os.environ, "PYTHONPATH": os.getcwd()}
    )
    deadline = time.monotonic() + 60
    while client.hget(manifest_key(2), "state") != b"writing" or not client.exists(feed_key(2, 200)):
        assert process.poll() is None and time.monotonic() < deadline, "the publication ended before it was killed"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_a_killed_publication_leaves_the_previous_version_served(redis_server, redis_client, tmp_path):
    """SIGKILL a publishing process midway: the pointer and version 1 are untouched; the next
    publication succeeds and expires what the killed one wrote."""
    path = tmp_path / "ranked_feeds"
    first = ranked_feeds_table(users=40, per_user=2)
    write_table(path, first)
    publish_feeds(redis_client, path)
    write_table(path, ranked_feeds_table(users=3000, per_user=2, salt=5))
    kill_a_publication_midway(redis_server.url, path, redis_client)
    assert not redis_client.exists(feed_key(2, 3000))  # killed midway
    _assert_still_serving(redis_client, 1, first)
    assert publish_feeds(redis_client, path, grace_seconds=120).version == 3
    assert 0 < redis_client.ttl(feed_key(2, 1)) <= 120


def test_a_full_redis_gives_a_clear_error_and_keeps_serving(tmp_path):
    server = start_redis(tmp_path / "small", maxmemory="3mb")
    try:
        client = connect(server.url)
        path = tmp_path / "ranked_feeds"
        small = ranked_feeds_table(users=5, per_user=2)
        write_table(path, small)
        publish_feeds(client, path)
        write_table(path, ranked_feeds_table(users=4000, per_user=10))
        with pytest.raises(PublishError, match="out of memory .* version 1 is still served"):
            publish_feeds(client, path)
        _assert_still_serving(client, 1, small)
        # The discarded version's keys were deleted, so a publication that fits succeeds.
        write_table(path, ranked_feeds_table(users=5, per_user=2, salt=1))
        assert publish_feeds(client, path).version == 3
    finally:
        server.stop()


def test_an_unreachable_redis_fails_fast():
    started = time.monotonic()
    with pytest.raises(PublishError, match="unreachable"):
        connect(f"redis://127.0.0.1:{free_port()}/0", timeout_seconds=1.0)
    assert time.monotonic() - started < 5


def test_the_pointer_switch_refuses_a_concurrent_change(redis_client, tmp_path):
    """Two publishers: the one whose starting version is no longer current does not switch."""
    path = tmp_path / "ranked_feeds"
    write_table(path, ranked_feeds_table(users=3, per_user=1))
    publish_feeds(redis_client, path)
    real_incr = redis_client.incr

    def incr_and_race(key):
        number = real_incr(key)
        redis_client.hset(CURRENT, "version", "99")  # someone else switched meanwhile
        return number

    redis_client.incr = incr_and_race
    with pytest.raises(PublishError, match="current version changed"):
        publish_feeds(redis_client, path)
    assert redis_client.hget(CURRENT, "version") == b"99"


def test_a_feed_of_another_layout_is_refused():
    import msgpack

    with pytest.raises(ValueError, match="layout 999"):
        decode_feed(msgpack.packb([999, []]))


def test_an_empty_table_is_not_published(redis_client, tmp_path):
    path = tmp_path / "ranked_feeds"
    table = ranked_feeds_table(users=2, per_user=1)
    write_table(path, table)
    publish_feeds(redis_client, path)
    write_table(path, table.slice(0, 0))
    with pytest.raises(PublishError, match="holds no feed"):
        publish_feeds(redis_client, path)
    _assert_still_serving(redis_client, 1, table)


def test_rollback_serves_the_build_details_of_the_version_it_returns_to(redis_client, tmp_path):
    path = tmp_path / "ranked_feeds"
    for heavy in ("heavy_ranker/v0001", "heavy_ranker/v0002"):
        write_table(path, ranked_feeds_table(users=3, per_user=1))
        publish_feeds(redis_client, path, metadata={"built_heavy_ranker": heavy})
    assert publication_status(redis_client)["built_heavy_ranker"] == "heavy_ranker/v0002"
    rollback(redis_client)
    assert publication_status(redis_client)["built_heavy_ranker"] == "heavy_ranker/v0001"
    with pytest.raises(ValueError, match="pointer's own fields"):
        publish_feeds(redis_client, path, metadata={"version": "7"})


def _distinct_users(tables_dir) -> int:
    from deltalake import DeltaTable

    return len(
        set(DeltaTable(str(tables_dir / "ranked_feeds")).to_pyarrow_table(columns=["user_id"])["user_id"].to_pylist())
    )


def test_publish_status_and_rollback_commands(ranked_build, redis_server, redis_client, capsys):
    import json

    from cli.main import main

    settings, _ = ranked_build
    where = ["--warehouse", str(settings.warehouse), "--input", str(settings.raw_input), "--redis", redis_server.url]
    assert main(["publish", *where, "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["version"] == 1 and first["users"] == _distinct_users(settings.tables_dir)
    assert main(["publish", *where]) == 0 and "published version 2 (previous 1)" in capsys.readouterr().out
    assert main(["status", "--redis", redis_server.url, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["published_version"], status["previous_version"]) == (2, 1)
    assert status["users_published"] == first["users"] and status["published_at"]
    assert status["built_heavy_ranker"] == "heavy_ranker/v0001" and status["built_feature_registry"]
    assert main(["rollback", "--redis", redis_server.url]) == 0
    assert "rolled back to version 1 (from 2)" in capsys.readouterr().out
    assert main(["status", "--redis", f"redis://127.0.0.1:{free_port()}/0"]) == 1
    assert "unreachable" in capsys.readouterr().err


def test_a_failed_check_blocks_publication_and_the_served_version_stays(
    ranked_build, redis_server, redis_client, capsys, monkeypatch
):
    """In Dagster, ranked_feeds' blocking check stops published_feeds; on the command line, publish
    refuses; either way Redis keeps serving the version it had."""
    import orchestration.assets.publication as publication_assets
    from cli.main import main
    from orchestration.run import run_assets

    settings, _ = ranked_build
    settings = settings.model_copy(update={"redis_url": redis_server.url})

    real_check, checked = publication_assets.check_published_tables, []

    def recording_check(*args, passed, **kwargs):
        checked.append(set(passed))
        return real_check(*args, passed=passed, **kwargs)

    monkeypatch.setattr(publication_assets, "check_published_tables", recording_check)
    published = run_assets(settings, selection="key:ranked_feeds or key:published_feeds")
    assert published.success
    assert published.materialized == ("published_feeds", "ranked_feeds", "ranked_feeds_sample")
    assert publication_status(redis_client)["published_version"] == 1
    # ranked_feeds' blocking check passed in the run: the asset checks only the tables not built in it.
    assert checked == [{"ranked_feeds"}]
    monkeypatch.undo()

    impossible = {"feed_length": [1000, 2000]}
    blocked = run_assets(
        settings.model_copy(update={"dq_bounds": impossible}), selection="key:ranked_feeds or key:published_feeds"
    )
    assert not blocked.success and "published_feeds" not in blocked.materialized
    assert [c.table for c in blocked.failed_checks] == ["ranked_feeds"] and "mean rows per" in blocked.failed_checks[
        0
    ].failed
    assert publication_status(redis_client)["published_version"] == 1
    # Alone (the publish job), the asset runs the suite itself.
    alone = run_assets(settings.model_copy(update={"dq_bounds": impossible}), selection="key:published_feeds")
    assert not alone.success and alone.materialized == ()
    assert publication_status(redis_client)["published_version"] == 1

    monkeypatch.setenv("HOMEFEED_DQ_BOUNDS", '{"feed_length": [1000, 2000]}')
    code = main(
        [
            "publish",
            "--warehouse",
            str(settings.warehouse),
            "--input",
            str(settings.raw_input),
            "--redis",
            redis_server.url,
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "fail their data-quality suites; nothing was published" in err
    assert "ranked_feeds: the mean rows per (user_id) is within [1000, 2000]" in err
    assert publication_status(redis_client)["published_version"] == 1


def _rows(tables_dir, name: str) -> list[dict]:
    from deltalake import DeltaTable

    return DeltaTable(str(tables_dir / name)).to_pyarrow_table().to_pylist()


def _ms(moment: datetime) -> int:
    """Epoch milliseconds, floored, in integer arithmetic (a float timestamp rounds some microseconds up)."""
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def test_a_warehouse_publication_serves_every_dataset_as_its_tables_say(ranked_build, redis_client):
    """Each key space of a published warehouse against the same values worked out here, row by row,
    from the Delta tables as of the build time."""
    from orchestration.publication import table_build_metadata

    settings, _ = ranked_build
    tables = settings.tables_dir
    as_of = datetime.fromisoformat(table_build_metadata(tables / "ranked_feeds")["built_as_of"])
    config = PublicationConfig(
        window_days=3, author_timeline_length=5, list_timeline_length=4, who_to_follow_length=3, popular_length=10
    )
    result = publish_warehouse(redis_client, tables, as_of=as_of, config=config)
    v = result.version

    def served(space, id_):
        value = redis_client.get(space.key(v, id_))
        return None if value is None else space.decode(value)

    followees: dict[int, list[int]] = {}
    for row in _rows(tables, "follows"):
        if row["created_at"] <= as_of:
            followees.setdefault(row["follower_id"], []).append(row["followee_id"])
    assert result.keys_per_dataset["following"] == len(followees)
    for user in sorted(followees)[:25]:
        assert served(layout.FOLLOWING, user) == {"followee_ids": sorted(followees[user])}

    users = {r["user_id"]: r for r in _rows(tables, "users")}
    assert result.keys_per_dataset["profile"] == len(users)
    some_user = sorted(users)[3]
    assert served(layout.PROFILES, some_user)["handle"] == users[some_user]["handle"]
    assert served(layout.PROFILES, some_user)["following_count"] == len(followees.get(some_user, []))

    hidden: dict[int, dict[str, list[int]]] = {}
    for row in _rows(tables, "social_actions"):
        if row["created_at"] <= as_of:
            column = {"block": "blocked_ids", "mute": "muted_ids"}[row["action"]]
            hidden.setdefault(row["user_id"], {"blocked_ids": [], "muted_ids": []})[column].append(
                row["target_user_id"]
            )
    assert hidden and result.keys_per_dataset["blocked_muted"] == len(hidden)
    for user, expected in hidden.items():
        assert served(layout.BLOCKED_MUTED, user) == {k: sorted(ids) for k, ids in expected.items()}

    suggestions: dict[int, list[dict]] = {}
    for row in _rows(tables, "follow_graph_two_hop"):
        if row["rank"] <= 3:
            suggestions.setdefault(row["user_id"], []).append(row)
    user = sorted(suggestions)[0]
    ranked = sorted(suggestions[user], key=lambda r: r["rank"])
    assert served(layout.WHO_TO_FOLLOW, user) == {
        "user_ids": [r["candidate_id"] for r in ranked],
        "social_proof_counts": [r["social_proof_count"] for r in ranked],
        "proof_user_ids": [r["proof_user_ids"] for r in ranked],
    }

    tweets = {r["tweet_id"]: r for r in _rows(tables, "tweets")}
    visible = {
        t: r
        for t, r in tweets.items()
        if r["created_at"] <= as_of and (r["deleted_at"] is None or r["deleted_at"] > as_of)
    }
    recent = sorted(
        (r for r in visible.values() if r["created_at"] > as_of - timedelta(days=3)),
        key=lambda r: (r["created_at"], r["tweet_id"]),
        reverse=True,
    )
    by_author: dict[int, list[dict]] = {}
    for row in recent:
        by_author.setdefault(row["author_id"], []).append(row)
    assert result.keys_per_dataset["author_tweets"] == len(by_author)
    prolific = max(by_author, key=lambda a: len(by_author[a]))
    assert len(by_author[prolific]) > 5
    assert served(layout.AUTHOR_TWEETS, prolific) == {
        "tweet_ids": [r["tweet_id"] for r in by_author[prolific][:5]],
        "created_at_ms": [_ms(r["created_at"]) for r in by_author[prolific][:5]],
    }

    feed = decode_feed(redis_client.get(feed_key(v, sorted(followees)[0])))
    for item in feed:
        meta = served(layout.TWEETS, item["tweet_id"])
        assert meta["author_id"] == item["author_id"] and meta["created_at_ms"] == item["created_at_ms"]
    replies = [r for r in recent if r["in_reply_to_tweet_id"] in visible]
    assert replies, "the test world has replies"
    for reply in replies[:20]:
        parent = served(layout.TWEETS, reply["in_reply_to_tweet_id"])
        assert parent["text"] == visible[reply["in_reply_to_tweet_id"]]["text"]
    deleted = [t for t, r in tweets.items() if r["deleted_at"] is not None and r["deleted_at"] <= as_of]
    assert deleted and all(served(layout.TWEETS, t) is None for t in deleted)

    members: dict[int, list[int]] = {}
    for row in _rows(tables, "list_members"):
        if row["added_at"] <= as_of:
            members.setdefault(row["list_id"], []).append(row["user_id"])
    some_list = max(members, key=lambda lst: len(members[lst]))
    assert served(layout.LISTS, some_list)["member_ids"] == sorted(members[some_list])
    list_tweets = [r for r in recent if r["author_id"] in set(members[some_list])][:4]
    assert served(layout.LIST_TIMELINES, some_list) == {
        "tweet_ids": [r["tweet_id"] for r in list_tweets],
        "author_ids": [r["author_id"] for r in list_tweets],
        "created_at_ms": [_ms(r["created_at"]) for r in list_tweets],
    }

    recent_ids = {r["tweet_id"] for r in recent}
    scored = sorted(
        (
            (r["likes_24h"] + r["retweets_24h"] + r["replies_24h"], r["tweet_id"])
            for r in _rows(tables, "tweet_features")
            if r["tweet_id"] in recent_ids and not r["is_reply"] and not r["is_retweet"]
        ),
        key=lambda p: (-p[0], p[1]),
    )
    top = [p for p in scored if p[0] > 0][:10]
    assert served(layout.POPULAR, layout.POPULAR_ID) == {
        "tweet_ids": [t for _, t in top],
        "scores": [s for s, _ in top],
    }

    followers = {r["user_id"]: r["follower_count"] for r in _rows(tables, "user_follow_counts")}
    ads = sorted(
        (
            (round(1 + math.log(1 + followers.get(r["author_id"], 0)), 4), r["tweet_id"], r["author_id"])
            for r in recent
            if users[r["author_id"]]["is_verified"]
            and not r["is_nsfw"]
            and r["in_reply_to_tweet_id"] is None
            and r["retweet_of_tweet_id"] is None
        ),
        key=lambda ad: (-ad[0], ad[1]),
    )[: config.ads_inventory_length]
    assert ads, "the test world has verified authors with recent tweets"
    inventory = served(layout.PROMOTED, layout.POPULAR_ID)
    assert inventory["tweet_ids"] == [t for _, t, _ in ads] and inventory["advertiser_ids"] == [a for _, _, a in ads]
    assert inventory["bids"] == pytest.approx([b for b, _, _ in ads], abs=1e-9)

    # As of a day earlier, later follows and tweets are left out.
    earlier = as_of - timedelta(days=1)
    before = publish_warehouse(redis_client, tables, as_of=earlier, config=config)
    followed_earlier: dict[int, list[int]] = {}
    for row in _rows(tables, "follows"):
        if row["created_at"] <= earlier:
            followed_earlier.setdefault(row["follower_id"], []).append(row["followee_id"])
    changed = [u for u in followees if sorted(followees[u]) != sorted(followed_earlier.get(u, []))]
    assert changed, "the test world has follows in its last day"
    for user in changed[:10]:
        value = redis_client.get(layout.FOLLOWING.key(before.version, user))
        assert (layout.FOLLOWING.decode(value)["followee_ids"] if value else []) == sorted(
            followed_earlier.get(user, [])
        )
    tweeted = {
        r["author_id"]
        for r in tweets.values()
        if earlier - timedelta(days=3) < r["created_at"] <= earlier
        and (r["deleted_at"] is None or r["deleted_at"] > earlier)
    }
    assert before.keys_per_dataset["author_tweets"] == len(tweeted)
    assert redis_client.hget(manifest_key(before.version), "layout") == str(layout.LAYOUT_VERSION).encode()

    # A rollback verifies every key of the version it returns to, not only the feeds.
    assert redis_client.delete(layout.AUTHOR_TWEETS.key(before.version, min(tweeted))) == 1
    publish_warehouse(redis_client, tables, as_of=as_of, config=config)
    with pytest.raises(PublishError, match=f"version {before.version} has {before.keys - 1} keys"):
        rollback(redis_client)
