"""Versioned, all-or-nothing publication of the ranked feeds to Redis, and rollback.

A publication writes a whole new version under new keys (pipelined batches), verifies it (the
number of feeds and an order-independent checksum of every key and value, read back from Redis,
against the same computed from the Delta table), and only then switches the current-version
pointer, atomically (a Lua script that also checks nobody else switched it meanwhile). Readers
follow the pointer, so they see the old version complete or the new one complete, never a mix.
Versions other than the current and the previous one expire after a grace period. A publication
that stops anywhere before the switch leaves the pointer, and so what is served, as it was; the
keys it wrote expire.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa

from serving.redis_layout import (
    CURRENT,
    FEED_ITEM_FIELDS,
    HISTORY,
    VERSION_COUNTER,
    encode_feed,
    feed_key,
    manifest_key,
    version_pattern,
)

DEFAULT_GRACE_SECONDS = 3600
_SOURCE_COLUMNS = {"created_at_ms": "epoch_ms(tweet_created_at)"}

# Switch the pointer only if it still names the version this publication started from.
_SWITCH = """
local current = redis.call('HGET', KEYS[1], 'version')
if (current or '') ~= ARGV[1] then return redis.error_reply('the current version changed to ' .. tostring(current) .. ' during the publication') end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3 + 1])
return 1
"""


class PublishError(RuntimeError):
    """A publication or rollback that did not happen; what is served is unchanged."""


@dataclass(frozen=True)
class PublishResult:
    version: int
    previous_version: int | None
    users: int
    items: int
    bytes: int
    checksum: str
    seconds: float
    published_at: str


def connect(url: str, *, timeout_seconds: float = 5.0):
    """A Redis client that fails within `timeout_seconds` when the server is down, and is checked now."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout_seconds, socket_timeout=timeout_seconds * 6)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise PublishError(f"Redis at {url} is unreachable ({exc}); nothing changed") from exc
    return client


def feed_batches(table_path: Path, *, batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
    """The ranked_feeds rows ordered by (user_id, rank), as Arrow batches of user_id + FEED_ITEM_FIELDS
    (DuckDB over the Delta table's current Parquet files)."""
    import duckdb
    from deltalake import DeltaTable

    files = DeltaTable(str(table_path)).file_uris()
    if not files:
        return iter(())
    columns = ", ".join(f"{_SOURCE_COLUMNS.get(name, name)} AS {name}" for name in FEED_ITEM_FIELDS)
    con = duckdb.connect()
    reader = con.sql(f"SELECT user_id, {columns} FROM read_parquet($1) ORDER BY user_id, rank", params=[files]) \
        .to_arrow_reader(batch_rows)
    return iter(reader)


def user_feeds(batches) -> Iterator[tuple[int, list[list]]]:
    """(user_id, items) per user, from batches ordered by user_id (a user may span batches)."""
    user, items = None, []
    for batch in batches:
        columns = [batch.column(name).to_pylist() for name in FEED_ITEM_FIELDS]
        for user_id, *item in zip(batch.column("user_id").to_pylist(), *columns):
            if user_id != user:
                if user is not None:
                    yield user, items
                user, items = user_id, []
            items.append(item)
    if user is not None:
        yield user, items


def _digest(key: str, value: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode() + b"\0" + value, digest_size=8).digest(), "big")


def _checksum(total: int) -> str:
    return f"{total % (1 << 64):016x}"


def _decoded(value) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def current_pointer(client) -> dict[str, str]:
    return {_decoded(k): _decoded(v) for k, v in client.hgetall(CURRENT).items()}


def publish_feeds(client, table_path: Path, *, grace_seconds: int = DEFAULT_GRACE_SECONDS, batch_keys: int = 500,
                  metadata: dict[str, str] | None = None, fail_after_users: int | None = None) -> PublishResult:
    """Publish `table_path` (ranked_feeds) as a new version and make it current (module docstring).
    `fail_after_users` stops the publication midway on purpose (for tests of interruption)."""
    import redis

    started = time.monotonic()
    pointer = current_pointer(client)
    previous = int(pointer["version"]) if pointer.get("version") else None
    version = int(client.incr(VERSION_COUNTER))
    client.hset(manifest_key(version), mapping={"state": "writing", "started_at": _now()})
    users = items = size = total = 0
    try:
        pipe = client.pipeline(transaction=False)
        for user_id, feed in user_feeds(feed_batches(table_path)):
            key, value = feed_key(version, user_id), encode_feed(feed)
            pipe.set(key, value)
            users, items, size, total = users + 1, items + len(feed), size + len(value), total + _digest(key, value)
            if users % batch_keys == 0:
                pipe.execute()
                if fail_after_users is not None and users >= fail_after_users:
                    raise PublishError(f"stopped on purpose after {users} feeds")
        pipe.execute()
        checksum = _checksum(total)
        verify_version(client, version, users=users, checksum=checksum, batch_keys=batch_keys)
        published_at = _now()
        client.hset(manifest_key(version), mapping={
            "state": "verified", "users": users, "items": items, "bytes": size, "checksum": checksum})
        fields = {"version": version, "previous": previous if previous is not None else "", "published_at": published_at,
                  "users": users, "items": items, "checksum": checksum, **(metadata or {})}
        flat = [str(x) for kv in fields.items() for x in kv]
        client.eval(_SWITCH, 2, CURRENT, HISTORY, "" if previous is None else str(previous), str(time.time()), *flat)
        client.hset(manifest_key(version), "state", "published")
    except (redis.RedisError, PublishError) as exc:
        _discard(client, version, grace_seconds)
        served = f"version {previous} is still served" if previous is not None else "nothing was published before"
        if isinstance(exc, redis.ResponseError) and ("OOM" in str(exc) or "maxmemory" in str(exc)):
            raise PublishError(f"Redis is out of memory (maxmemory) after {users} feeds of version {version}: "
                               f"the version is discarded; {served}") from exc
        raise PublishError(f"publication of version {version} failed after {users} feeds ({exc}); {served}") from exc
    expire_old_versions(client, keep={version, previous}, below=version, grace_seconds=grace_seconds)
    return PublishResult(version, previous, users, items, size, checksum, round(time.monotonic() - started, 3),
                         published_at)


