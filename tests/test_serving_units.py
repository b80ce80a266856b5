"""The request pipeline's pure pieces on hand-made inputs (the end-to-end tests are in test_serving.py)."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from core import redis_layout as rl
from serving.events import EventBatch, EventError, contract_rows, log_records
from serving.for_you import ForYouConfig, fitting_positions
from serving.mixing import Entry, MixingConfig, place, who_to_follow_users
from serving.store import UserState
from serving.timelines import FRESH_SOURCE_BIT, cheap_filters, with_fresh_tweets
from core.feed_heuristics import FeedHeuristics


def state(**kwargs) -> UserState:
    values = dict(user_id=1, feed=None, profile=None, following=set(), blocked=set(), muted=set(), seen=set(),
                  not_interested_ms={})
    return UserState(**(values | kwargs))


def feed(tweets: list[tuple[int, int, float, bool]]) -> dict[str, np.ndarray]:
    """Columns of a feed of (tweet_id, author_id, heavy_score, in_network) items, no social proof."""
    n = len(tweets)
    columns = {name: np.zeros(n, dtype=dtype) for name, dtype in rl.FEED_COLUMNS}
    columns["tweet_id"] = np.array([t[0] for t in tweets], dtype="<i8")
    columns["author_id"] = np.array([t[1] for t in tweets], dtype="<i8")
    columns["heavy_score"] = np.array([t[2] for t in tweets], dtype="<f4")
    columns["is_in_network"] = np.array([t[3] for t in tweets], dtype="|u1")
    columns["rank"] = np.arange(1, n + 1, dtype="<i4")
    columns["social_proof_offsets"] = np.zeros(n + 1, dtype="<i4")
    columns["social_proof_user_ids"] = np.zeros(0, dtype="<i8")
    return columns


def test_fitting_positions_grow_with_each_insertion():
    assert fitting_positions(35, [3, 5, 15]) == [3, 5, 15]
    assert fitting_positions(2, [3, 5, 15]) == [3]          # 2 entries: position 3 appends; 5 is past 3 + 1
    assert fitting_positions(4, [3, 5, 15]) == [3, 5]       # 4 + 1 entries: 5 lands, then 6 entries: 15 does not
    assert fitting_positions(0, [1, 2]) == [1, 2]


def test_place_puts_each_extra_at_its_position():
    entries = [Entry("tweet", [(i, None)]) for i in range(6)]
    placed = place(entries, {3: Entry("promoted"), 5: Entry("who_to_follow")})
    assert [e.type for e in placed] == ["tweet", "tweet", "promoted", "tweet", "who_to_follow", "tweet", "tweet", "tweet"]


def test_positions_must_be_distinct():
    with pytest.raises(ValueError, match="distinct"):
        MixingConfig(who_to_follow_position=3, promoted_positions=(3, 15))
    with pytest.raises(ValueError, match="unknown"):
        ForYouConfig(filters=("self", "spam"))


def test_who_to_follow_leaves_out_followed_hidden_and_self_and_respects_the_interval():
    suggestions = {"user_ids": [5, 6, 7, 1, 8, 9], "social_proof_counts": [4, 3, 3, 2, 2, 1],
                   "proof_user_ids": [[2], [2], [3], [2], [3], [3]]}
    viewer = state(following={6}, blocked={7}, who_to_follow=suggestions)
    config = MixingConfig(who_to_follow_size=3, who_to_follow_interval_hours=1)
    assert [u["user_id"] for u in who_to_follow_users(viewer, now_ms=0, config=config)] == [5, 8, 9]
    viewer.who_to_follow_shown_ms = 1_000
    assert who_to_follow_users(viewer, now_ms=1_000 + 3_599_999, config=config) == []
    assert len(who_to_follow_users(viewer, now_ms=1_000 + 3_600_000, config=config)) == 3


def test_cheap_filters_report_each_removed_tweet_under_its_filter():
    columns = feed([(10, 1, 1.0, True), (11, 2, 1.0, True), (12, 3, 1.0, False), (13, 4, 1.0, False),
                    (14, 5, 1.0, True), (15, 6, 1.0, True)])
    viewer = state(user_id=1, blocked={2}, muted={6}, seen={13}, not_interested_ms={5: 0.0})
    kept, fatigue, removed = cheap_filters(columns, viewer, served={12}, now_ms=86_400_000.0,
                                           heuristics=FeedHeuristics())
    assert kept.tolist() == []  # 12 was served: skipped, not counted
    assert {name: columns["tweet_id"][ids].tolist() for name, ids in removed.items()} == {
        "self": [10], "blocked_muted": [11, 15], "seen": [13], "feedback_fatigue": [14]}
    kept, _, removed = cheap_filters(columns, viewer, served=set(), now_ms=86_400_000.0,
                                     heuristics=FeedHeuristics(), enabled=frozenset({"self"}))
    assert columns["tweet_id"][kept].tolist() == [11, 12, 13, 14, 15] and list(removed) == ["self"]


def test_fresh_tweets_join_as_in_network_candidates_at_the_feeds_75th_percentile():
    columns = feed([(10, 1, 0.1, True), (11, 2, 0.2, True), (12, 3, 0.3, True), (13, 4, 0.5, True),
                    (14, 5, 9.0, False)])
    merged = with_fresh_tweets(columns, [(20, 7, 1_000.0), (10, 1, 5.0)])  # 10 is in the feed already
    assert merged["tweet_id"].tolist() == [10, 11, 12, 13, 14, 20]
    # The in-network heavy scores 0.1, 0.2, 0.3, 0.5: the 75th percentile interpolates 0.3 + 0.25 * 0.2.
    assert merged["heavy_score"][-1] == pytest.approx(0.35, abs=1e-6)
    assert merged["is_in_network"][-1] == 1 and merged["sources"][-1] == 1 << FRESH_SOURCE_BIT
    assert merged["rank"][-1] == 0 and merged["created_at_ms"][-1] == 1_000
    assert merged["social_proof_offsets"].tolist() == [0] * 7


def batch(*events: dict) -> list:
    return EventBatch.model_validate({"events": list(events)}).events


def test_log_records_check_each_event_against_the_tweets_that_exist():
    tweets = {100: {"author_id": 7}, 101: {"author_id": 1}}
    records = log_records(1, batch({"type": "like", "tweet_id": 100, "created_at": "2020-01-01T00:00:00"},
                                   {"type": "tweet", "tweet_id": 200, "in_reply_to_tweet_id": 100},
                                   {"type": "delete_tweet", "tweet_id": 200},
                                   {"type": "delete_tweet", "tweet_id": 101}), tweets, now_ms=5)
    assert [(r["type"], r["author_id"], r["created_at_ms"]) for r in records] == [
        ("like", 7, int(datetime(2020, 1, 1, tzinfo=timezone.utc).timestamp() * 1000)), ("tweet", 1, 5),
        ("delete_tweet", 1, 5), ("delete_tweet", 1, 5)]
    for events, status in (([{"type": "delete_tweet", "tweet_id": 100}], 403),
                           ([{"type": "like", "tweet_id": 999}], 404),
                           ([{"type": "tweet", "tweet_id": 100}], 409),
                           ([{"type": "tweet", "tweet_id": 300, "quoted_tweet_id": 999}], 422),
                           ([{"type": "block", "target_user_id": 1}], 422)):
        with pytest.raises(EventError) as error:
            log_records(1, batch(*events), tweets, now_ms=5)
        assert error.value.status == status


def test_events_outside_the_schema_are_refused():
    for events in ([], [{"type": "like"}], [{"type": "like", "tweet_id": 0}], [{"type": "like", "tweet_id": 1, "x": 1}],
                   [{"type": "like", "tweet_id": 1, "created_at": "2005-01-01T00:00:00Z"}],
                   [{"type": "tweet", "tweet_id": 1, "text": "x" * 1001}], [{"type": "like", "tweet_id": 1}] * 101):
        with pytest.raises(ValidationError):
            TypeAdapter(EventBatch).validate_python({"events": events})


def test_contract_rows_map_events_onto_the_raw_tables():
    ms = 1_600_000_000_000
    at = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    records = [{"type": "reply", "user_id": 1, "tweet_id": 9, "author_id": 2, "created_at_ms": ms},
               {"type": "mute", "user_id": 1, "target_user_id": 3, "created_at_ms": ms},
               {"type": "unfollow", "user_id": 1, "target_user_id": 4, "created_at_ms": ms},
               {"type": "tweet", "user_id": 1, "tweet_id": 50, "author_id": 1, "created_at_ms": ms, "text": "t",
                "is_nsfw": True},
               {"type": "delete_tweet", "user_id": 1, "tweet_id": 50, "author_id": 1, "created_at_ms": ms + 1}]
    rows = contract_rows(records)
    assert rows["engagements"] == [{"user_id": 1, "tweet_id": 9, "action": "reply", "created_at": at, "dwell_ms": None}]
    assert rows["social_actions"] == [{"user_id": 1, "target_user_id": 3, "action": "mute", "created_at": at}]
    assert "follows" not in rows  # an unfollow has no row in contract 1.0 (archived only)
    (tweet,) = rows["tweets"]
    assert (tweet["tweet_id"], tweet["author_id"], tweet["is_nsfw"], tweet["has_media"]) == (50, 1, True, False)
    assert tweet["deleted_at"] == datetime.fromtimestamp((ms + 1) / 1000, tz=timezone.utc)


def test_the_published_cache_keeps_the_newest_entries():
    from serving.store import _MISSING, PublishedCache

    cache = PublishedCache(max_entries=2)
    cache.put(("tweet", 1, 1), 1)
    cache.put(("tweet", 1, 2), None)  # a published key that does not exist is cached as such
    assert cache.get(("tweet", 1, 2)) is None and cache.get(("tweet", 2, 2)) is _MISSING  # another version
    cache.put(("tweet", 1, 3), 3)
    assert cache.get(("tweet", 1, 1)) is _MISSING  # the oldest went first
    assert cache.get(("tweet", 1, 2)) is None and cache.get(("tweet", 1, 3)) == 3


def test_one_round_trip_reads_give_the_same_replies_scripted_and_pipelined(redis_client, redis_server):
    """The script (one server) and the pipeline (a cluster) return each read's raw reply alike,
    nil, set, sorted set in both orders, with scores, by score, and stream entries."""
    import asyncio

    import redis.asyncio as aioredis

    from serving.store import Store

    redis_client.sadd("s", 3, 1, 2)
    redis_client.zadd("z", {"a": 1.5, "b": 2.0, "c": 0.5})
    first = redis_client.xadd("x", {"t": 11})
    redis_client.xadd("x", {"t": 12})
    reads = [("GET", "missing"), ("SMEMBERS", "s"), ("ZRANGE", "z", 0, -1, "REV"), ("ZRANGE", "z", 0, -1, "WITHSCORES"),
             ("ZRANGE", "z", 1.0, "+inf", "BYSCORE"), ("XRANGE", "x", b"(" + first, b"+"), ("XRANGE", "x", b"(0-0", b"+")]

    async def both():
        store = Store(aioredis.Redis.from_url(redis_server.url))
        redis_client.script_flush()  # the script path loads it again by itself
        return await store.read_scripted(reads), await store.read_pipelined(reads)

    scripted, pipelined = asyncio.run(both())
    for replies in (scripted, pipelined):
        assert replies[0] is None
        assert sorted(replies[1]) == [b"1", b"2", b"3"]
        assert replies[2] == [b"b", b"a", b"c"]
        assert replies[3][::2] == [b"c", b"a", b"b"] and [float(v) for v in replies[3][1::2]] == [0.5, 1.5, 2.0]
        assert replies[4] == [b"a", b"b"]
        assert [fields for _, fields in replies[5]] == [[b"t", b"12"]]
        assert [fields for _, fields in replies[6]] == [[b"t", b"11"], [b"t", b"12"]]


def test_a_store_follows_the_deletion_log_reading_only_new_entries(redis_client, redis_server):
    import asyncio

    import redis.asyncio as aioredis

    from serving.store import Store

    async def run():
        store = Store(aioredis.Redis.from_url(redis_server.url))
        redis_client.xadd(rl.DELETION_LOG, {"t": 5})
        await store.read_deletions()
        seen_after_first = (5 in store.deleted, 6 in store.deleted)
        redis_client.xadd(rl.DELETION_LOG, {"t": 6})
        read = store.deleted.read()
        await store.read_deletions()
        return seen_after_first, read, 6 in store.deleted

    (five, six_early), read, six = asyncio.run(run())
    assert five and not six_early and six
    assert read[2].startswith(b"(") and read[2] != b"(0-0"  # past the first entry, not from the start


def test_a_limited_rerank_is_the_head_of_the_full_order():
    from serving.timelines import RerankConfig, rerank

    rng = np.random.default_rng(7)
    items = [(100 + i, int(rng.integers(1, 12)), float(rng.normal()), bool(rng.random() < 0.4)) for i in range(300)]
    columns = feed(items)
    kept = np.arange(300)
    full, full_scores = rerank(columns, kept, np.ones(300), now_ms=0.0, config=RerankConfig())
    head, head_scores = rerank(columns, kept, np.ones(300), now_ms=0.0, config=RerankConfig(), limit=40)
    assert len(full) == 300 and len(head) == 40
    assert head.tolist() == full[:40].tolist() and head_scores.tolist() == full_scores[:40].tolist()
    # The order keeps the run limit: never more than 2 out-of-network items in a row while in-network ones remain.
    in_network = columns["is_in_network"][full].astype(bool)
    last_in_network = np.flatnonzero(in_network).max()
    runs = np.diff(np.flatnonzero(np.r_[True, in_network[:last_in_network + 1], True])) - 1
    assert runs.max() <= 2


def test_recent_pages_serve_a_page_for_its_period_only_and_keep_the_newest():
    from serving.page_cache import CachedPage, RecentPages

    now = [100.0]
    pages = RecentPages(ttl_seconds=10, max_entries=2, clock=lambda: now[0])
    pages.put("a", CachedPage(b"A"))
    now[0] = 109.9
    assert pages.get("a").body == b"A"
    now[0] = 110.0  # computed 10 s ago: too old
    assert pages.get("a") is None and len(pages) == 0
    pages.put("a", CachedPage(b"A"))
    pages.put("b", CachedPage(b"B"))
    pages.put("a", CachedPage(b"A2"))  # put again: the newest, so "b" is the oldest
    pages.put("c", CachedPage(b"C"))
    assert pages.get("b") is None and pages.get("a").body == b"A2" and pages.get("c").body == b"C"
    now[0] = 125.0  # a put drops what expired since: only the new page is left
    pages.put("d", CachedPage(b"D"))
    assert len(pages) == 1 and pages.get("d").body == b"D"
    off = RecentPages(ttl_seconds=0, max_entries=5)
    off.put("a", CachedPage(b"A"))
    assert not off.enabled and off.get("a") is None and len(off) == 0


def _scope(path: str, query: bytes = b"", headers=((b"authorization", b"Bearer tok"),), method: str = "GET") -> dict:
    return {"type": "http", "method": method, "path": path, "query_string": query, "headers": list(headers)}


def test_only_a_home_timeline_request_the_route_accepts_as_is_takes_the_fast_path():
    from serving.api import MAX_COUNT, MAX_CURSOR_LENGTH, TimelineRequest, well_formed_home_timeline

    path = "/v1/users/42/timelines/for_you"
    assert well_formed_home_timeline(_scope(path)) == TimelineRequest("for_you", 42, None, 35, "tok")
    assert well_formed_home_timeline(_scope(path, b"count=7&cursor=abc")) == TimelineRequest("for_you", 42, "abc", 7, "tok")
    assert well_formed_home_timeline(_scope("/v1/users/42/timelines/following", b"count=3")) == \
        TimelineRequest("following", 42, None, 3, "tok")
    assert well_formed_home_timeline(_scope(path, f"count={MAX_COUNT}".encode())).count == MAX_COUNT
    refused = [
        _scope(path, method="POST"), _scope(path, headers=()), _scope(path, headers=((b"authorization", b"Basic x"),)),
        _scope(path, headers=((b"authorization", b"Bearer  "),)),
        _scope(path, headers=((b"authorization", b"Bearer a"), (b"authorization", b"Bearer b"))),
        _scope("/v1/users/0/timelines/for_you"), _scope("/v1/users/042/timelines/for_you"),
        _scope(f"/v1/users/{2**63}/timelines/for_you"), _scope("/v1/lists/42/timeline"),
        _scope("/v1/users/42/timelines/lists"),
        _scope(path + "/"), _scope(path, b"count=0"), _scope(path, f"count={MAX_COUNT + 1}".encode()),
        _scope(path, b"count=abc"), _scope(path, b"count=5&count=6"), _scope(path, b"debug=1"),
        _scope(path, b"cursor=" + b"x" * (MAX_CURSOR_LENGTH + 1)),
    ]
    for scope in refused:
        assert well_formed_home_timeline(scope) is None, scope
    assert well_formed_home_timeline(_scope(f"/v1/users/{2**63 - 1}/timelines/for_you")).user_id == 2**63 - 1


def test_the_fast_path_answers_what_its_handler_takes_and_passes_on_the_rest():
    import asyncio

    from fastapi.responses import Response

    from serving.api import HomeTimelineFastPath

    passed_on, handled = [], []

    async def app(scope, receive, send):
        passed_on.append(scope["path"])
        await Response(b"from fastapi")(scope, receive, send)

    async def handler(request):
        handled.append((request.timeline, request.user_id))
        return Response(request.timeline.encode()) if request.user_id == 1 else None  # user 2: FastAPI answers

    routes = [type("Route", (), {"path": f"/v1/users/{{user_id}}/timelines/{name}"})() for name in ("for_you", "following")]
    middleware = HomeTimelineFastPath(app, handler=handler, routes=dict(zip(("for_you", "following"), routes)))

    async def call(path: str) -> tuple[bytes, dict]:
        sent, scope = [], _scope(path)
        await middleware(scope, None, lambda message: asyncio.sleep(0, sent.append(message)))
        return b"".join(m.get("body", b"") for m in sent), scope

    body, scope = asyncio.run(call("/v1/users/1/timelines/for_you"))
    assert body == b"for_you" and scope["route"] is routes[0] and passed_on == []
    body, scope = asyncio.run(call("/v1/users/1/timelines/following"))
    assert body == b"following" and scope["route"] is routes[1] and passed_on == []
    assert asyncio.run(call("/v1/users/2/timelines/for_you"))[0] == b"from fastapi"
    assert asyncio.run(call("/healthz"))[0] == b"from fastapi"
    assert handled == [("for_you", 1), ("following", 1), ("for_you", 2)]
    assert passed_on == ["/v1/users/2/timelines/for_you", "/healthz"]
