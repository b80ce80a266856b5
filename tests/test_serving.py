"""The timeline API end to end: the generated world's ranked feeds published by the real publisher
into a real redis-server, the real app under uvicorn in its own process, requests over HTTP.
Expected values come from the published records read back here, not from the serving code."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
import redis
from conftest import start_test_api
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from core import redis_layout as rl
from core.redis_server import free_port
from serving.auth import mint_token
from serving.events import ARCHIVE_DIR, EVENT_LOG

SECRET = "test-secret-" + uuid.uuid4().hex
REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO_ROOT / "build" / "test-artifacts"


def api_server(
    redis_url: str,
    tmp_path: Path,
    *,
    secret: str = SECRET,
    env: str = "production",
    environment: dict[str, str] | None = None,
):
    return start_test_api(redis_url, tmp_path, secret=secret, env=env, environment=environment)


@pytest.fixture(scope="module")
def api(published_redis, tmp_path_factory):
    server, version = published_redis
    process = api_server(server.url, tmp_path_factory.mktemp("api"))
    with httpx.Client(base_url=process.base_url, timeout=10) as client:
        yield client, redis.Redis.from_url(server.url), version
    process.stop()


@pytest.fixture(autouse=True)
def fresh_request_state(request):
    """Each test starts without request-time state (events, seen tweets, modules shown)."""
    yield
    if "api" in request.fixturenames:
        _, r, _ = request.getfixturevalue("api")
        clear_request_state(r)


def clear_request_state(r: redis.Redis) -> None:
    keys = list(r.scan_iter(match="hf:{*}:rt:*", count=1000)) + [rl.ACTIVE_AUTHORS, EVENT_LOG]
    r.delete(*keys)


def auth(user_id: int, **kwargs) -> dict:
    return {"Authorization": f"Bearer {mint_token(user_id, SECRET, now=time.time(), **kwargs)}"}


def published(r: redis.Redis, space: rl.KeySpace, version: int, id_: int) -> dict | None:
    value = r.get(space.key(version, id_))
    return None if value is None else space.decode(value)


def feed_users(r: redis.Redis, version: int) -> list[int]:
    return sorted(rl.FEEDS.id_of(key) for key in r.scan_iter(match=f"hf:v{version}:*:feed", count=1000))


def feed_of(r: redis.Redis, version: int, user: int) -> list[dict]:
    return rl.decode_feed(r.get(rl.FEEDS.key(version, user)))


def entry_tweets(entry: dict) -> list[dict]:
    return entry["tweets"] if entry["type"] == "conversation" else [entry] if entry["type"] != "who_to_follow" else []


def ranked_tweets(entries: list[dict]) -> list[dict]:
    """The page's ranked tweets: each tweet entry, and the reply that ends each conversation."""
    return [e if e["type"] == "tweet" else e["tweets"][-1] for e in entries if e["type"] in ("tweet", "conversation")]


def shown_ids(pages: list[dict]) -> list[int]:
    return [int(t["tweet_id"]) for page in pages for entry in page["items"] for t in entry_tweets(entry)]


