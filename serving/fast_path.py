"""The home timeline fast path: a For You or Following request in the one shape the API accepts
without a word of complaint goes straight to the routes' own handler (`serving.routes.timelines.
serve_home_timeline`), skipping FastAPI's routing and parameter solving (a quarter of a page served
again); anything else, errors included, is FastAPI's to answer as the OpenAPI schema declares."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from fastapi.responses import Response

from serving.limits import DEFAULT_COUNT, MAX_COUNT, MAX_CURSOR_LENGTH, MAX_ID

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
    if (
        not _COUNT.fullmatch(count)
        or int(count) > MAX_COUNT
        or (cursor is not None and len(cursor) > MAX_CURSOR_LENGTH)
    ):
        return None
    authorization = [value for name, value in scope["headers"] if name == b"authorization"]
    if len(authorization) != 1 or not authorization[0].startswith(b"Bearer "):
        return None
    token = authorization[0][7:].decode("latin-1").strip()
    return TimelineRequest(match[2], int(match[1]), cursor, int(count), token) if token else None


class HomeTimelineFastPath:
    """Pure ASGI middleware: a well-formed For You or Following request (`well_formed_home_timeline`)
    goes to `handler`, which returns None for anything the route would refuse: FastAPI then answers
    that request from the start. `routes`: each timeline's FastAPI route, which the request is
    labelled with (as `MeasuredRequests` counts it)."""

    def __init__(
        self, app, handler: Callable[[TimelineRequest], Awaitable[Response | None]], routes: dict[str, object]
    ):
        self.app, self.handler, self.routes = app, handler, routes

    async def __call__(self, scope, receive, send):
        request = well_formed_home_timeline(scope)
        response = await self.handler(request) if request is not None else None
        if response is None:
            return await self.app(scope, receive, send)
        scope["route"] = self.routes[request.timeline]
        await response(scope, receive, send)
