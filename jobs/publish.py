"""Versioned, all-or-nothing publication to Redis of the ranked feeds and everything serving reads
with them (jobs/published_datasets.py), and rollback.

A publication writes a whole new version under new keys (pipelined batches), verifies it (the
number of keys and an order-independent checksum of every key and value, read back from Redis,
against the same computed from the Delta tables), and only then switches the current-version
pointer, atomically: one Lua script checks that nobody switched it meanwhile, replaces it, and
marks the version published. Readers follow the pointer, so they see the old version complete or
the new one complete, never a mix. The previous version stays for a rollback; older ones expire
after a grace period. A publication that stops anywhere before the switch leaves the pointer, and
so what is served, as it was; the keys it wrote are deleted (or, if it was killed, by the next
publication).
"""

from __future__ import annotations

import hashlib
import json
import time
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from core.redis_layout import (
    CURRENT,
    FEEDS,
    HISTORY,
    LAYOUT_VERSION,
    LIVE,
    REDIS_ERRORS,
    VERSION_COUNTER,
    KeySpace,
    manifest_key,
    version_pattern,
)
from jobs.published_datasets import (
    DATASETS,
    FEEDS_DATASET,
    FEEDS_TABLE,
    Dataset,
    PublicationConfig,
    source_connection,
)

DEFAULT_GRACE_SECONDS = 3600
POINTER_FIELDS = ("version", "previous", "published_at", "users", "items", "keys", "checksum", "layout", "datasets")

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
    keys: int
    bytes: int
    checksum: str
    seconds: float
    published_at: str
    keys_per_dataset: dict[str, int]


def connect(url: str, *, cluster: bool = False, timeout_seconds: float = 5.0):
    """A Redis client that fails within `timeout_seconds` when the server is down, and is checked now.
    `cluster`: `url` names one node of a Redis Cluster, and the client routes each key to its node."""
    import redis
    import redis.cluster

    timeouts = {"socket_connect_timeout": timeout_seconds, "socket_timeout": timeout_seconds * 6}
    try:
        client = (
            redis.cluster.RedisCluster.from_url(url, **timeouts) if cluster else redis.Redis.from_url(url, **timeouts)
        )
        client.ping()
        if not cluster and _cluster_enabled(client):
            raise PublishError(
                f"Redis at {url} is a node of a Redis Cluster: set HOMEFEED_REDIS_CLUSTER=1; nothing changed"
            )
    except REDIS_ERRORS as exc:
        raise PublishError(f"Redis at {url} is unreachable ({exc}); nothing changed") from exc
    return client


def _cluster_enabled(client) -> bool:
    """A plain client on a cluster node would get MOVED for most keys, midway through a publication."""
    return bool(client.info("cluster").get("cluster_enabled"))


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


def publish_feeds(client, table_path: Path, **options) -> PublishResult:
    """Publish only the ranked feeds of `table_path` (the feed key space; see `publish_version`)."""
    return publish_version(client, {FEEDS_TABLE: table_path}, (FEEDS_DATASET,), **options)


def publish_warehouse(client, tables_dir: Path, *, datasets: Sequence[Dataset] = DATASETS, **options) -> PublishResult:
    """Publish every dataset (feeds, profiles, follow sets, timelines, tweets, lists, ...) of the
    warehouse at `tables_dir`."""
    from jobs.delta_io import is_delta_table

    sources = {name: tables_dir / name for d in datasets for name in d.tables}
    missing = sorted(name for name, path in sources.items() if not is_delta_table(path))
    if missing:
        raise PublishError(f"the warehouse at {tables_dir} lacks {', '.join(missing)}: build it first; nothing changed")
    return publish_version(client, sources, datasets, **options)