def all_pages(client, path: str, headers: dict, count: int) -> list[dict]:
    pages, cursor = [], None
    while True:
        params = {"count": count} | ({"cursor": cursor} if cursor else {})
        response = client.get(path, params=params, headers=headers)
        assert response.status_code == 200, response.text
        pages.append(response.json())
        cursor = pages[-1]["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 200


def post_events(client, user: int, events: list[dict]) -> httpx.Response:
    return client.post("/v1/events", json={"events": events}, headers=auth(user))


def test_for_you_pages_cover_the_feed_once_minus_what_the_filters_removed(api):
    client, r, version = api
    user = max(feed_users(r, version), key=lambda u: len(feed_of(r, version, u)))
    feed = {item["tweet_id"]: item for item in feed_of(r, version, user)}
    pages = all_pages(client, f"/v1/users/{user}/timelines/for_you", auth(user), count=20)
    shown = shown_ids(pages)
    assert len(shown) == len(set(shown)), "a tweet was shown twice"
    ranked = [int(t["tweet_id"]) for page in pages for t in ranked_tweets(page["items"])]
    assert set(ranked) <= set(feed) and not any(page["fallback"] for page in pages)
    assert all(len(ranked_tweets(page["items"])) <= 20 for page in pages)
    removed = sum(sum(page["filtered"].values()) for page in pages)
    assert len(set(shown) & set(feed)) + removed == len(feed), "a feed item was neither shown nor filtered"
    profile = published(r, rl.PROFILES, version, user)
    hidden = published(r, rl.BLOCKED_MUTED, version, user) or {"blocked_ids": [], "muted_ids": []}
    for page in pages:
        for entry in page["items"]:
            for item in entry_tweets(entry):
                author = int(item["author"]["user_id"])
                assert author != user and author not in hidden["blocked_ids"] + hidden["muted_ids"]
                tweet = published(r, rl.TWEETS, version, int(item["tweet_id"]))
                assert not tweet["is_nsfw"] or profile["allow_nsfw"]
                assert item["text"] == tweet["text"]
        for item in ranked_tweets(page["items"]):
            assert item["score"] is not None and item["sources"] == feed[int(item["tweet_id"])]["sources"]


def test_out_of_network_tweets_never_come_three_in_a_row(api):
    client, r, version = api
    for user in feed_users(r, version)[:20]:
        for page in all_pages(client, f"/v1/users/{user}/timelines/for_you", auth(user), count=35):
            flags = [item["in_network"] for item in ranked_tweets(page["items"])]
            for i in range(len(flags) - 2):
                if any(flags[i + 3 :]):  # while in-network tweets remain, no three out-of-network in a row
                    assert any(flags[i : i + 3]), (user, flags)
        clear_request_state(r)


def test_blocks_impressions_and_deletions_posted_as_events_apply_at_once(api):
    client, r, version = api
    user = feed_users(r, version)[1]
    first = ranked_tweets(client.get(f"/v1/users/{user}/timelines/for_you", headers=auth(user)).json()["items"])
    blocked_author = int(first[0]["author"]["user_id"])
    seen = next(t for t in first[1:] if int(t["author"]["user_id"]) != blocked_author)
    deleted = next(
        t for t in first[1:] if int(t["author"]["user_id"]) not in (blocked_author, int(seen["author"]["user_id"]))
    )
    assert (
        post_events(
            client,
            user,
            [
                {"type": "block", "target_user_id": blocked_author},
                {"type": "impression", "tweet_id": int(seen["tweet_id"]), "dwell_ms": 1200},
            ],
        ).status_code
        == 202
    )
    deleter = int(deleted["author"]["user_id"])
    assert (
        post_events(client, deleter, [{"type": "delete_tweet", "tweet_id": int(deleted["tweet_id"])}]).status_code
        == 202
    )
    pages = all_pages(client, f"/v1/users/{user}/timelines/for_you", auth(user), count=35)
    served = [t for page in pages for entry in page["items"] for t in entry_tweets(entry)]
    assert blocked_author not in {int(t["author"]["user_id"]) for t in served}
    assert {seen["tweet_id"], deleted["tweet_id"]}.isdisjoint({t["tweet_id"] for t in served})
    assert sum(page["filtered"]["seen"] for page in pages) >= 1
    assert sum(page["filtered"]["deleted"] for page in pages) >= 1
    assert sum(page["filtered"]["blocked_muted"] for page in pages) >= 1


def test_not_interested_drops_the_author_for_the_fatigue_window(api):
    client, r, version = api
    user = feed_users(r, version)[2]
    first = ranked_tweets(client.get(f"/v1/users/{user}/timelines/for_you", headers=auth(user)).json()["items"])
    author = int(first[0]["author"]["user_id"])
    assert (
        post_events(client, user, [{"type": "not_interested", "tweet_id": int(first[0]["tweet_id"])}]).status_code
        == 202
    )
    authors_left = [item["author_id"] for item in feed_of(r, version, user) if item["author_id"] == author]
    pages = all_pages(client, f"/v1/users/{user}/timelines/for_you", auth(user), count=35)
    assert author not in {int(t["author"]["user_id"]) for p in pages for t in ranked_tweets(p["items"])}
    # The tweet itself is "seen" (filtered as seen); the author's other tweets go to feedback fatigue.
    assert sum(p["filtered"]["feedback_fatigue"] for p in pages) == len(authors_left) - 1


def test_a_followees_new_tweet_reaches_following_and_for_you_and_leaves_on_deletion(api):
    client, r, version = api
    user = feed_users(r, version)[3]
    following = set(published(r, rl.FOLLOWING, version, user)["followee_ids"])
    profiles = [u for u in range(1, 400) if published(r, rl.PROFILES, version, u)]
    newcomer = next(
        u
        for u in profiles
        if u not in following
        and u != user
        and u not in (published(r, rl.BLOCKED_MUTED, version, user) or {"blocked_ids": []})["blocked_ids"]
    )
    tweet_id = 9_000_000_000 + int(time.time())
    assert post_events(client, user, [{"type": "follow", "target_user_id": newcomer}]).status_code == 202
    assert (
        post_events(
            client, newcomer, [{"type": "tweet", "tweet_id": tweet_id, "text": "fresh from the oven"}]
        ).status_code
        == 202
    )
    page = client.get(f"/v1/users/{user}/timelines/following", headers=auth(user)).json()
    assert page["items"][0]["tweet_id"] == str(tweet_id) and page["items"][0]["text"] == "fresh from the oven"
    pages = all_pages(client, f"/v1/users/{user}/timelines/for_you", auth(user), count=35)
    fresh = [t for p in pages for t in ranked_tweets(p["items"]) if t["tweet_id"] == str(tweet_id)]
    assert len(fresh) == 1 and fresh[0]["sources"] == ["fresh"] and fresh[0]["in_network"]
    assert post_events(client, user, [{"type": "delete_tweet", "tweet_id": tweet_id}]).status_code == 403
    assert post_events(client, newcomer, [{"type": "delete_tweet", "tweet_id": tweet_id}]).status_code == 202
    page = client.get(f"/v1/users/{user}/timelines/following", headers=auth(user)).json()
    assert str(tweet_id) not in {item["tweet_id"] for item in page["items"]}
    assert post_events(client, user, [{"type": "unfollow", "target_user_id": newcomer}]).status_code == 202
    assert newcomer not in {
        int(i["author"]["user_id"])
        for i in client.get(f"/v1/users/{user}/timelines/following", headers=auth(user)).json()["items"]
    }


def page_cache_counts(client, pipeline: str = "for_you") -> dict[str, float]:
    counts = {"hit": 0.0, "miss": 0.0}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("homefeed_page_cache_total{") and f'pipeline="{pipeline}"' in line:
            labels, value = line.rsplit(" ", 1)
            counts[labels.split('result="')[1].split('"')[0]] = float(value)
    return counts


def without_scores(page: dict) -> dict:
    """The page with each tweet's score dropped (it decays with the clock between two requests)."""

    def strip(item: dict) -> dict:
        item = {k: v for k, v in item.items() if k != "score"}
        return item | ({"tweets": [strip(t) for t in item["tweets"]]} if "tweets" in item else {})

    return page | {"items": [strip(item) for item in page["items"]]}


def test_a_page_is_served_again_only_while_nothing_it_was_computed_from_changed(api, published_redis, tmp_path):
    client, r, version = api
    user, other = feed_users(r, version)[4:6]
    path = f"/v1/users/{user}/timelines/for_you"
    computing = api_server(published_redis[0].url, tmp_path, environment={"HOMEFEED_PAGE_CACHE_SECONDS": "0"})
    try:
        with httpx.Client(base_url=computing.base_url, timeout=10) as fresh_client:
            first = client.get(path, headers=auth(user)).json()
            # A who-to-follow module shown is marked shown: the viewer's state changed, the next page is computed.
            marked = any(item["type"] == "who_to_follow" for item in first["items"])
            before = page_cache_counts(client)
            computed = client.get(path, headers=auth(user)).json()
            again = client.get(path, headers=auth(user)).json()
            assert page_cache_counts(client) == {"hit": before["hit"] + 2 - marked, "miss": before["miss"] + marked}
            assert again == computed
            # The page served again is the one an API that keeps no pages computes for the same state.
            assert without_scores(fresh_client.get(path, headers=auth(user)).json()) == without_scores(again)
            assert page_cache_counts(fresh_client) == {"hit": 0, "miss": 0}

            # The viewer's impression, and another user's deletion of a tweet on the page: computed anew.
            top = ranked_tweets(again["items"])
            seen, deleted = top[0], next(t for t in top[1:] if t["author"]["user_id"] != top[0]["author"]["user_id"])
            for poster, event in (
                (user, {"type": "impression", "tweet_id": int(seen["tweet_id"])}),
                (int(deleted["author"]["user_id"]), {"type": "delete_tweet", "tweet_id": int(deleted["tweet_id"])}),
            ):
                assert post_events(client, poster, [event]).status_code == 202
                before = page_cache_counts(client)
                page = client.get(path, headers=auth(user)).json()
                assert page_cache_counts(client)["miss"] == before["miss"] + 1
                assert event["tweet_id"] not in {int(t["tweet_id"]) for t in ranked_tweets(page["items"])}
                assert without_scores(page) == without_scores(fresh_client.get(path, headers=auth(user)).json())
            # Another viewer's events leave this viewer's page as it was.
            assert (
                post_events(client, other, [{"type": "impression", "tweet_id": int(top[2]["tweet_id"])}]).status_code
                == 202
            )
            before = page_cache_counts(client)
            assert client.get(path, headers=auth(user)).json() == page
            assert page_cache_counts(client)["hit"] == before["hit"] + 1

            # Following too; a followee's new tweet makes its next page a fresh one.
            following = f"/v1/users/{user}/timelines/following"
            before = page_cache_counts(client, "following")
            newest = client.get(following, headers=auth(user)).json()
            assert client.get(following, headers=auth(user)).json() == newest
            assert newest == fresh_client.get(following, headers=auth(user)).json()
            assert page_cache_counts(client, "following") == {"hit": before["hit"] + 1, "miss": before["miss"] + 1}
            followee = int(newest["items"][0]["author"]["user_id"])
            tweet_id = 9_100_000_000 + int(time.time())
            assert (
                post_events(client, followee, [{"type": "tweet", "tweet_id": tweet_id, "text": "news"}]).status_code
                == 202
            )
            assert client.get(following, headers=auth(user)).json()["items"][0]["tweet_id"] == str(tweet_id)
            assert page_cache_counts(client, "following")["miss"] == before["miss"] + 2
    finally:
        computing.stop()


def test_events_are_validated_and_a_refused_batch_changes_nothing(api):
    client, r, version = api
    user = feed_users(r, version)[0]
    tweet = feed_of(r, version, user)[0]
    assert (
        client.post("/v1/events", json={"events": [{"type": "like", "tweet_id": tweet["tweet_id"]}]}).status_code == 401
    )
    assert post_events(client, user, [{"type": "poke", "tweet_id": 1}]).status_code == 422
    assert post_events(client, user, [{"type": "like"}]).status_code == 422
    assert post_events(client, user, []).status_code == 422
    assert post_events(client, user, [{"type": "like", "tweet_id": tweet["tweet_id"]}] * 101).status_code == 422
    assert (
        post_events(
            client, user, [{"type": "like", "tweet_id": tweet["tweet_id"], "created_at": "2031-01-01T00:00:00Z"}]
        ).status_code
        == 422
    )
    assert post_events(client, user, [{"type": "follow", "target_user_id": user}]).status_code == 422
    assert post_events(client, user, [{"type": "tweet", "tweet_id": tweet["tweet_id"]}]).status_code == 409
    huge = client.post(
        "/v1/events", content=b"{" + b" " * 300_000 + b"}", headers=auth(user) | {"content-type": "application/json"}
    )
    assert huge.status_code == 413
    refused = post_events(
        client,
        user,
        [{"type": "block", "target_user_id": tweet["author_id"]}, {"type": "like", "tweet_id": 8_999_999_999_999}],
    )
    assert refused.status_code == 404 and "events[1]" in refused.json()["detail"]
    assert r.xlen(EVENT_LOG) == 0 and not r.exists(rl.realtime_user_key(user, "blocked"))


def test_the_event_log_drains_into_raw_input_of_the_contract(api, tmp_path):
    from core.contract import RAW_TABLES_BY_NAME, arrow_schema
    from serving.events import drain_event_log

    client, r, version = api
    user, other = feed_users(r, version)[:2]
    tweet = feed_of(r, version, user)[0]
    posted = [
        {"type": "impression", "tweet_id": tweet["tweet_id"], "dwell_ms": 900, "created_at": "2026-01-02T03:04:05Z"},
        {"type": "like", "tweet_id": tweet["tweet_id"]},
        {"type": "mute", "target_user_id": other},
        {"type": "follow", "target_user_id": other},
        {"type": "unfollow", "target_user_id": other},
        {"type": "tweet", "tweet_id": 7_000_000_001, "text": "hello", "in_reply_to_tweet_id": tweet["tweet_id"]},
        {"type": "tweet", "tweet_id": 7_000_000_002, "text": "oops"},
        {"type": "delete_tweet", "tweet_id": 7_000_000_002},
    ]
    response = post_events(client, user, posted)
    assert response.status_code == 202 and response.json()["accepted"] == len(posted)
    raw = tmp_path / "raw"
    result = drain_event_log(r, raw, batch_events=5)
    assert result.events == len(posted) and r.xlen(EVENT_LOG) == 0

    def rows(table: str) -> list[dict]:
        files = sorted((raw / table).glob("*.parquet"))
        for f in files if table in RAW_TABLES_BY_NAME else ():
            assert pq.read_schema(f).remove_metadata() == arrow_schema(RAW_TABLES_BY_NAME[table]).remove_metadata()
        return [row for f in files for row in pq.read_table(f).to_pylist()]

    engagements = rows("engagements")
    assert [(e["user_id"], e["tweet_id"], e["action"], e["dwell_ms"]) for e in engagements] == [
        (user, tweet["tweet_id"], "impression", 900),
        (user, tweet["tweet_id"], "like", None),
    ]
    assert engagements[0]["created_at"].isoformat() == "2026-01-02T03:04:05+00:00"
    assert [(s["user_id"], s["target_user_id"], s["action"]) for s in rows("social_actions")] == [(user, other, "mute")]
    assert [(f["follower_id"], f["followee_id"]) for f in rows("follows")] == [(user, other)]
    tweets = {t["tweet_id"]: t for t in rows("tweets")}
    assert (
        tweets[7_000_000_001]["in_reply_to_tweet_id"] == tweet["tweet_id"]
        and tweets[7_000_000_001]["deleted_at"] is None
    )
    assert tweets[7_000_000_002]["deleted_at"] is not None
    assert [a["type"] for a in rows(ARCHIVE_DIR)] == [e["type"] for e in posted]  # every event, unfollow included
    assert drain_event_log(r, raw).events == 0


def test_who_to_follow_promoted_slots_and_conversation_modules(api):
    client, r, version = api
    inventory = published(r, rl.PROMOTED, version, rl.POPULAR_ID)
    assert inventory and inventory["tweet_ids"], "the test world has a placeholder ads inventory"
    assert inventory["bids"] == sorted(inventory["bids"], reverse=True)
    checked = {"who_to_follow": 0, "promoted": 0, "conversation": 0}
    for user in feed_users(r, version):
        if len(feed_of(r, version, user)) < 40:
            continue
        following = set(published(r, rl.FOLLOWING, version, user)["followee_ids"])
        hidden = published(r, rl.BLOCKED_MUTED, version, user) or {"blocked_ids": [], "muted_ids": []}
        hidden = set(hidden["blocked_ids"]) | set(hidden["muted_ids"])
        entries = client.get(f"/v1/users/{user}/timelines/for_you", headers=auth(user)).json()["items"]
        suggestions = published(r, rl.WHO_TO_FOLLOW, version, user)
        expected_users = [
            u for u in (suggestions or {"user_ids": []})["user_ids"] if u not in following | hidden | {user}
        ][:3]
        if expected_users:
            assert entries[4]["type"] == "who_to_follow"
            assert [int(u["user_id"]) for u in entries[4]["users"]] == expected_users
            again = client.get(f"/v1/users/{user}/timelines/for_you", headers=auth(user)).json()["items"]
            assert "who_to_follow" not in {e["type"] for e in again}, "shown again within the interval"
            checked["who_to_follow"] += 1
        organic = {int(t["tweet_id"]) for e in entries if e["type"] != "promoted" for t in entry_tweets(e)}
        expected_ads = [
            t
            for t, a in zip(inventory["tweet_ids"], inventory["advertiser_ids"])
            if t not in organic and a != user and a not in hidden
        ][:2]
        ads = [(i + 1, int(e["tweet_id"])) for i, e in enumerate(entries) if e["type"] == "promoted"]
        assert ads == list(zip((3, 15), expected_ads))
        checked["promoted"] += bool(ads)
        for entry in (e for e in entries if e["type"] == "conversation"):
            chain = entry["tweets"]
            assert 2 <= len(chain) <= 3
            for parent, child in zip(chain, chain[1:]):
                assert child["in_reply_to_tweet_id"] == parent["tweet_id"]
            checked["conversation"] += 1
        clear_request_state(r)
        if all(checked.values()) and sum(checked.values()) >= 6:
            break
    assert all(checked.values()), checked


def test_social_context_names_the_proof(api):
    client, r, version = api
    found = 0
    for user in feed_users(r, version)[:30]:
        feed = {i["tweet_id"]: i for i in feed_of(r, version, user)}
        for item in ranked_tweets(
            client.get(f"/v1/users/{user}/timelines/for_you", headers=auth(user)).json()["items"]
        ):
            proof = feed[int(item["tweet_id"])]["social_proof_user_ids"]
            if proof:
                handle = published(r, rl.PROFILES, version, proof[0])["handle"]
                assert item["social_context"] in (f"liked by @{handle}", f"followed by @{handle}")
                found += 1
            else:
                assert item["social_context"] is None
    assert found


def test_a_user_without_a_feed_gets_the_fallback(api):
    client, r, version = api
    user = next(u for u in feed_users(r, version) if published(r, rl.FOLLOWING, version, u))
    feed = r.get(rl.FEEDS.key(version, user))
    r.delete(rl.FEEDS.key(version, user))  # as for a user who joined after the build
    try:
        response = client.get(f"/v1/users/{user}/timelines/for_you", headers=auth(user))
    finally:
        r.set(rl.FEEDS.key(version, user), feed)
    assert response.status_code == 200
    body = response.json()
    assert body["fallback"] and body["items"]
    followees = set(published(r, rl.FOLLOWING, version, user)["followee_ids"])
    popular = set(published(r, rl.POPULAR, version, rl.POPULAR_ID)["tweet_ids"])
    for item in ranked_tweets(body["items"]):
        assert int(item["author"]["user_id"]) in followees or int(item["tweet_id"]) in popular
    assert 'homefeed_fallbacks_total{reason="no_feed"}' in client.get("/metrics").text


def test_an_unreadable_feed_fails_open_to_the_fallback(api):
    client, r, version = api
    user = feed_users(r, version)[4]
    key = rl.FEEDS.key(version, user)
    original = r.get(key)
    r.set(key, b"\x93\x01\x02")  # msgpack of another layout
    try:
        body = client.get(f"/v1/users/{user}/timelines/for_you", headers=auth(user)).json()
        assert body["fallback"] and body["items"]
        assert 'homefeed_fallbacks_total{reason="source_failed"}' in client.get("/metrics").text
    finally:
        r.set(key, original)


def test_following_is_newest_first_from_followees_and_pages_do_not_overlap(api):
    client, r, version = api
    user = max(
        feed_users(r, version),
        key=lambda u: len((published(r, rl.FOLLOWING, version, u) or {"followee_ids": []})["followee_ids"]),
    )
    followees = set(published(r, rl.FOLLOWING, version, user)["followee_ids"])
    timelines = [published(r, rl.AUTHOR_TWEETS, version, a) for a in followees]
    newest_first = [
        t
        for _, t in sorted(
            ((c, t) for rec in timelines if rec for t, c in zip(rec["tweet_ids"], rec["created_at_ms"])), reverse=True
        )
    ]
    pages = all_pages(client, f"/v1/users/{user}/timelines/following", auth(user), count=10)
    served = [int(item["tweet_id"]) for page in pages for item in page["items"]]
    removed = sum(sum(page["filtered"].values()) for page in pages)
    assert len(served) == len(set(served)) and len(served) + removed == len(newest_first)
    assert served == [t for t in newest_first if t in set(served)]


def test_lists_respect_privacy(api):
    client, r, version = api
    lists = [rl.LISTS.id_of(k) for k in r.scan_iter(match=f"hf:v{version}:*:list", count=1000)]
    records = {i: published(r, rl.LISTS, version, i) for i in lists}
    public = next(i for i, rec in records.items() if not rec["is_private"])
    outsider = 10**9
    response = client.get(f"/v1/lists/{public}/timeline", headers=auth(outsider))
    assert response.status_code == 200
    timeline = published(r, rl.LIST_TIMELINES, version, public) or {"tweet_ids": []}
    served = [int(item["tweet_id"]) for item in response.json()["items"]]
    assert served == [t for t in timeline["tweet_ids"] if t in served]  # newest first, as published
    private = [i for i, rec in records.items() if rec["is_private"]]
    assert private, "the test world has a private list"
    record = records[private[0]]
    assert client.get(f"/v1/lists/{private[0]}/timeline", headers=auth(outsider)).status_code == 403
    assert client.get(f"/v1/lists/{private[0]}/timeline", headers=auth(record["owner_id"])).status_code == 200
    assert client.get("/v1/lists/999999999/timeline", headers=auth(outsider)).status_code == 404


def test_auth_cursor_and_parameter_errors(api):
    client, r, version = api
    user = feed_users(r, version)[0]
    path = f"/v1/users/{user}/timelines/for_you"
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer hf1.1.99999999999.user.AAAA"}).status_code == 401
    other = mint_token(user, "another-secret-of-16", now=time.time())
    assert client.get(path, headers={"Authorization": f"Bearer {other}"}).status_code == 401
    expired = mint_token(user, SECRET, now=time.time() - 100, ttl_seconds=10)
    assert client.get(path, headers={"Authorization": f"Bearer {expired}"}).json()["detail"] == "token expired"
    assert client.get(path, headers=auth(user + 1)).status_code == 403
    cursor = client.get(path, params={"count": 2}, headers=auth(user)).json()["next_cursor"]
    tampered = cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB")
    assert client.get(path, params={"cursor": tampered}, headers=auth(user)).status_code == 400
    assert client.get(path, params={"cursor": "!!not-base64!!"}, headers=auth(user)).status_code == 400
    following = f"/v1/users/{user}/timelines/following"
    assert client.get(following, params={"cursor": cursor}, headers=auth(user)).status_code == 400  # another timeline's
    assert client.get(path, params={"count": 0}, headers=auth(user)).status_code == 422
    assert client.get(path, params={"count": 101}, headers=auth(user)).status_code == 422
    assert client.get("/v1/users/0/timelines/for_you", headers=auth(0)).status_code == 422


def test_readiness_metrics_and_openapi(api):
    client, _, version = api
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["version"] == version
    metrics = client.get("/metrics").text
    assert 'homefeed_requests_total{endpoint="/v1/users/{user_id}/timelines/for_you",status="200"}' in metrics
    assert "homefeed_stage_seconds_bucket" in metrics and "homefeed_filtered_candidates_total" in metrics
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/v1/users/{user_id}/timelines/for_you",
        "/v1/users/{user_id}/timelines/following",
        "/v1/lists/{list_id}/timeline",
        "/v1/events",
        "/debug/users/{user_id}/for_you",
        "/healthz",
        "/readyz",
        "/metrics",
    } <= set(paths)


