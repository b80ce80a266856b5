"""The timeline API (FastAPI): `create_app(settings)`; `homefeed serve --port P` runs it under uvicorn.

Reads the published Redis version (`serving.store`) and runs the request pipelines of
`serving.for_you` and `serving.timelines` (`serving.pages`). Bearer tokens name the viewer
(`serving.auth`); a viewer reads only their own home timelines, a private list only its owner and
members. Errors are JSON `{"detail": ...}` (`serving.errors`): 400 (bad cursor), 401 (no or bad
token), 403, 404, 422 (invalid parameters), 503 (no published version, or Redis unreachable: a
bounded timeout, never a hang).

The app: routers by group (`serving.routes`), dependencies as `Annotated` aliases
(`serving.dependencies`), response models (`serving.schemas`), and one `ServingState` on
`app.state.serving`, made by the lifespan, which owns the Redis client.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial

import redis.asyncio as aioredis
from fastapi import FastAPI
from redis.asyncio.cluster import RedisCluster

from core.settings import DEVELOPMENT_SECRET, HomefeedSettings
from serving.errors import add_exception_handlers
from serving.fast_path import HomeTimelineFastPath
from serving.for_you import ForYouConfig
from serving.limits import REDIS_TIMEOUT_SECONDS
from serving.metrics import MeasuredRequests
from serving.page_cache import RecentPages
from serving.routes import ROUTERS
from serving.routes.timelines import serve_home_timeline
from serving.state import ServingState
from serving.store import Store

API_VERSION = "1.0.0"


def check_secret(settings: HomefeedSettings) -> str:
    secret = settings.secret.get_secret_value()
    if secret == DEVELOPMENT_SECRET and settings.env != "development":
        raise RuntimeError(
            "HOMEFEED_SECRET is the built-in development secret: set HOMEFEED_SECRET to a secret "
            "of your own (or HOMEFEED_ENV=development on a machine of your own)"
        )
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


@asynccontextmanager
async def lifespan(
    app: FastAPI,
    *,
    settings: HomefeedSettings,
    secret: str,
    client: aioredis.Redis | RedisCluster | None,
    config: ForYouConfig,
    clock: Callable[[], float],
) -> AsyncIterator[None]:
    """The app's `ServingState` while it serves, over `client`, else a client of its own made from
    the settings (it connects on first use) and closed at shutdown."""
    own_client = client is None
    store = Store(redis_client(settings) if own_client else client)
    app.state.serving = ServingState(
        store=store,
        secret=secret,
        config=config,
        clock=clock,
        pages=RecentPages(settings.page_cache_seconds, settings.page_cache_entries),
    )
    try:
        yield
    finally:
        if own_client:
            await store.client.aclose()


def create_app(
    settings: HomefeedSettings,
    *,
    client: aioredis.Redis | RedisCluster | None = None,
    config: ForYouConfig = ForYouConfig(),
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The API over the Redis `settings` names (or `client`, which the caller keeps and closes);
    raises RuntimeError for a secret unfit to sign tokens. Nothing connects before it serves."""
    secret = check_secret(settings)
    app = FastAPI(
        title="homefeed",
        version=API_VERSION,
        description="Home timelines (For You, Following, Lists) served from the published Redis version.",
        lifespan=partial(lifespan, settings=settings, secret=secret, client=client, config=config, clock=clock),
    )
    add_exception_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    routes = {route.path: route for router in ROUTERS for route in router.routes}
    app.add_middleware(
        HomeTimelineFastPath,
        handler=partial(serve_home_timeline, app),
        routes={
            timeline: routes[f"/v1/users/{{user_id}}/timelines/{timeline}"] for timeline in ("for_you", "following")
        },
    )
    app.add_middleware(MeasuredRequests)  # the outer one: it measures the fast path too
    return app


def app_from_environment() -> FastAPI:
    """The app configured by the HOMEFEED_* environment (`uvicorn --factory serving.api:app_from_environment`)."""
    from core.settings import load_settings

    return create_app(load_settings())