def publish_version(
    client,
    sources: dict[str, Path],
    datasets: Sequence[Dataset],
    *,
    as_of: datetime | None = None,
    config: PublicationConfig = PublicationConfig(),
    grace_seconds: int = DEFAULT_GRACE_SECONDS,
    batch_keys: int = 500,
    metadata: dict[str, str] | None = None,
    versions: dict[str, int] | None = None,
) -> PublishResult:
    """Publish `datasets`, read from the Delta tables `sources` (at `versions` where given, else their
    current ones), as a new version and make it current (module docstring). `as_of`: the moment the
    datasets describe (default now). `metadata` (what the feeds were built with) goes into the
    version's manifest and the pointer."""
    metadata = _checked_metadata(metadata)
    started = time.monotonic()
    as_of = as_of or datetime.now(UTC)
    previous = version = None
    # Filled while writing, so a failed publication knows which keys to delete.
    written: dict[str, tuple[KeySpace, array]] = {d.space.name: (d.space, array("q")) for d in datasets}
    try:
        source_versions = {**_source_versions(sources), **(versions or {})}
        con = source_connection(sources, versions=source_versions, as_of=as_of, config=config)
        items = _feed_items(con, sources)
        expire_old_versions(client, keep=set(), grace_seconds=grace_seconds)  # what killed publications left
        previous = _current_version(client)
        version = _open_version(client)
        size, total = _write_datasets(
            client, version, datasets, written, con=con, as_of=as_of, config=config, batch_keys=batch_keys
        )
        users = len(written[FEEDS.name][1]) if FEEDS.name in written else 0
        keys = sum(len(ids) for _, ids in written.values())
        checksum = _checksum(total)
        verify_version(client, version, _keys_written(version, written), checksum=checksum, batch_keys=batch_keys)
        published_at = _now()
        summary = {"users": users, "items": items, "keys": keys}
        manifest = _verified_manifest(
            summary, size=size, checksum=checksum, as_of=as_of, source_versions=source_versions, written=written
        )
        client.hset(manifest_key(version), mapping={**manifest, **metadata})
        pointer = _pointer_fields(
            version, previous, published_at=published_at, summary=summary, checksum=checksum, written=written
        )
        _switch(client, expected=previous, version=version, fields={**pointer, **metadata})
    except BaseException as exc:
        # Before the switch returned: the pointer still names `previous` (or another publisher's version).
        if version is not None:
            _delete_unserved(client, version, _keys_written(version, written))
        if not isinstance(exc, (*REDIS_ERRORS, PublishError)) or (isinstance(exc, PublishError) and version is None):
            raise
        keys_done = sum(len(ids) for _, ids in written.values())
        raise _publication_failed(exc, version=version, previous=previous, keys_done=keys_done) from exc
    expire_old_versions(client, keep={version, previous}, grace_seconds=grace_seconds)
    return PublishResult(
        version,
        previous,
        users,
        items,
        keys,
        size,
        checksum,
        round(time.monotonic() - started, 3),
        published_at,
        {name: len(ids) for name, (_, ids) in written.items()},
    )


def _checked_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    """A copy of `metadata`, refused if it would overwrite a field of the pointer or manifest."""
    metadata = dict(metadata or {})
    clash = sorted(set(metadata) & {*POINTER_FIELDS, "state", "rolled_back_from"})
    if clash:
        raise ValueError(f"metadata may not set the pointer's own fields {clash}")
    return metadata


def _feed_items(con, sources: dict[str, Path]) -> int:
    """The number of feed items to publish; a publication without any is refused."""
    items = con.sql(f"SELECT count(*) FROM {FEEDS_TABLE}").fetchall()[0][0] if FEEDS_TABLE in sources else 0
    if not items:
        raise PublishError(f"{sources.get(FEEDS_TABLE)} holds no feed")
    return items


def _current_version(client) -> int | None:
    """The version the pointer names now, None before the first publication."""
    pointer = current_pointer(client)
    return int(pointer["version"]) if pointer.get("version") else None


def _open_version(client) -> int:
    """A new version number, registered as live with a manifest in state 'writing'."""
    version = int(client.incr(VERSION_COUNTER))
    client.sadd(LIVE, version)
    client.hset(manifest_key(version), mapping={"state": "writing", "started_at": _now()})
    return version


def _write_datasets(
    client,
    version: int,
    datasets: Sequence[Dataset],
    written: dict[str, tuple[KeySpace, array]],
    *,
    con,
    as_of: datetime,
    config: PublicationConfig,
    batch_keys: int,
) -> tuple[int, int]:
    """Write every record of `datasets` under `version`, `batch_keys` keys per pipeline, appending each
    id to `written` as it goes: the bytes written and the sum of the key/value digests."""
    size = total = 0
    pipe = client.pipeline(transaction=False)
    pending = 0
    for dataset in datasets:
        ids = written[dataset.space.name][1]
        for id_, value in dataset.records(con, as_of, config):
            key = dataset.space.key(version, id_)
            pipe.set(key, value)
            ids.append(id_)
            size, total, pending = size + len(value), total + _digest(key, value), pending + 1
            if pending == batch_keys:
                pipe.execute()
                pending = 0
    pipe.execute()
    return size, total


def _verified_manifest(
    summary: dict[str, int],
    *,
    size: int,
    checksum: str,
    as_of: datetime,
    source_versions: dict[str, int],
    written: dict[str, tuple[KeySpace, array]],
) -> dict:
    """The manifest fields of a version whose keys were read back and match the tables."""
    return {
        "state": "verified",
        **summary,
        "bytes": size,
        "checksum": checksum,
        "as_of": as_of.isoformat(),
        "sources": json.dumps(source_versions, sort_keys=True),
        "layout": LAYOUT_VERSION,
        "datasets": ",".join(written),
        **{f"keys_{name}": len(ids) for name, (_, ids) in written.items()},
    }