def test_the_explain_page_renders_in_headless_chromium(api, tmp_path):
    from core.setup_checks import ensure_chromium

    client, r, version = api
    user = feed_users(r, version)[5]
    feed = feed_of(r, version, user)
    post_events(client, user, [{"type": "impression", "tweet_id": feed[0]["tweet_id"]}])
    assert client.get(f"/debug/users/{user}/for_you", headers=auth(user + 1)).status_code == 403
    admin = mint_token(10**9, SECRET, now=time.time(), admin=True)
    response = client.get(f"/debug/users/{user}/for_you", params={"access_token": admin})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert f"<tr><td>seen</td><td>{feed[0]['tweet_id']}</td>" in html  # the removed candidate, with its filter
    first_page = client.get(f"/v1/users/{user}/timelines/for_you", headers=auth(user)).json()["items"]
    for item in ranked_tweets(first_page)[:5]:
        assert f"<td>{item['tweet_id']}</td>" in html
    screenshot = tmp_path / "explain.png"
    url = f"{client.base_url}/debug/users/{user}/for_you?access_token={admin}"
    subprocess.run(
        [
            str(ensure_chromium()),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={screenshot}",
            "--window-size=1400,1000",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    png = screenshot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000  # a rendered table, not a blank page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(screenshot, ARTIFACTS / "explain_page.png")


@hypothesis_settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_invariants_no_blocked_author_and_no_repeat_across_pages(api, data):
    client, r, version = api
    users = feed_users(r, version)
    user = data.draw(st.sampled_from(users[:40]), label="user")
    authors = sorted({item["author_id"] for item in feed_of(r, version, user)})
    blocked = data.draw(st.lists(st.sampled_from(authors), max_size=5, unique=True), label="blocked")
    count = data.draw(st.integers(min_value=1, max_value=50), label="count")
    try:
        if blocked:
            kinds = data.draw(
                st.lists(st.sampled_from(["block", "mute"]), min_size=len(blocked), max_size=len(blocked)),
                label="kinds",
            )
            assert (
                post_events(
                    client, user, [{"type": k, "target_user_id": a} for k, a in zip(kinds, blocked)]
                ).status_code
                == 202
            )
        pages = all_pages(client, f"/v1/users/{user}/timelines/for_you", auth(user), count=count)
        shown = shown_ids(pages)
        assert len(shown) == len(set(shown))
        served_authors = {int(t["author"]["user_id"]) for p in pages for e in p["items"] for t in entry_tweets(e)}
        assert served_authors.isdisjoint(blocked)
    finally:
        clear_request_state(r)


def test_redis_down_is_a_quick_503_and_the_default_secret_is_refused_in_production(tmp_path):
    process = api_server(f"redis://127.0.0.1:{free_port()}/0", tmp_path)
    try:
        start = time.monotonic()
        response = httpx.get(f"{process.base_url}/v1/users/1/timelines/for_you", headers=auth(1), timeout=30)
        assert response.status_code == 503 and "Redis unavailable" in response.json()["detail"]
        assert httpx.get(f"{process.base_url}/readyz", timeout=30).status_code == 503
        assert time.monotonic() - start < 10
    finally:
        process.stop()
    from core.settings import DEVELOPMENT_SECRET

    with pytest.raises(RuntimeError, match="HOMEFEED_SECRET"):
        api_server("redis://127.0.0.1:1/0", tmp_path, secret=DEVELOPMENT_SECRET)


def test_the_token_command_mints_a_token_the_api_accepts_and_refuses_the_default_secret(api, monkeypatch, capsys):
    from cli.main import main
    from serving.auth import verify_token

    client, r, version = api
    user = feed_users(r, version)[0]
    monkeypatch.setenv("HOMEFEED_SECRET", SECRET)
    assert main(["token", str(user), "--days", "1"]) == 0
    token = capsys.readouterr().out.strip()
    assert verify_token(token, SECRET, now=time.time()).user_id == user
    assert (
        client.get(f"/v1/users/{user}/timelines/for_you", headers={"Authorization": f"Bearer {token}"}).status_code
        == 200
    )
    monkeypatch.delenv("HOMEFEED_SECRET")
    monkeypatch.setenv("HOMEFEED_ENV", "production")
    assert main(["token", str(user)]) == 2
    assert "HOMEFEED_SECRET" in capsys.readouterr().err


def test_the_demos_serving_step_starts_the_api_and_shows_a_for_you_page(published_redis, tmp_path, monkeypatch, capsys):
    import os
    import re
    import signal

    from cli.demo import _serve_demo
    from core.settings import load_settings

    server, version = published_redis
    port = free_port()
    monkeypatch.delenv("HOMEFEED_SECRET", raising=False)
    settings = load_settings(redis_url=server.url)
    assert _serve_demo(settings, tmp_path, port=port) == 0
    out = capsys.readouterr().out
    pid = int(re.search(r"started the API \(pid (\d+)", out).group(1))
    try:
        user = min(feed_users(redis.Redis.from_url(server.url), version))
        assert f"For You of user {user}, first 10 entries:" in out and "  1. " in out
        explain = re.search(r"explain page:  (\S+)", out).group(1)
        assert httpx.get(explain, timeout=30).status_code == 200
        assert re.search(rf"API docs:\s+http://127.0.0.1:{port}/docs", out) and "Dagster UI:" in out
    finally:
        os.kill(pid, signal.SIGTERM)
        clear_request_state(redis.Redis.from_url(server.url))
