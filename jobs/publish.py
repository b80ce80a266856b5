"""Versioned, all-or-nothing publication of the ranked feeds to Redis, and rollback.

A publication writes a whole new version under new keys (pipelined batches), verifies it (the
number of feeds and an order-independent checksum of every key and value, read back from Redis,
against the same computed from the Delta table), and only then switches the current-version
pointer, atomically: one Lua script checks that nobody switched it meanwhile, replaces it, and
marks the version published. Readers follow the pointer, so they see the old version complete or
the new one complete, never a mix. The previous version stays for a rollback; older ones expire
after a grace period. A publication that stops anywhere before the switch leaves the pointer, and
so what is served, as it was; the keys it wrote are deleted (or, if it was killed, by the next
publication).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa

from serving.redis_layout import (
    CURRENT,
    FEED_ITEM_FIELDS,
    HISTORY,
    LIVE,
    VERSION_COUNTER,
    encode_feed,
    feed_key,
    manifest_key,
    version_pattern,
)

DEFAULT_GRACE_SECONDS = 3600
POINTER_FIELDS = ("version", "previous", "published_at", "users", "items", "checksum")
_SOURCE_COLUMNS = {"created_at_ms": "epoch_ms(tweet_created_at)"}

# KEYS: pointer, history, manifest of the new version. ARGV: the version the pointer must still name
# ('' for none), now (epoch seconds), the new version, then field/value pairs of the new pointer.
_SWITCH = """
local current = redis.call('HGET', KEYS[1], 'version')
if (current or '') ~= ARGV[1] then
  return redis.error_reply('the current version changed to ' .. tostring(current) .. ' during the publication')
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[3], 'state', 'published')
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

    from jobs.duckdb_catalog import register_snapshot

    con = duckdb.connect()
    register_snapshot(con, "ranked_feeds", table_path)
    columns = ", ".join(f"{_SOURCE_COLUMNS.get(name, name)} AS {name}" for name in FEED_ITEM_FIELDS)
    return iter(con.sql(f"SELECT user_id, {columns} FROM ranked_feeds ORDER BY user_id, rank").to_arrow_reader(batch_rows))


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


def _text(value) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _hash(client, key: str) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in client.hgetall(key).items()}


def current_pointer(client) -> dict[str, str]:
    return _hash(client, CURRENT)


def publish_feeds(client, table_path: Path, *, grace_seconds: int = DEFAULT_GRACE_SECONDS, batch_keys: int = 500,
                  metadata: dict[str, str] | None = None) -> PublishResult:
    """Publish `table_path` (ranked_feeds) as a new version and make it current (module docstring).
    `metadata` (what the table was built with) goes into the version's manifest and the pointer."""
    import redis

    metadata = dict(metadata or {})
    clash = sorted(set(metadata) & {*POINTER_FIELDS, "state", "rolled_back_from"})
    if clash:
        raise ValueError(f"metadata may not set the pointer's own fields {clash}")
    started = time.monotonic()
    previous = version = None
    users = items = size = total = 0
    written: list[int] = []
    try:
        expire_old_versions(client, keep=set(), grace_seconds=grace_seconds)  # what killed publications left
        pointer = current_pointer(client)
        previous = int(pointer["version"]) if pointer.get("version") else None
        version = int(client.incr(VERSION_COUNTER))
        client.sadd(LIVE, version)
        client.hset(manifest_key(version), mapping={"state": "writing", "started_at": _now()})
        pipe = client.pipeline(transaction=False)
        for user_id, feed in user_feeds(feed_batches(table_path)):
            key, value = feed_key(version, user_id), encode_feed(feed)
            pipe.set(key, value)
            written.append(user_id)
            users, items, size, total = users + 1, items + len(feed), size + len(value), total + _digest(key, value)
            if users % batch_keys == 0:
                pipe.execute()
        pipe.execute()
        if users == 0:
            raise PublishError(f"{table_path} holds no feed")
        checksum = _checksum(total)
        verify_version(client, version, written, checksum=checksum, batch_keys=batch_keys)
        published_at = _now()
        client.hset(manifest_key(version), mapping={
            "state": "verified", "users": users, "items": items, "bytes": size, "checksum": checksum, **metadata})
        _switch(client, expected=previous, version=version, fields={
            "version": version, "previous": "" if previous is None else previous, "published_at": published_at,
            "users": users, "items": items, "checksum": checksum, **metadata})
    except BaseException as exc:
        # Before the switch returned: the pointer still names `previous` (or another publisher's version).
        if version is not None:
            _delete_unserved(client, version, written)
        if not isinstance(exc, (redis.RedisError, PublishError)):
            raise
        served = f"version {previous} is still served" if previous is not None else "nothing was published before"
        if isinstance(exc, redis.exceptions.OutOfMemoryError):
            raise PublishError(f"Redis is out of memory (maxmemory) after {users} feeds of version {version}: "
                               f"the version is discarded; {served}") from exc
        raise PublishError(f"publication of version {version} failed after {users} feeds ({exc}); {served}") from exc
    expire_old_versions(client, keep={version, previous}, grace_seconds=grace_seconds)
    return PublishResult(version, previous, users, items, size, checksum, round(time.monotonic() - started, 3),
                         published_at)