def _pointer_fields(
    version: int,
    previous: int | None,
    *,
    published_at: str,
    summary: dict[str, int],
    checksum: str,
    written: dict[str, tuple[KeySpace, array]],
) -> dict:
    """The current-version pointer's fields (POINTER_FIELDS) for `version`."""
    return {
        "version": version,
        "previous": "" if previous is None else previous,
        "published_at": published_at,
        **summary,
        "checksum": checksum,
        "layout": LAYOUT_VERSION,
        "datasets": ",".join(written),
    }


def _publication_failed(
    exc: BaseException, *, version: int | None, previous: int | None, keys_done: int
) -> PublishError:
    """The PublishError for a publication that failed before its switch: what is served now."""
    import redis

    served = f"version {previous} is still served" if previous is not None else "nothing was published before"
    if isinstance(exc, redis.exceptions.OutOfMemoryError):
        return PublishError(
            f"Redis is out of memory (maxmemory) after {keys_done} keys of version {version}: "
            f"the version is discarded; {served}"
        )
    return PublishError(f"publication of version {version} failed after {keys_done} keys ({exc}); {served}")


def _keys_written(version: int, written: dict[str, tuple[KeySpace, array]]) -> Iterator[str]:
    for space, ids in written.values():
        for id_ in ids:
            yield space.key(version, id_)


def _source_versions(sources: dict[str, Path]) -> dict[str, int]:
    from deltalake import DeltaTable

    return {name: DeltaTable(str(path)).version() for name, path in sorted(sources.items())}


def _switch(client, *, expected: int | None, version: int, fields: dict) -> None:
    flat = [str(x) for pair in fields.items() for x in pair]
    client.eval(
        _SWITCH,
        3,
        CURRENT,
        HISTORY,
        manifest_key(version),
        "" if expected is None else str(expected),
        str(time.time()),
        str(version),
        *flat,
    )


def verify_version(client, version: int, keys: Iterable[str], *, checksum: str, batch_keys: int = 500) -> int:
    """Every key of `keys` read back: all present, and their checksum the source's. Returns the count."""
    expected = found = total = 0
    for batch in _batched(keys, batch_keys):
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.get(key)
        for key, value in zip(batch, pipe.execute()):
            expected += 1
            if value is not None:
                found, total = found + 1, total + _digest(key, value)
    if found != expected or _checksum(total) != checksum:
        raise PublishError(
            f"verification of version {version} failed: {found} keys with checksum {_checksum(total)} "
            f"in Redis, {expected} with checksum {checksum} from the tables"
        )
    return found


def _batched(items: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _delete_unserved(client, version: int, keys: Iterable[str], batch_keys: int = 1000) -> None:
    """Best effort: delete what a publication wrote before its switch (nobody reads it; deleting frees
    memory even when Redis is full), then its manifest. If Redis is gone, the next publication does it."""
    try:
        for batch in _batched(keys, batch_keys):
            client.unlink(*batch)
        client.unlink(manifest_key(version))
        client.srem(LIVE, version)
    except REDIS_ERRORS:
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
    return started is None or (datetime.now(UTC) - datetime.fromisoformat(started)).total_seconds() > after_seconds


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
    if manifest.get("layout") != str(LAYOUT_VERSION):
        raise PublishError(
            f"version {target} is encoded with layout {manifest.get('layout') or 1}, this code serves "
            f"layout {LAYOUT_VERSION}: publish again instead"
        )
    keys = {_text(k) for k in client.scan_iter(match=version_pattern(target), count=1000)}
    expected = int(manifest.get("keys", manifest["users"]))
    if len(keys) != expected:
        raise PublishError(f"version {target} has {len(keys)} keys, its manifest says {expected}")
    verify_version(client, target, keys, checksum=manifest["checksum"])
    built_with = {
        k: v
        for k, v in manifest.items()
        if k not in ("state", "started_at", "bytes", "as_of", "sources", *POINTER_FIELDS) and not k.startswith("keys_")
    }
    _switch(
        client,
        expected=current,
        version=target,
        fields={
            "version": target,
            "previous": current,
            "published_at": _now(),
            "users": manifest["users"],
            "items": manifest["items"],
            "keys": expected,
            "checksum": manifest["checksum"],
            "layout": manifest["layout"],
            "datasets": manifest.get("datasets", ""),
            "rolled_back_from": current,
            **built_with,
        },
    )
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
    return datetime.now(UTC).isoformat(timespec="seconds")
