"""Serving from a Redis Cluster: the ranked test world published by the real publisher into a local
cluster of three masters (Debian's redis-server, `core.redis_server.start_redis_cluster`), and the
real API under uvicorn against it (HOMEFEED_REDIS_CLUSTER=1) answering as the same API against a
single Redis holding the same publication (`published_redis`)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import httpx
import pytest
import redis
from conftest import start_test_api

from core import redis_layout as rl
from jobs.publish import PublishError, connect, current_pointer, rollback
from orchestration.publication import publish_to_redis
from serving.auth import mint_token
from serving.events import drain_event_log

SECRET = "cluster-test-secret-" + uuid.uuid4().hex


@dataclass
class Apis:
    on_cluster: httpx.Client
    on_single: httpx.Client
    single: redis.Redis  # the single Redis, to read what was published
    version: int

    def both(self, method: str, path: str, user: int, **kwargs) -> tuple[httpx.Response, httpx.Response]:
        """The same request to the API on the cluster, then to the one on the single Redis."""
        headers = auth(user)
        return (
            self.on_cluster.request(method, path, headers=headers, **kwargs),
            self.on_single.request(method, path, headers=headers, **kwargs),
        )


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory):
    from core.redis_server import start_redis_cluster

    cluster = start_redis_cluster(tmp_path_factory.mktemp("redis-cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def cluster_version(redis_cluster, ranked_build) -> int:
    settings, _ = ranked_build
    return publish_to_redis(redis_cluster.url, settings.tables_dir, cluster=True).version


@pytest.fixture(scope="module")
def apis(redis_cluster, cluster_version, published_redis, tmp_path_factory):
    single, version = published_redis
    assert cluster_version == version  # both Redis hold their first publication
    on_cluster = start_test_api(redis_cluster.url, tmp_path_factory.mktemp("api-cluster"), secret=SECRET, cluster=True)
    on_single = start_test_api(single.url, tmp_path_factory.mktemp("api-single"), secret=SECRET)
    with (
        httpx.Client(base_url=on_cluster.base_url, timeout=30) as c,
        httpx.Client(base_url=on_single.base_url, timeout=30) as s,
    ):
        yield Apis(c, s, redis.Redis.from_url(single.url), version)
    on_cluster.stop()
    on_single.stop()


def auth(user_id: int) -> dict:
    return {"Authorization": f"Bearer {mint_token(user_id, SECRET, now=time.time())}"}


def entry_ids(entry: dict) -> tuple:
    """What an entry shows: its type and its tweets (or suggested users), in order."""
    if entry["type"] == "who_to_follow":
        return "who_to_follow", tuple(u["user_id"] for u in entry["users"])
    tweets = entry["tweets"] if entry["type"] == "conversation" else [entry]
    return entry["type"], tuple((t["tweet_id"], t["author"]["user_id"], t["text"]) for t in tweets)


def shown(page: dict) -> dict:
    """A page as compared across the two APIs (scores may differ by the milliseconds between the two
    requests' clocks; what is shown, in what order, and what was filtered may not)."""
    return {
        "items": [entry_ids(e) for e in page["items"]],
        "filtered": page["filtered"],
        "fallback": page.get("fallback"),
        "more": page["next_cursor"] is not None,
    }


def pages_of_both(apis: Apis, path: str, user: int, count: int) -> tuple[list[dict], list[dict]]:
    """Every page of `path` from each API, each following its own cursors."""
    found: tuple[list[dict], list[dict]] = ([], [])
    for client, pages in zip((apis.on_cluster, apis.on_single), found):
        cursor = None
        while True:
            response = client.get(
                path, params={"count": count} | ({"cursor": cursor} if cursor else {}), headers=auth(user)
            )
            assert response.status_code == 200, response.text
            pages.append(response.json())
            cursor = pages[-1]["next_cursor"]
            if cursor is None or len(pages) == 50:
                break
    return found


def ranked_tweets(page: dict) -> list[dict]:
    return [
        e if e["type"] == "tweet" else e["tweets"][-1] for e in page["items"] if e["type"] in ("tweet", "conversation")
    ]


def published(r: redis.Redis, space: rl.KeySpace, version: int, id_: int) -> dict | None:
    value = r.get(space.key(version, id_))
    return None if value is None else space.decode(value)


def ids_of(r: redis.Redis, space: rl.KeySpace, version: int) -> list[int]:
    return sorted(space.id_of(k) for k in r.scan_iter(match=f"hf:v{version}:*:{space.suffix}", count=1000))


def node_keys(port: int, pattern: str) -> list[bytes]:
    """The keys one node holds (a plain client on that node: no redirection)."""
    return list(redis.Redis(port=port).scan_iter(match=pattern, count=1000))


def test_a_plain_client_on_a_cluster_node_is_refused_and_a_socket_cannot_name_a_cluster(redis_cluster):
    from core.settings import load_settings

    with pytest.raises(PublishError, match="HOMEFEED_REDIS_CLUSTER=1"):
        connect(redis_cluster.url)
    with pytest.raises(ValueError, match="HOMEFEED_REDIS_CLUSTER"):
        load_settings(redis_url="unix:///tmp/redis.sock", redis_cluster=True)


def test_the_publication_spreads_over_every_node_and_equals_the_one_on_a_single_redis(
    redis_cluster, cluster_version, published_redis
):
    single, version = published_redis
    on_cluster = current_pointer(connect(redis_cluster.url, cluster=True))
    on_single = current_pointer(redis.Redis.from_url(single.url))
    same = ("version", "users", "items", "keys", "checksum", "datasets", "table_version")
    assert {k: on_cluster[k] for k in same} == {k: on_single[k] for k in same}
    per_node = {port: len(node_keys(port, f"{rl.version_prefix(version)}:*")) for port in redis_cluster.ports}
    assert sum(per_node.values()) == int(on_cluster["keys"])
    assert all(count > int(on_cluster["keys"]) / 10 for count in per_node.values()), per_node


def test_for_you_following_and_lists_answer_as_on_a_single_redis(apis):
    r, version = apis.single, apis.version
    feeds = ids_of(r, rl.FEEDS, version)
    for user in (feeds[0], feeds[len(feeds) // 2]):
        on_cluster, on_single = apis.both("GET", f"/v1/users/{user}/timelines/for_you", user)
        assert on_cluster.status_code == on_single.status_code == 200, on_cluster.text
        assert shown(on_cluster.json()) == shown(on_single.json()) and on_cluster.json()["items"]
    user = feeds[-1]
    cluster_pages, single_pages = pages_of_both(apis, f"/v1/users/{user}/timelines/for_you", user, count=20)
    assert [shown(p) for p in cluster_pages] == [shown(p) for p in single_pages] and len(cluster_pages) > 1

    no_feed = [u for u in ids_of(r, rl.FOLLOWING, version) if u not in set(feeds)]
    for user in no_feed[:1]:  # the fallback: followees' recent tweets and the popular ones
        on_cluster, on_single = apis.both("GET", f"/v1/users/{user}/timelines/for_you", user)
        assert on_cluster.json()["fallback"] and shown(on_cluster.json()) == shown(on_single.json())

    user = max(
        feeds, key=lambda u: len((published(r, rl.FOLLOWING, version, u) or {"followee_ids": []})["followee_ids"])
    )
    cluster_pages, single_pages = pages_of_both(apis, f"/v1/users/{user}/timelines/following", user, count=10)
    assert [shown(p) for p in cluster_pages] == [shown(p) for p in single_pages] and cluster_pages[0]["items"]

    lists = {i: published(r, rl.LISTS, version, i) for i in ids_of(r, rl.LISTS, version)}
    assert lists
    for list_id, record in list(lists.items())[:4]:
        on_cluster, on_single = apis.both("GET", f"/v1/lists/{list_id}/timeline", record["owner_id"])
        assert on_cluster.status_code == on_single.status_code == 200, on_cluster.text
        assert shown(on_cluster.json()) == shown(on_single.json())
    private = next(i for i, rec in lists.items() if rec["is_private"])
    assert [x.status_code for x in apis.both("GET", f"/v1/lists/{private}/timeline", 10**9)] == [403, 403]
    assert apis.on_cluster.get("/readyz").json()["version"] == version


def test_events_apply_on_the_cluster_as_on_a_single_redis(apis, redis_cluster, tmp_path):
    r, version = apis.single, apis.version
    feeds = ids_of(r, rl.FEEDS, version)
    user = feeds[1]
    # Both APIs serve the first page: serving one leaves state behind (who-to-follow is not shown again soon).
    on_cluster, on_single = apis.both("GET", f"/v1/users/{user}/timelines/for_you", user)
    assert shown(on_cluster.json()) == shown(on_single.json())
    first = ranked_tweets(on_cluster.json())
    blocked = int(first[0]["author"]["user_id"])
    seen = next(t for t in first[1:] if int(t["author"]["user_id"]) != blocked)
    following = set(published(r, rl.FOLLOWING, version, user)["followee_ids"])
    hidden = published(r, rl.BLOCKED_MUTED, version, user) or {"blocked_ids": []}
    newcomer = next(
        u
        for u in ids_of(r, rl.PROFILES, version)
        if u not in following | {user, blocked} and u not in hidden["blocked_ids"]
    )
    fresh, gone = 9_100_000_000 + int(time.time()), 9_200_000_000 + int(time.time())
    batches = [  # (poster, events): keys of the user's slot, the tweets' slots, {rt} and {events} together
        (
            user,
            [
                {"type": "block", "target_user_id": blocked},
                {"type": "impression", "tweet_id": int(seen["tweet_id"]), "dwell_ms": 900},
                {"type": "follow", "target_user_id": newcomer},
            ],
        ),
        (
            newcomer,
            [
                {"type": "tweet", "tweet_id": fresh, "text": "posted to a cluster"},
                {"type": "tweet", "tweet_id": gone, "text": "deleted at once"},
            ],
        ),
        (newcomer, [{"type": "delete_tweet", "tweet_id": gone}]),
    ]
    for poster, events in batches:
        on_cluster, on_single = apis.both("POST", "/v1/events", poster, json={"events": events})
        assert on_cluster.status_code == on_single.status_code == 202, on_cluster.text
        assert on_cluster.json()["accepted"] == len(events) == len(on_cluster.json()["log_ids"])

    cluster_pages, single_pages = pages_of_both(apis, f"/v1/users/{user}/timelines/for_you", user, count=35)
    assert [shown(p) for p in cluster_pages] == [shown(p) for p in single_pages]
    served = [t for p in cluster_pages for t in ranked_tweets(p)]
    assert blocked not in {int(t["author"]["user_id"]) for t in served}
    assert seen["tweet_id"] not in {t["tweet_id"] for t in served}
    assert [t["sources"] for t in served if t["tweet_id"] == str(fresh)] == [["fresh"]]
    on_cluster, on_single = apis.both("GET", f"/v1/users/{user}/timelines/following", user)
    assert shown(on_cluster.json()) == shown(on_single.json())
    assert on_cluster.json()["items"][0]["tweet_id"] == str(fresh)
    assert str(gone) not in {i["tweet_id"] for i in on_cluster.json()["items"]}

    drained = drain_event_log(connect(redis_cluster.url, cluster=True), tmp_path / "raw")
    assert drained.events == sum(len(events) for _, events in batches)
    assert drained.rows_per_table["tweets"] == 2 and drained.rows_per_table["social_actions"] == 1


def test_republication_a_failed_one_rollback_and_retention_on_the_cluster(
    redis_cluster, cluster_version, ranked_build, monkeypatch
):
    import jobs.publish

    settings, _ = ranked_build
    client = connect(redis_cluster.url, cluster=True)
    second = publish_to_redis(redis_cluster.url, settings.tables_dir, cluster=True)
    assert (second.version, second.previous_version) == (cluster_version + 1, cluster_version)

    def refuse(*_, **__):
        raise PublishError("verification refused by the test")

    monkeypatch.setattr(jobs.publish, "verify_version", refuse)
    with pytest.raises(PublishError, match=f"version {second.version} is still served"):
        publish_to_redis(redis_cluster.url, settings.tables_dir, cluster=True)
    monkeypatch.undo()
    failed = second.version + 1
    assert current_pointer(client)["version"] == str(second.version)
    assert not list(client.scan_iter(match=f"{rl.version_prefix(failed)}:*", count=1000))  # deleted on every node
    assert not client.exists(rl.manifest_key(failed)) and str(failed).encode() not in client.smembers(rl.LIVE)

    pointer = rollback(client)  # every key of the first version found across the nodes and verified
    assert (pointer["version"], pointer["previous"]) == (str(cluster_version), str(second.version))

    third = publish_to_redis(redis_cluster.url, settings.tables_dir, cluster=True, grace_seconds=600)
    assert third.previous_version == cluster_version
    replaced = ttls(client, rl.version_prefix(second.version))
    assert len(replaced) == second.keys and all(0 < ttl <= 600 for ttl in replaced)  # expiring, on every node
    assert set(ttls(client, rl.version_prefix(cluster_version))) == {-1}  # the previous version stays


def ttls(client, prefix: str) -> list[int]:
    """The TTL of every key under `prefix`, found on every node, read in one pipeline."""
    pipe = client.pipeline(transaction=False)
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        pipe.ttl(key)
    return pipe.execute()


def test_a_node_down_is_a_quick_503(apis, redis_cluster):
    """Last: stops the node that holds the pointer (no replicas: its slots are lost)."""
    node = connect(redis_cluster.url, cluster=True).get_node_from_key(rl.CURRENT)
    next(n for n in redis_cluster.nodes if n.port == node.port).stop()
    time.sleep(1.1)  # past the API's cached pointer
    user = ids_of(apis.single, rl.FEEDS, apis.version)[0]
    started = time.monotonic()
    response = apis.on_cluster.get(f"/v1/users/{user}/timelines/for_you", headers=auth(user))
    assert response.status_code == 503 and "Redis unavailable" in response.json()["detail"], response.text
    assert apis.on_cluster.get("/readyz").status_code == 503
    assert time.monotonic() - started < 15
