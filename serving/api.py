"""The timeline API (FastAPI): `create_app(settings)`; `homefeed serve --port P` runs it under uvicorn.

Reads the published Redis version (`serving.store`) and runs the request pipelines of
`serving.timelines`. Bearer tokens name the viewer (`serving.auth`); a viewer reads only their own
home timelines, a private list only its owner and members. Errors are JSON `{"detail": ...}`:
400 (bad cursor), 401 (no or bad token), 403, 404, 422 (invalid parameters), 503 (no published
version, or Redis unreachable: a bounded timeout, never a hang).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from datetime import datetime, timezone
from typing import Annotated, Literal
from urllib.parse import parse_qsl

import msgpack
import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter as Metric, Histogram, generate_latest
from pydantic import BaseModel, Field

from core.settings import DEVELOPMENT_SECRET, HomefeedSettings
from core import redis_layout as rl
from serving.auth import InvalidCursor, InvalidToken, Viewer, decode_cursor, encode_cursor, verify_token
from serving.events import EventBatch, EventError, log_records, queue_event, queue_log_append, referenced_tweet_ids
from serving.explain import explain_page
from serving.for_you import FAILURES, ForYouConfig, for_you_timeline, fresh_tweets
from serving.mixing import Entry
from serving.page_cache import CachedPage, RecentPages
from serving.store import _MISSING, SEEN_LIMIT, NotPublished, PublishedCache, Store, UserState, version_of
from serving.timelines import (
    FILTERS,
    Candidate,
    built_at_ms,
    chronological_candidates,
    chronological_page,
    older_than,
)

API_VERSION = "1.0.0"
MAX_COUNT = 100
DEFAULT_COUNT = 35
MAX_CURSOR_LENGTH = 8192
MAX_BODY_BYTES = 256 * 1024
MAX_ID = 2**63 - 1
REDIS_TIMEOUT_SECONDS = 2.0
CHRONOLOGICAL_FILTERS = ("blocked_muted", "deleted", "nsfw")


class Author(BaseModel):
    user_id: str
    handle: str | None
    is_verified: bool


class TweetItem(BaseModel):
    """A tweet: `tweet` when ranked or chronological, `promoted` in an ad slot."""

    type: Literal["tweet", "promoted"] = "tweet"
    tweet_id: str
    author: Author
    text: str | None
    created_at: str
    in_reply_to_tweet_id: str | None
    quoted_tweet_id: str | None
    retweet_of_tweet_id: str | None
    has_media: bool
    in_network: bool
    score: float | None
    sources: list[str]
    social_context: str | None


class ConversationModule(BaseModel):
    """A ranked reply below its ancestors, root first (the reply is the last tweet)."""

    type: Literal["conversation"]
    tweets: list[TweetItem]


class SuggestedUser(BaseModel):
    user_id: str
    handle: str | None
    is_verified: bool
    social_proof_count: int
    followed_by: list[str]  # handles of accounts the viewer follows that follow this one


class WhoToFollowModule(BaseModel):
    type: Literal["who_to_follow"]
    users: list[SuggestedUser]


TimelineEntry = Annotated[TweetItem | ConversationModule | WhoToFollowModule, Field(discriminator="type")]


class Timeline(BaseModel):
    version: int
    items: list[TimelineEntry]
    next_cursor: str | None
    fallback: bool = False
    filtered: dict[str, int]


class ChronologicalTimeline(BaseModel):
    version: int
    items: list[TweetItem]
    next_cursor: str | None
    filtered: dict[str, int]


class ErrorBody(BaseModel):
    detail: str


def _errors(*codes: int) -> dict:
    """OpenAPI responses for the error statuses a route can answer (the body is `{"detail": ...}`)."""
    meaning = {400: "invalid cursor, or a malformed HTTP request (refused by the server)", 401: "no, bad or expired bearer token", 403: "not the viewer's to read",
               404: "not found", 409: "conflict", 413: "request body too large",
               503: "Redis unavailable or no published version"}
    responses = {code: {"model": ErrorBody, "description": meaning[code]} for code in codes}
    if 400 in responses:  # uvicorn answers a request it cannot parse in plain text, before the app
        responses[400]["content"] = {"text/plain": {"schema": {"type": "string"}}}
    return responses


class EventsAccepted(BaseModel):
    accepted: int
    log_ids: list[str]


class ServingMetrics:
    """Prometheus metrics in a registry of the app's own (several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Metric("homefeed_requests", "HTTP requests", ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("homefeed_request_seconds", "HTTP request latency", ["endpoint"], registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
        self.stage = Histogram("homefeed_stage_seconds", "Time per pipeline stage", ["pipeline", "stage"],
                               registry=self.registry, buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1))
        self.filtered = Metric("homefeed_filtered_candidates", "Candidates removed per filter", ["pipeline", "filter"],
                               registry=self.registry)
        self.timelines = Metric("homefeed_timelines", "Timelines served", ["pipeline"], registry=self.registry)
        self.fallbacks = Metric("homefeed_fallbacks", "For You timelines served by the fallback", ["reason"],
                                registry=self.registry)
        self.source_failures = Metric("homefeed_source_failures", "Sources that failed open", ["pipeline", "source"],
                                      registry=self.registry)
        self.events = Metric("homefeed_events", "Client events accepted", ["type"], registry=self.registry)
        self.page_cache = Metric("homefeed_page_cache", "Home timeline pages served again from the recent pages "
                                 "(hit) or computed (miss)", ["pipeline", "result"], registry=self.registry)

    @contextmanager
    def timed(self, pipeline: str, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stage.labels(pipeline, stage).observe(time.perf_counter() - start)


class MeasuredRequests:
    """Pure ASGI middleware (Starlette's BaseHTTPMiddleware costs a task per request): counts and
    times each request by route, and refuses a declared body over MAX_BODY_BYTES with 413."""

    def __init__(self, app, metrics: ServingMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        declared = dict(scope["headers"]).get(b"content-length")
        try:
            if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
                response = JSONResponse({"detail": f"request body over {MAX_BODY_BYTES} bytes"}, status_code=413)
                await response(scope, receive, send_status)
            else:
                await self.app(scope, receive, send_status)
        finally:
            endpoint = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
            self.metrics.requests.labels(endpoint, str(status)).inc()


HOME_TIMELINE_PATH = re.compile(r"/v1/users/([1-9][0-9]{0,18})/timelines/(for_you|following)")
_COUNT = re.compile(r"[1-9][0-9]{0,2}")


@dataclass(frozen=True)
class TimelineRequest:
    timeline: str  # for_you, following
    user_id: int
    cursor: str | None
    count: int
    token: str


def well_formed_home_timeline(scope) -> TimelineRequest | None:
    """A For You or Following request in the one shape the API accepts without a word of complaint
    (GET, an id, at most one `cursor` and one `count`, both valid, nothing else in the query, a
    bearer token), else None: FastAPI then answers it, errors included, as the route declares."""
    if scope["type"] != "http" or scope["method"] != "GET":
        return None
    match = HOME_TIMELINE_PATH.fullmatch(scope["path"])
    if match is None or int(match[1]) > MAX_ID:
        return None
    query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    params = dict(query)
    if len(params) != len(query) or not params.keys() <= {"cursor", "count"}:
        return None
    count, cursor = params.get("count", str(DEFAULT_COUNT)), params.get("cursor")
    if not _COUNT.fullmatch(count) or int(count) > MAX_COUNT or (cursor is not None and len(cursor) > MAX_CURSOR_LENGTH):
        return None
    authorization = [value for name, value in scope["headers"] if name == b"authorization"]
    if len(authorization) != 1 or not authorization[0].startswith(b"Bearer "):
        return None
    token = authorization[0][7:].decode("latin-1").strip()
    return TimelineRequest(match[2], int(match[1]), cursor, int(count), token) if token else None


class HomeTimelineFastPath:
    """Pure ASGI middleware: a well-formed For You or Following request (`well_formed_home_timeline`)
    whose token and cursor check out goes straight to the routes' own handler, skipping FastAPI's
    routing and parameter solving (a quarter of a page served again); `handler` returns None for
    anything the route would refuse, and FastAPI answers that request from the start."""

    def __init__(self, app, handler: Callable, routes: dict[str, object]):
        self.app, self.handler, self.routes = app, handler, routes  # timeline -> its FastAPI route

    async def __call__(self, scope, receive, send):
        request = well_formed_home_timeline(scope)
        response = await self.handler(request) if request is not None else None
        if response is None:
            return await self.app(scope, receive, send)
        scope["route"] = self.routes[request.timeline]  # what MeasuredRequests labels the request with
        await response(scope, receive, send)


def tweet_fields(candidate: Candidate, tweet: dict, author: dict) -> dict:
    """The fields of a `TweetItem` that do not depend on the viewer or the request."""
    return {
        "tweet_id": str(candidate.tweet_id),
        "author": {"user_id": str(candidate.author_id), "handle": author.get("handle"),
                   "is_verified": bool(author.get("is_verified"))},
        "text": tweet["text"], "created_at": _iso(tweet["created_at_ms"]),
        "in_reply_to_tweet_id": _id(tweet["in_reply_to_tweet_id"]), "quoted_tweet_id": _id(tweet["quoted_tweet_id"]),
        "retweet_of_tweet_id": _id(tweet["retweet_of_tweet_id"]), "has_media": bool(tweet["has_media"]),
    }


def tweet_item(candidate: Candidate, fields: dict, kind: str, *, profiles: dict[int, dict], proof_user: int | None,
               scored: bool) -> dict:
    """A `TweetItem`: the tweet's `fields` with its score (ranked and promoted only), sources and
    social context."""
    context = None
    if proof_user in profiles:
        followed = "frs" in candidate.sources and "uteg" not in candidate.sources
        context = f"{'followed' if followed else 'liked'} by @{profiles[proof_user]['handle']}"
    return {"type": kind, **fields, "in_network": candidate.is_in_network,
            "score": float(candidate.score) if scored or kind == "promoted" else None,
            "sources": list(candidate.sources), "social_context": context}


def render_entry(entry: Entry, profiles: dict[int, dict], proof: dict[int, int], *, scored: bool,
                 fields_of: Callable[[Candidate, dict], dict]) -> dict:
    """One `TimelineEntry` (a tweet, a conversation module or a who-to-follow module);
    `fields_of(candidate, tweet)`: the tweet's `tweet_fields`."""
    def item(candidate: Candidate, tweet: dict, kind: str) -> dict:
        return tweet_item(candidate, fields_of(candidate, tweet), kind, profiles=profiles,
                          proof_user=proof.get(candidate.tweet_id), scored=scored)

    if entry.type == "conversation":
        return {"type": "conversation", "tweets": [item(c, t, "tweet") for c, t in entry.tweets]}
    if entry.type == "who_to_follow":
        return {"type": "who_to_follow", "users": [{
            "user_id": str(u["user_id"]), "handle": profiles.get(u["user_id"], {}).get("handle"),
            "is_verified": bool(profiles.get(u["user_id"], {}).get("is_verified")),
            "social_proof_count": int(u["social_proof_count"]),
            "followed_by": [profiles[p]["handle"] for p in u["proof_user_ids"][:2] if p in profiles],
        } for u in entry.users]}
    return item(*entry.tweets[0], entry.type)


@lru_cache(maxsize=1 << 16)  # a page's tweets recur across requests; the conversion is most of an item's cost
def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def _id(value) -> str | None:
    return None if value is None else str(value)


def check_secret(settings: HomefeedSettings) -> str:
    secret = settings.secret.get_secret_value()
    if secret == DEVELOPMENT_SECRET and settings.env != "development":
        raise RuntimeError("HOMEFEED_SECRET is the built-in development secret: set HOMEFEED_SECRET to a secret "
                           "of your own (or HOMEFEED_ENV=development on a machine of your own)")
    if len(secret) < 16:
        raise RuntimeError("HOMEFEED_SECRET must be at least 16 characters")
    return secret


def redis_client(settings: HomefeedSettings) -> aioredis.Redis | RedisCluster:
    """The API's client: of one Redis, or of the Redis Cluster one node of which `redis_url` names
    (it finds the others on first use); each call bounded by REDIS_TIMEOUT_SECONDS."""
    timeouts = {"socket_timeout": REDIS_TIMEOUT_SECONDS, "socket_connect_timeout": REDIS_TIMEOUT_SECONDS}
    if settings.redis_cluster:
        return RedisCluster.from_url(settings.redis_url, **timeouts)
    return aioredis.Redis.from_url(settings.redis_url, **timeouts)


def create_app(settings: HomefeedSettings, *, client: aioredis.Redis | RedisCluster | None = None,
               config: ForYouConfig = ForYouConfig(), clock: Callable[[], float] = time.time) -> FastAPI:
    secret = check_secret(settings)
    client = client or redis_client(settings)
    store = Store(client)
    rendered = PublishedCache()  # each tweet's viewer-independent fields, as `tweet_fields` made them
    pages = RecentPages(settings.page_cache_seconds, settings.page_cache_entries)
    metrics = ServingMetrics()
    app = FastAPI(title="homefeed", version=API_VERSION,
                  description="Home timelines (For You, Following, Lists) served from the published Redis version.")
    app.state.store, app.state.metrics, app.state.config = store, metrics, config


    @app.exception_handler(NotPublished)
    async def not_published(_: Request, error: NotPublished):
        return JSONResponse({"detail": str(error)}, status_code=503)

    async def redis_down(_: Request, error: Exception):
        return JSONResponse({"detail": f"Redis unavailable: {type(error).__name__}: {error}"}, status_code=503,
                            headers={"Retry-After": "1"})

    for error_type in rl.REDIS_ERRORS:
        app.add_exception_handler(error_type, redis_down)

    def verified(token: str | None) -> Viewer:
        if not token:
            raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        try:
            return verify_token(token, secret, now=clock())
        except InvalidToken as error:
            raise HTTPException(401, str(error), headers={"WWW-Authenticate": "Bearer"}) from None

    def bearer(authorization: str | None) -> str | None:
        if authorization and authorization.startswith("Bearer "):
            return authorization.removeprefix("Bearer ").strip()
        return None

    # Async, so that FastAPI calls them inline: a plain `def` dependency runs on a worker thread.
    async def viewer(authorization: str | None = Header(None, description="`Bearer <token>` (`homefeed token USER_ID`)")) -> Viewer:
        return verified(bearer(authorization))

    async def page_viewer(authorization: str | None = Header(None, description="`Bearer <token>`"),
                    access_token: str | None = Query(None, max_length=256,
                                                     description="the token, for a browser (RFC 6750 §2.3)")) -> Viewer:
        return verified(bearer(authorization) or access_token)

    def own_timeline(user_id: int, who: Viewer, *, admin_too: bool = False) -> None:
        if who.user_id != user_id and not (admin_too and who.is_admin):
            raise HTTPException(403, "a viewer reads only their own home timelines")

    def cursor_state(cursor: str | None, kind: str, owner: int) -> dict:
        if cursor is None:
            return {}
        try:
            state = decode_cursor(cursor, secret, max_length=MAX_CURSOR_LENGTH)
        except (InvalidCursor, ValueError, msgpack.exceptions.ExtraData) as error:
            raise HTTPException(400, f"invalid cursor: {error}") from None
        if state.get("k") != kind or state.get("o") != owner:
            raise HTTPException(400, "invalid cursor: it belongs to another timeline")
        return state

    async def render(version: int, entries: list[Entry], *, scored: bool) -> list[dict]:
        """The entries as the JSON objects of `TimelineEntry` (plain dicts: building a pydantic
        model per tweet cost more than the rest of the page; the schema tests check the shape)."""
        tweets = [item for entry in entries for item in entry.tweets]
        proof = {c.tweet_id: c.social_proof_user_ids[0] for c, _ in tweets if c.social_proof_user_ids}
        suggested = [u for entry in entries for u in entry.users]
        wanted = ([c.author_id for c, _ in tweets] + list(proof.values()) + [u["user_id"] for u in suggested]
                  + [p for u in suggested for p in u["proof_user_ids"][:2]])
        profiles = await store.records(rl.PROFILES, version, wanted)

        def fields_of(candidate: Candidate, tweet: dict) -> dict:
            key = ("tweet_fields", version, candidate.tweet_id)
            fields = rendered.get(key)
            if fields is _MISSING:
                fields = tweet_fields(candidate, tweet, profiles.get(candidate.author_id, {}))
                rendered.put(key, fields)
            return fields

        return [render_entry(entry, profiles, proof, scored=scored, fields_of=fields_of) for entry in entries]

    async def run_for_you(version: int, built_ms: float, state: UserState, previous: dict, count: int, *,
                          explain: bool = False, fresh: list[tuple[int, int, float]] | None = None):
        result = await for_you_timeline(
            store, version, state, cursor=previous, count=count, now_ms=clock() * 1000, built_ms=built_ms, config=config,
            mark_shown=not explain, with_probabilities=explain, fresh=fresh,
            timed=lambda stage: metrics.timed("for_you", stage))
        for source in result.failed_sources:
            metrics.source_failures.labels("for_you", source).inc()
        return result

    async def current_version() -> tuple[int, float]:
        """(the published version, its build time in epoch ms), both from one read of the pointer."""
        pointer = await store.pointer()
        return version_of(pointer), built_at_ms(pointer or {})

    async def for_you_state(user_id: int) -> tuple[int, float, UserState]:
        version, built_ms = await current_version()
        with metrics.timed("for_you", "source"):
            state = await store.user_state(version, user_id, posted_since_ms=built_ms)
        return version, built_ms, state

    def count_timeline(pipeline: str, filtered: dict[str, int], fallback_reason: str | None = None) -> None:
        if fallback_reason not in (None, "continued"):
            metrics.fallbacks.labels(fallback_reason).inc()
        metrics.timelines.labels(pipeline).inc()
        for name, removed in filtered.items():
            if removed:
                metrics.filtered.labels(pipeline, name).inc(removed)

    def served_again(pipeline: str, key: tuple | None) -> CachedPage | None:
        """The page kept for `key` (None: not to be looked up), counted as a timeline served."""
        cached = pages.get(key) if key else None
        metrics.page_cache.labels(pipeline, "hit" if cached else "miss").inc()
        if cached:
            count_timeline(pipeline, cached.filtered, cached.fallback_reason)
        return cached

    def json_response(body: bytes) -> Response:
        return Response(body, media_type="application/json")

    @app.get("/v1/users/{user_id}/timelines/for_you", response_model=Timeline, tags=["timelines"],
             responses=_errors(400, 401, 403, 503))
    async def for_you(user_id: int = Path(ge=1, le=MAX_ID), cursor: str | None = Query(None, max_length=MAX_CURSOR_LENGTH),
                      count: int = Query(DEFAULT_COUNT, ge=1, le=MAX_COUNT),
                      who: Viewer = Depends(viewer)) -> Response:
        """The ranked For You timeline: the precomputed feed with the followees' tweets since the build
        blended in, after the request-time filters, light reranking, mixing (conversations,
        who-to-follow, promoted tweets) and pagination; the followees' recent and popular tweets
        (`fallback: true`) when there is no feed."""
        own_timeline(user_id, who)
        return await for_you_page(user_id, cursor, cursor_state(cursor, "for_you", user_id), count)

    async def home_timeline_fast(request: TimelineRequest) -> Response | None:
        """`for_you` and `following` for `HomeTimelineFastPath`: None where the route would refuse the request."""
        try:
            who = verify_token(request.token, secret, now=clock())
            own_timeline(request.user_id, who)
            previous = cursor_state(request.cursor, request.timeline, request.user_id)
        except (InvalidToken, HTTPException):
            return None
        try:
            if request.timeline == "for_you":
                return await for_you_page(request.user_id, request.cursor, previous, request.count)
            return await following_page(request.user_id, request.cursor, previous.get("b"), request.count)
        except NotPublished as error:
            return await not_published(None, error)
        except rl.REDIS_ERRORS as error:
            return await redis_down(None, error)

    async def for_you_page(user_id: int, cursor: str | None, previous: dict, count: int) -> Response:
        version, built_ms, state = await for_you_state(user_id)
        key, fresh = None, None
        if pages.enabled:
            try:
                fresh = await fresh_tweets(store, state, built_ms, config)
                key = ("for_you", version, user_id, cursor, count, state.fingerprint, tuple(fresh))
            except FAILURES:  # the pipeline reads them again, fails open and counts it
                pass
            cached = served_again("for_you", key)
            if cached:
                if cached.shows_who_to_follow:  # shown once more: marked once more (it fails open, as in the pipeline)
                    try:
                        await store.mark_who_to_follow_shown(user_id, clock() * 1000, ttl_seconds=int(
                            config.mixing.who_to_follow_interval_hours * 3600))
                    except FAILURES:
                        metrics.source_failures.labels("for_you", "who_to_follow").inc()
                return json_response(cached.body)
        result = await run_for_you(version, built_ms, state, previous, count, fresh=fresh)
        filtered = {name: len(result.removed.get(name, ())) for name in FILTERS}
        count_timeline("for_you", filtered, result.fallback_reason)
        with metrics.timed("for_you", "render"):
            items = await render(version, result.entries, scored=result.fallback_reason is None)
        next_cursor = None
        if result.next_state is not None:
            next_cursor = encode_cursor({"k": "for_you", "o": user_id, **result.next_state}, secret)
        body = orjson.dumps({"version": version, "items": items, "next_cursor": next_cursor,
                             "fallback": result.fallback_reason is not None, "filtered": filtered},
                            option=orjson.OPT_SERIALIZE_NUMPY)
        if key and not result.failed_sources and result.fallback_reason != "source_failed":
            pages.put(key, CachedPage(body, filtered, result.fallback_reason,
                                      shows_who_to_follow=any(e.type == "who_to_follow" for e in result.entries)))
        return json_response(body)

    async def chronological(pipeline: str, owner: int, version: int, built_ms: float, authors: list[int],
                            published: list[tuple[list[int], list[int], list[int]]], state: UserState | None,
                            before, count: int, *, fresh: list[tuple[int, int, float]] | None = None,
                            key: tuple | None = None) -> Response:
        """A page of `authors`' tweets, newest first (`fresh`: their tweets since the build at
        `built_ms`, when already read); kept for `key` when one is given."""
        candidates = await chronological_candidates(store, authors, published=published, since_ms=built_ms,
                                                    posted_since=state.posted_since if state else None, fresh=fresh)
        with metrics.timed(pipeline, "hydrate"):
            page, removed = await chronological_page(store, version, older_than(candidates, before), count,
                                                     state=state, slack=config.metadata_slack)
        filtered = {name: len(removed.get(name, ())) for name in CHRONOLOGICAL_FILTERS}
        count_timeline(pipeline, filtered)
        items = await render(version, [Entry("tweet", [item]) for item in page], scored=False)
        next_cursor = None
        if len(page) == count:
            last = page[-1][0]
            next_cursor = encode_cursor({"k": pipeline, "o": owner, "b": [last.created_at_ms, last.tweet_id]}, secret)
        body = orjson.dumps({"version": version, "items": items, "next_cursor": next_cursor, "filtered": filtered})
        if key:
            pages.put(key, CachedPage(body, filtered))
        return json_response(body)

    @app.get("/v1/users/{user_id}/timelines/following", response_model=ChronologicalTimeline, tags=["timelines"],
             responses=_errors(400, 401, 403, 503))
    async def following(user_id: int = Path(ge=1, le=MAX_ID),
                        cursor: str | None = Query(None, max_length=MAX_CURSOR_LENGTH),
                        count: int = Query(DEFAULT_COUNT, ge=1, le=MAX_COUNT),
                        who: Viewer = Depends(viewer)) -> Response:
        """Reverse-chronological tweets of the accounts the user follows, including tweets posted
        since the batch build."""
        own_timeline(user_id, who)
        return await following_page(user_id, cursor, cursor_state(cursor, "following", user_id).get("b"), count)

    async def following_page(user_id: int, cursor: str | None, before, count: int) -> Response:
        version, built_ms = await current_version()
        with metrics.timed("following", "source"):
            state = await store.user_state(version, user_id, with_feed=False, posted_since_ms=built_ms)
            followees = sorted(state.following)
            key, fresh = None, None
            if pages.enabled:
                fresh = await store.new_tweets_of(followees, since_ms=built_ms, posted_since=state.posted_since)
                key = ("following", version, user_id, cursor, count, state.fingerprint, tuple(fresh))
                cached = served_again("following", key)
                if cached:
                    return json_response(cached.body)
            published = await store.records(rl.AUTHOR_TWEETS, version, followees)
        return await chronological(
            "following", user_id, version, built_ms, followees,
            [(r["tweet_ids"], [a] * len(r["tweet_ids"]), r["created_at_ms"]) for a, r in published.items()],
            state, before, count, fresh=fresh, key=key)

    @app.get("/v1/lists/{list_id}/timeline", response_model=ChronologicalTimeline, tags=["timelines"],
             responses=_errors(400, 401, 403, 404, 503))
    async def list_timeline(list_id: int = Path(ge=1, le=MAX_ID),
                            cursor: str | None = Query(None, max_length=MAX_CURSOR_LENGTH),
                            count: int = Query(DEFAULT_COUNT, ge=1, le=MAX_COUNT),
                            who: Viewer = Depends(viewer)) -> Response:
        """Reverse-chronological tweets of the list's members; a private list only for its owner and members."""
        before = cursor_state(cursor, "list", list_id).get("b")
        version, built_ms = await current_version()
        with metrics.timed("list", "source"):
            lists = await store.records(rl.LISTS, version, [list_id])
            if list_id not in lists:
                raise HTTPException(404, f"no list {list_id}")
            record = lists[list_id]
            if record["is_private"] and who.user_id != record["owner_id"] and who.user_id not in record["member_ids"]:
                raise HTTPException(403, "a private list is visible to its owner and members only")
            timeline = (await store.records(rl.LIST_TIMELINES, version, [list_id])).get(list_id)
            state = await store.user_state(version, who.user_id, with_feed=False)
        published = [(timeline["tweet_ids"], timeline["author_ids"], timeline["created_at_ms"])] if timeline else []
        return await chronological("list", list_id, version, built_ms, list(record["member_ids"]), published, state,
                                   before, count)

    @app.post("/v1/events", response_model=EventsAccepted, status_code=202, tags=["events"],
              responses=_errors(400, 401, 403, 404, 409, 413, 503))
    async def post_events(batch: EventBatch, who: Viewer = Depends(viewer)) -> EventsAccepted:
        """A batch of the viewer's client events (at most 100), applied to the request-time state at
        once and appended to the event log the next batch build ingests (`homefeed drain-events`).
        All or nothing: one event that cannot be applied refuses the batch (404 unknown tweet, 403
        deleting another's tweet, 409 tweet id taken, 422 invalid)."""
        version = await store.version()
        tweets = await store.tweets(version, referenced_tweet_ids(batch.events))
        try:
            records = log_records(who.user_id, batch.events, tweets, now_ms=int(clock() * 1000))
        except EventError as error:
            if error.status == 422:  # shaped like FastAPI's own validation errors, as the schema declares
                raise RequestValidationError([{"type": "value_error", "loc": ("body", "events", error.index),
                                               "msg": str(error), "input": None}]) from None
            raise HTTPException(error.status, str(error)) from None
        pipe = client.pipeline(transaction=False)
        for record in records:  # the log first: a failure after it loses nothing (the drain dedupes by key)
            queue_log_append(pipe, record)
        for record in records:
            queue_event(pipe, record, seen_limit=SEEN_LIMIT)
        results = await pipe.execute()
        for record in records:
            metrics.events.labels(record["type"]).inc()
        return EventsAccepted(accepted=len(records), log_ids=[r.decode() for r in results[:len(records)]])

    @app.get("/debug/users/{user_id}/for_you", response_class=HTMLResponse, tags=["debug"],
             responses=_errors(401, 403, 503))
    async def explain(user_id: int = Path(ge=1, le=MAX_ID), count: int = Query(DEFAULT_COUNT, ge=1, le=MAX_COUNT),
                      who: Viewer = Depends(page_viewer)) -> HTMLResponse:
        """The first For You page explained (HTML): each entry with its sources, per-head
        probabilities, final score and rank change, social proof, and every candidate a filter
        removed with the filter's identifier. The viewer must be the user or an admin."""
        own_timeline(user_id, who, admin_too=True)
        version, built_ms, state = await for_you_state(user_id)
        result = await run_for_you(version, built_ms, state, {}, count, explain=True)
        items = await render(version, result.entries, scored=result.fallback_reason is None)
        profiles = await store.records(rl.PROFILES, version, [user_id])
        return HTMLResponse(explain_page(user_id=user_id, version=version, result=result, items=items,
                                         handle=profiles.get(user_id, {}).get("handle")))

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], responses={503: {"description": "not ready"}})
    async def readyz():
        """Redis is reachable and a published version is present."""
        try:
            await client.ping()
            pointer = await store.pointer()
        except rl.REDIS_ERRORS as error:
            return JSONResponse({"status": "unavailable", "detail": f"Redis: {error}"}, status_code=503)
        if not pointer or "version" not in pointer:
            return JSONResponse({"status": "unavailable", "detail": "no published version"}, status_code=503)
        return {"status": "ready", "version": int(pointer["version"]), "published_at": pointer.get("published_at")}

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format 0.0.4"}})
    async def prometheus_metrics():
        """Prometheus text format: requests and latency per endpoint and stage, filtered candidates,
        fallbacks, sources that failed open, events."""
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    routes = {getattr(route, "path", None): route for route in app.routes}
    app.add_middleware(HomeTimelineFastPath, handler=home_timeline_fast, routes={
        timeline: routes[f"/v1/users/{{user_id}}/timelines/{timeline}"] for timeline in ("for_you", "following")})
    app.add_middleware(MeasuredRequests, metrics=metrics)  # the outer one: it measures the fast path too
    return app

def app_from_environment() -> FastAPI:
    """The app configured by the HOMEFEED_* environment (`uvicorn --factory serving.api:app_from_environment`)."""
    from core.settings import load_settings

    return create_app(load_settings())