def verify_version(client, version: int, *, users: int, checksum: str, batch_keys: int = 500) -> None:
    """Every feed key of `version` read back: their number and checksum must match the source's."""
    found = total = 0
    keys = list(client.scan_iter(match=f"{version_pattern(version)}", count=batch_keys))
    feed_keys = [k for k in keys if _decoded(k).endswith(":feed")]
    for start in range(0, len(feed_keys), batch_keys):
        chunk = feed_keys[start:start + batch_keys]
        for key, value in zip(chunk, client.mget(chunk) if _same_slot_free(client) else [client.get(k) for k in chunk]):
            if value is not None:
                found, total = found + 1, total + _digest(_decoded(key), value)
    if found != users or _checksum(total) != checksum:
        raise PublishError(f"verification of version {version} failed: {found} feeds with checksum {_checksum(total)} "
                           f"in Redis, {users} with checksum {checksum} from the table")


def _same_slot_free(client) -> bool:
    """MGET across slots works on a single Redis, not on a cluster."""
    return not getattr(client, "nodes_manager", None)


def _discard(client, version: int, grace_seconds: int) -> None:
    """Best effort: mark an unfinished version discarded and let its keys expire."""
    import redis

    try:
        client.hset(manifest_key(version), "state", "discarded")
        expire_version(client, version, grace_seconds)
    except redis.RedisError:
        pass  # Redis is gone; the keys were never pointed at, and the next publication expires them


def expire_version(client, version: int, seconds: int) -> int:
    count = 0
    pipe = client.pipeline(transaction=False)
    for key in client.scan_iter(match=version_pattern(version), count=1000):
        pipe.expire(key, seconds)
        count += 1
    pipe.execute()
    return count


def expire_old_versions(client, *, keep: set[int | None], below: int, grace_seconds: int) -> list[int]:
    """Every version below `below` still holding keys, other than `keep`, expires after the grace period
    (interrupted publications included)."""
    expired = []
    for v in range(1, below):
        if v in keep:
            continue
        if client.exists(manifest_key(v)) and client.ttl(manifest_key(v)) == -1:
            expire_version(client, v, grace_seconds)
            expired.append(v)
    return expired


def rollback(client, *, grace_seconds: int = DEFAULT_GRACE_SECONDS) -> dict[str, str]:
    """Make the previous version current again (its feeds must all still be there); the version rolled
    back from becomes the previous one. Returns the new pointer."""
    pointer = current_pointer(client)
    if not pointer.get("previous"):
        raise PublishError("no previous version to roll back to" if pointer else "nothing is published")
    target, current = int(pointer["previous"]), int(pointer["version"])
    manifest = {_decoded(k): _decoded(v) for k, v in client.hgetall(manifest_key(target)).items()}
    if manifest.get("state") != "published":
        raise PublishError(f"version {target} is not a complete published version (state {manifest.get('state')})")
    verify_version(client, target, users=int(manifest["users"]), checksum=manifest["checksum"])
    fields = {**pointer, "version": target, "previous": current, "users": manifest["users"],
              "items": manifest["items"], "checksum": manifest["checksum"], "published_at": _now(),
              "rolled_back_from": current}
    flat = [str(x) for kv in fields.items() for x in kv]
    client.eval(_SWITCH, 2, CURRENT, HISTORY, str(current), str(time.time()), *flat)
    return current_pointer(client)


def publication_status(client) -> dict:
    pointer = current_pointer(client)
    return {
        "published_version": int(pointer["version"]) if pointer.get("version") else None,
        "previous_version": int(pointer["previous"]) if pointer.get("previous") else None,
        "users_published": int(pointer["users"]) if pointer.get("users") else 0,
        "published_at": pointer.get("published_at"),
        **{k: v for k, v in pointer.items() if k not in ("version", "previous", "users", "published_at")},
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