def _switch(client, *, expected: int | None, version: int, fields: dict) -> None:
    flat = [str(x) for pair in fields.items() for x in pair]
    client.eval(_SWITCH, 3, CURRENT, HISTORY, manifest_key(version),
                "" if expected is None else str(expected), str(time.time()), str(version), *flat)


def verify_version(client, version: int, user_ids: Sequence[int], *, checksum: str, batch_keys: int = 500) -> None:
    """Every feed of `version` for `user_ids` read back: all present, and their checksum the source's."""
    found = total = 0
    for start in range(0, len(user_ids), batch_keys):
        keys = [feed_key(version, u) for u in user_ids[start:start + batch_keys]]
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
        for key, value in zip(keys, pipe.execute()):
            if value is not None:
                found, total = found + 1, total + _digest(key, value)
    if found != len(user_ids) or _checksum(total) != checksum:
        raise PublishError(f"verification of version {version} failed: {found} feeds with checksum {_checksum(total)} "
                           f"in Redis, {len(user_ids)} with checksum {checksum} from the table")


def _delete_unserved(client, version: int, user_ids: Sequence[int], batch_keys: int = 1000) -> None:
    """Best effort: delete what a publication wrote before its switch (nobody reads it; deleting frees
    memory even when Redis is full), then its manifest. If Redis is gone, the next publication does it."""
    import redis

    try:
        for start in range(0, len(user_ids), batch_keys):
            client.unlink(*[feed_key(version, u) for u in user_ids[start:start + batch_keys]])
        client.unlink(manifest_key(version))
        client.srem(LIVE, version)
    except redis.RedisError:
        pass


def expire_version(client, version: int, seconds: int, batch_keys: int = 1000) -> int:
    """Give every key of `version` a TTL of `seconds` (the manifest last); the number of feed keys."""
    count = 0
    pipe = client.pipeline(transaction=False)
    for key in client.scan_iter(match=version_pattern(version), count=batch_keys):
        pipe.expire(key, seconds)
        count += 1
        if count % batch_keys == 0:
            pipe.execute()
    pipe.execute()
    client.expire(manifest_key(version), seconds)
    return count


def expire_old_versions(client, *, keep: set[int | None], grace_seconds: int) -> list[int]:
    """Every live version other than the current, the previous and `keep` expires after the grace
    period: those replaced, and those a killed publication left behind."""
    pointer = current_pointer(client)
    protected = {int(v) for v in (pointer.get("version"), pointer.get("previous")) if v} | {v for v in keep if v}
    expired = []
    for member in client.smembers(LIVE):
        version = int(member)
        if version in protected:
            continue
        state = _text(client.hget(manifest_key(version), "state"))
        if state == "writing" and not _abandoned(client, version):
            continue  # another publication is writing it now
        expire_version(client, version, grace_seconds)
        client.srem(LIVE, version)
        expired.append(version)
    return expired


def _abandoned(client, version: int, *, after_seconds: float = 6 * 3600) -> bool:
    """A version still 'writing' this long after it started was left by a killed publication."""
    started = _text(client.hget(manifest_key(version), "started_at"))
    newest = int(client.get(VERSION_COUNTER) or 0)
    if version < newest:
        return True  # a later publication started since: this one is not running any more (one publisher at a time)
    return started is None or (datetime.now(timezone.utc) - datetime.fromisoformat(started)).total_seconds() > after_seconds


def rollback(client) -> dict[str, str]:
    """Make the previous version current again (its feeds verified complete first); the version rolled
    back from becomes the previous one. Returns the new pointer."""
    pointer = current_pointer(client)
    if not pointer.get("previous"):
        raise PublishError("no previous version to roll back to" if pointer else "nothing is published")
    target, current = int(pointer["previous"]), int(pointer["version"])
    manifest = _hash(client, manifest_key(target))
    if manifest.get("state") != "published":
        raise PublishError(f"version {target} is not a complete published version (state {manifest.get('state')})")
    user_ids = [int(_text(k).split("{u")[1].split("}")[0]) for k in client.scan_iter(match=version_pattern(target))]
    verify_version(client, target, sorted(set(user_ids)), checksum=manifest["checksum"])
    if len(set(user_ids)) != int(manifest["users"]):
        raise PublishError(f"version {target} has {len(set(user_ids))} feeds, its manifest says {manifest['users']}")
    built_with = {k: v for k, v in manifest.items() if k not in ("state", "started_at", "bytes", *POINTER_FIELDS)}
    _switch(client, expected=current, version=target, fields={
        "version": target, "previous": current, "published_at": _now(), "users": manifest["users"],
        "items": manifest["items"], "checksum": manifest["checksum"], "rolled_back_from": current, **built_with})
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
