"""The routes' dependencies as `Annotated` aliases: the app's state, the viewer a bearer token names,
and the parameters the timeline routes share."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Path, Query, Request

from serving.auth import InvalidToken, Viewer, verify_token
from serving.limits import MAX_COUNT, MAX_CURSOR_LENGTH, MAX_ID
from serving.state import ServingState


# Async, so that FastAPI calls them inline: a plain `def` dependency runs on a worker thread.
async def serving_state(request: Request) -> ServingState:
    return request.app.state.serving


ServingDep = Annotated[ServingState, Depends(serving_state)]


def bearer(authorization: str | None) -> str | None:
    if authorization and authorization.startswith("Bearer "):
        return authorization.removeprefix("Bearer ").strip()
    return None


def verified(serving: ServingState, token: str | None) -> Viewer:
    if not token:
        raise InvalidToken("missing bearer token")
    return verify_token(token, serving.secret, now=serving.clock())


async def viewer(
    serving: ServingDep,
    authorization: Annotated[str | None, Header(description="`Bearer <token>` (`homefeed token USER_ID`)")] = None,
) -> Viewer:
    return verified(serving, bearer(authorization))


async def page_viewer(
    serving: ServingDep,
    authorization: Annotated[str | None, Header(description="`Bearer <token>`")] = None,
    access_token: Annotated[
        str | None, Query(max_length=256, description="the token, for a browser (RFC 6750 §2.3)")
    ] = None,
) -> Viewer:
    return verified(serving, bearer(authorization) or access_token)


ViewerDep = Annotated[Viewer, Depends(viewer)]
PageViewerDep = Annotated[Viewer, Depends(page_viewer)]  # a header or `?access_token=` (a browser's)
UserId = Annotated[int, Path(ge=1, le=MAX_ID)]
ListId = Annotated[int, Path(ge=1, le=MAX_ID)]
Cursor = Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH)]
Count = Annotated[int, Query(ge=1, le=MAX_COUNT)]
