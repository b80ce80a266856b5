"""The request pipeline's pure pieces on hand-made inputs (the end-to-end tests are in test_serving.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from core import redis_layout as rl
from core.filters import CHRONOLOGICAL_FILTERS, REQUEST_FILTERS
from core.sources import CANDIDATE_SOURCES
from serving.candidates import (
    ENGAGEMENT_SOURCE,
    FOLLOW_RECOMMENDATION_SOURCE,
    FRESH_SOURCE_BIT,
    POPULAR_SOURCE,
    TweetColumns,
    source_names,
)
from serving.components import FilterQuery, run_filters
from serving.events import EventBatch, EventError, contract_rows, log_records
from serving.for_you import FOR_YOU, SOURCES, ForYouConfig, configured_pipeline
from serving.mixing import Entry, MixingConfig, WhoToFollowModule, fitting_positions, place
from serving.sources import FreshInNetworkSource
from serving.store import UserState
from serving.timelines import CHRONOLOGICAL, chronological_candidates, older_than


def state(**kwargs) -> UserState:
    values = dict(
        user_id=1,
        feed=None,
        profile=None,
        following=set(),
        blocked=set(),
        muted=set(),
        seen=set(),
        not_interested_ms={},
    )
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
    assert fitting_positions(2, [3, 5, 15]) == [3]  # 2 entries: position 3 appends; 5 is past 3 + 1
    assert fitting_positions(4, [3, 5, 15]) == [3, 5]  # 4 + 1 entries: 5 lands, then 6 entries: 15 does not
    assert fitting_positions(0, [1, 2]) == [1, 2]


def test_place_puts_each_extra_at_its_position():
    entries = [Entry("tweet", [(i, None)]) for i in range(6)]
    placed = place(entries, {3: Entry("promoted"), 5: Entry("who_to_follow")})
    assert [e.type for e in placed] == [
        "tweet",
        "tweet",
        "promoted",
        "tweet",
        "who_to_follow",
        "tweet",
        "tweet",
        "tweet",
    ]


def test_positions_must_be_distinct():
    with pytest.raises(ValueError, match="distinct"):
        MixingConfig(who_to_follow_position=3, promoted_positions=(3, 15))
    with pytest.raises(ValueError, match="unknown"):
        ForYouConfig(filters=("self", "spam"))


def test_who_to_follow_leaves_out_followed_hidden_and_self_and_respects_the_interval():
    suggestions = {
        "user_ids": [5, 6, 7, 1, 8, 9],
        "social_proof_counts": [4, 3, 3, 2, 2, 1],
        "proof_user_ids": [[2], [2], [3], [2], [3], [3]],
    }
    viewer = state(following={6}, blocked={7}, who_to_follow=suggestions)
    config = MixingConfig(who_to_follow_size=3, who_to_follow_interval_hours=1)
    module = WhoToFollowModule()
    assert [u["user_id"] for u in module.users(viewer, now_ms=0, config=config)] == [5, 8, 9]
    viewer.who_to_follow_shown_ms = 1_000
    assert module.users(viewer, now_ms=1_000 + 3_599_999, config=config) == []
    assert len(module.users(viewer, now_ms=1_000 + 3_600_000, config=config)) == 3


def test_the_pipelines_declare_their_filters_and_sources_in_the_core_vocabulary():
    assert FOR_YOU.filters == REQUEST_FILTERS
    assert CHRONOLOGICAL.identifiers == CHRONOLOGICAL_FILTERS
    assert SOURCES == ("ranked_feed", "fresh_in_network", "conversations", "who_to_follow", "promoted")
    assert {FOLLOW_RECOMMENDATION_SOURCE, ENGAGEMENT_SOURCE, POPULAR_SOURCE} <= set(CANDIDATE_SOURCES)
    assert source_names(1 << CANDIDATE_SOURCES.index("uteg") | 1 << FRESH_SOURCE_BIT) == ("uteg", "fresh")
    # A config enables filters by name; deleted tweets are removed whatever it says.
    assert configured_pipeline(ForYouConfig(filters=("seen", "nsfw"))).filters == ("seen", "deleted", "nsfw")


def test_the_feed_filters_report_each_removed_tweet_under_their_identifier():
    columns = feed(
        [
            (10, 1, 1.0, True),
            (11, 2, 1.0, True),
            (12, 3, 1.0, False),
            (13, 4, 1.0, False),
            (14, 5, 1.0, True),
            (15, 6, 1.0, True),
        ]
    )
    viewer = state(user_id=1, blocked={2}, muted={6}, seen={13}, not_interested_ms={5: 0.0})
    query = FilterQuery(state=viewer, now_ms=86_400_000.0)
    filtered = run_filters(FOR_YOU.feed_filters, query, columns, alive=columns["tweet_id"] != 12)
    assert filtered.kept.tolist() == [False] * 6  # 12 was served: skipped, not counted
    assert filtered.removed_ids(columns) == {
        "self": [10],
        "blocked_muted": [11, 15],
        "seen": [13],
        "feedback_fatigue": [14],
    }
    only_self = configured_pipeline(ForYouConfig(filters=("self",))).feed_filters
    filtered = run_filters(only_self, query, columns)
    assert columns["tweet_id"][filtered.kept].tolist() == [11, 12, 13, 14, 15]
    assert [identifier for identifier, _ in filtered.removed] == ["self"] and filtered.discount is None


def test_an_older_not_interested_discounts_the_authors_tweets_instead():
    columns = feed([(10, 7, 1.0, True), (11, 8, 1.0, True)])
    viewer = state(not_interested_ms={7: 0.0})
    filtered = run_filters(FOR_YOU.feed_filters, FilterQuery(state=viewer, now_ms=30 * 86_400_000.0), columns)
    assert filtered.kept.tolist() == [True, True]
    # 30 days: recovering linearly from 0.2 at 14 days to 1.0 at 140 (the heuristics' defaults).
    assert filtered.discount.tolist() == pytest.approx([0.2 + 0.8 * 16 / 126, 1.0])


def test_the_tweet_filters_remove_deleted_sensitive_and_duplicate_tweets_in_order():
    tweets = {
        1: {"author_id": 5, "is_nsfw": False, "retweet_of_tweet_id": None},
        3: {"author_id": 5, "is_nsfw": True, "retweet_of_tweet_id": None},
        4: {"author_id": 6, "is_nsfw": False, "retweet_of_tweet_id": 1},  # a retweet of 1, on this page
        5: {"author_id": 6, "is_nsfw": False, "retweet_of_tweet_id": 9},  # a retweet of 9, served earlier
        6: {"author_id": 6, "is_nsfw": False, "retweet_of_tweet_id": 7},
        7: {"author_id": 5, "is_nsfw": False, "retweet_of_tweet_id": None},
    }  # retweeted by 6, before it
    columns = TweetColumns([1, 2, 3, 4, 5, 6, 7], tweets)  # 2: deleted
    tweet_filters = FOR_YOU.tweet_filters
    filtered = run_filters(tweet_filters, FilterQuery(state=state(), shown=frozenset({9})), columns)
    assert filtered.removed_ids(columns) == {"deleted": [2], "nsfw": [3], "duplicate": [4, 5, 7]}
    assert columns["tweet_id"][filtered.kept].tolist() == [1, 6]
    assert filtered.removed_ids(columns, before=4) == {"deleted": [2], "nsfw": [3], "duplicate": [4]}
    opted_in = state(profile={"allow_nsfw": True})
    assert run_filters(tweet_filters, FilterQuery(state=opted_in), columns).removed_ids(columns) == {
        "deleted": [2],
        "duplicate": [4, 7],
    }  # a filter that removed nothing is left out


def test_chronological_candidates_merge_published_and_new_tweets_newest_first():
    import asyncio

    published = (
        np.array([30, 10, 20], dtype=np.int64),
        np.array([3, 1, 2], dtype=np.int64),
        np.array([300, 100, 300], dtype=np.int64),
    )
    fresh = [(40, 4, 400.0), (10, 1, 999.0), (41, 4, 50.0)]  # 10 is published already: as published
    rows = asyncio.run(chronological_candidates(None, [1, 2, 3, 4], published=published, since_ms=0, fresh=fresh))
    assert rows["tweet_id"].tolist() == [40, 30, 20, 10, 41]  # equal times: the higher id first
    assert rows["created_at_ms"].tolist() == [400, 300, 300, 100, 50]
    assert rows["author_id"].tolist() == [4, 3, 2, 1, 4] and rows["sources"].tolist() == [0] * 5
    assert older_than(rows, (300, 30))["tweet_id"].tolist() == [20, 10, 41]


def test_fresh_tweets_join_as_in_network_candidates_at_the_feeds_75th_percentile():
    columns = feed(
        [(10, 1, 0.1, True), (11, 2, 0.2, True), (12, 3, 0.3, True), (13, 4, 0.5, True), (14, 5, 9.0, False)]
    )
    merged = FreshInNetworkSource.merge(columns, [(20, 7, 1_000.0), (10, 1, 5.0)])  # 10 is in the feed already
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
    records = log_records(
        1,
        batch(
            {"type": "like", "tweet_id": 100, "created_at": "2020-01-01T00:00:00"},
            {"type": "tweet", "tweet_id": 200, "in_reply_to_tweet_id": 100},
            {"type": "delete_tweet", "tweet_id": 200},
            {"type": "delete_tweet", "tweet_id": 101},
        ),
        tweets,
        now_ms=5,
    )
    assert [(r["type"], r["author_id"], r["created_at_ms"]) for r in records] == [
        ("like", 7, int(datetime(2020, 1, 1, tzinfo=UTC).timestamp() * 1000)),
        ("tweet", 1, 5),
        ("delete_tweet", 1, 5),
        ("delete_tweet", 1, 5),
    ]
    for events, status in (
        ([{"type": "delete_tweet", "tweet_id": 100}], 403),
        ([{"type": "like", "tweet_id": 999}], 404),
        ([{"type": "tweet", "tweet_id": 100}], 409),
        ([{"type": "tweet", "tweet_id": 300, "quoted_tweet_id": 999}], 422),
        ([{"type": "block", "target_user_id": 1}], 422),
    ):
        with pytest.raises(EventError) as error:
            log_records(1, batch(*events), tweets, now_ms=5)
        assert error.value.status == status


def test_events_outside_the_schema_are_refused():
    for events in (
        [],
        [{"type": "like"}],
        [{"type": "like", "tweet_id": 0}],
        [{"type": "like", "tweet_id": 1, "x": 1}],
        [{"type": "like", "tweet_id": 1, "created_at": "2005-01-01T00:00:00Z"}],
        [{"type": "tweet", "tweet_id": 1, "text": "x" * 1001}],
        [{"type": "like", "tweet_id": 1}] * 101,
    ):
        with pytest.raises(ValidationError):
            TypeAdapter(EventBatch).validate_python({"events": events})


def test_contract_rows_map_events_onto_the_raw_tables():
    ms = 1_600_000_000_000
    at = datetime.fromtimestamp(ms / 1000, tz=UTC)
    records = [
        {"type": "reply", "user_id": 1, "tweet_id": 9, "author_id": 2, "created_at_ms": ms},
        {"type": "mute", "user_id": 1, "target_user_id": 3, "created_at_ms": ms},
        {"type": "unfollow", "user_id": 1, "target_user_id": 4, "created_at_ms": ms},
        {
            "type": "tweet",
            "user_id": 1,
            "tweet_id": 50,
            "author_id": 1,
            "created_at_ms": ms,
            "text": "t",
            "is_nsfw": True,
        },
        {"type": "delete_tweet", "user_id": 1, "tweet_id": 50, "author_id": 1, "created_at_ms": ms + 1},
    ]
    rows = contract_rows(records)
    assert rows["engagements"] == [{"user_id": 1, "tweet_id": 9, "action": "reply", "created_at": at, "dwell_ms": None}]
    assert rows["social_actions"] == [{"user_id": 1, "target_user_id": 3, "action": "mute", "created_at": at}]
    assert "follows" not in rows  # an unfollow has no row in contract 1.0 (archived only)
    (tweet,) = rows["tweets"]
    assert (tweet["tweet_id"], tweet["author_id"], tweet["is_nsfw"], tweet["has_media"]) == (50, 1, True, False)
    assert tweet["deleted_at"] == datetime.fromtimestamp((ms + 1) / 1000, tz=UTC)


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
    reads = [
        ("GET", "missing"),
        ("SMEMBERS", "s"),
        ("ZRANGE", "z", 0, -1, "REV"),
        ("ZRANGE", "z", 0, -1, "WITHSCORES"),
        ("ZRANGE", "z", 1.0, "+inf", "BYSCORE"),
        ("XRANGE", "x", b"(" + first, b"+"),
        ("XRANGE", "x", b"(0-0", b"+"),
    ]

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


def test_a_limited_page_assembly_is_the_head_of_the_full_order():
    from serving.scorers import LightRerankScorer
    from serving.selectors import InNetworkPageAssembly

    rng = np.random.default_rng(7)
    items = [(100 + i, int(rng.integers(1, 12)), float(rng.normal()), bool(rng.random() < 0.4)) for i in range(300)]
    columns = feed(items)
    kept = np.arange(300)
    scores = LightRerankScorer().score(columns, kept, np.ones(300), now_ms=0.0)
    full, full_scores = InNetworkPageAssembly().select(columns, kept, scores)
    head, head_scores = InNetworkPageAssembly().select(columns, kept, scores, limit=40)
    assert len(full) == 300 and len(head) == 40
    assert head.tolist() == full[:40].tolist() and head_scores.tolist() == full_scores[:40].tolist()
    # The order keeps the run limit: never more than 2 out-of-network items in a row while in-network ones remain.
    in_network = columns["is_in_network"][full].astype(bool)
    last_in_network = np.flatnonzero(in_network).max()
    runs = np.diff(np.flatnonzero(np.r_[True, in_network[: last_in_network + 1], True])) - 1
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
    from serving.fast_path import TimelineRequest, well_formed_home_timeline
    from serving.limits import MAX_COUNT, MAX_CURSOR_LENGTH

    path = "/v1/users/42/timelines/for_you"
    assert well_formed_home_timeline(_scope(path)) == TimelineRequest("for_you", 42, None, 35, "tok")
    assert well_formed_home_timeline(_scope(path, b"count=7&cursor=abc")) == TimelineRequest(
        "for_you", 42, "abc", 7, "tok"
    )
    assert well_formed_home_timeline(_scope("/v1/users/42/timelines/following", b"count=3")) == TimelineRequest(
        "following", 42, None, 3, "tok"
    )
    assert well_formed_home_timeline(_scope(path, f"count={MAX_COUNT}".encode())).count == MAX_COUNT
    refused = [
        _scope(path, method="POST"),
        _scope(path, headers=()),
        _scope(path, headers=((b"authorization", b"Basic x"),)),
        _scope(path, headers=((b"authorization", b"Bearer  "),)),
        _scope(path, headers=((b"authorization", b"Bearer a"), (b"authorization", b"Bearer b"))),
        _scope("/v1/users/0/timelines/for_you"),
        _scope("/v1/users/042/timelines/for_you"),
        _scope(f"/v1/users/{2**63}/timelines/for_you"),
        _scope("/v1/lists/42/timeline"),
        _scope("/v1/users/42/timelines/lists"),
        _scope(path + "/"),
        _scope(path, b"count=0"),
        _scope(path, f"count={MAX_COUNT + 1}".encode()),
        _scope(path, b"count=abc"),
        _scope(path, b"count=5&count=6"),
        _scope(path, b"debug=1"),
        _scope(path, b"cursor=" + b"x" * (MAX_CURSOR_LENGTH + 1)),
    ]
    for scope in refused:
        assert well_formed_home_timeline(scope) is None, scope
    assert well_formed_home_timeline(_scope(f"/v1/users/{2**63 - 1}/timelines/for_you")).user_id == 2**63 - 1


def test_the_fast_path_answers_what_its_handler_takes_and_passes_on_the_rest():
    import asyncio

    from fastapi.responses import Response

    from serving.fast_path import HomeTimelineFastPath

    passed_on, handled = [], []

    async def app(scope, receive, send):
        passed_on.append(scope["path"])
        await Response(b"from fastapi")(scope, receive, send)

    async def handler(request):
        handled.append((request.timeline, request.user_id))
        return Response(request.timeline.encode()) if request.user_id == 1 else None  # user 2: FastAPI answers

    routes = [
        type("Route", (), {"path": f"/v1/users/{{user_id}}/timelines/{name}"})() for name in ("for_you", "following")
    ]
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


def test_the_lifespan_closes_the_redis_client_it_made_and_only_that(monkeypatch):
    import asyncio

    import serving.api
    from core.settings import load_settings

    class Client:
        closed = False

        async def aclose(self):
            self.closed = True

    made = Client()
    monkeypatch.setattr(serving.api, "redis_client", lambda settings: made)
    settings = load_settings(env="development")

    async def serve(app):
        async with app.router.lifespan_context(app):
            return app.state.serving.store.client

    given = Client()
    assert asyncio.run(serve(serving.api.create_app(settings, client=given))) is given and not given.closed
    assert asyncio.run(serve(serving.api.create_app(settings))) is made and made.closed
