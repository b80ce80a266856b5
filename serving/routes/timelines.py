"""The timelines: For You, Following and lists; and the home timelines' fast path handler."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.responses import Response

from serving.auth import InvalidCursor, InvalidToken, verify_token
from serving.dependencies import Count, Cursor, ListId, ServingDep, UserId, ViewerDep
from serving.errors import Forbidden, error_response
from serving.fast_path import TimelineRequest
from serving.limits import DEFAULT_COUNT
from serving.pages import cursor_state, following_page, for_you_page, list_page, own_timeline
from serving.schemas import ChronologicalTimeline, Timeline, error_responses

router = APIRouter(prefix="/v1", tags=["timelines"])


@router.get(
    "/users/{user_id}/timelines/for_you", response_model=Timeline, responses=error_responses(400, 401, 403, 503)
)
async def for_you(
    user_id: UserId, who: ViewerDep, serving: ServingDep, cursor: Cursor = None, count: Count = DEFAULT_COUNT
) -> Response:
    """The ranked For You timeline: the precomputed feed with the followees' tweets since the build
    blended in, after the request-time filters, light reranking, mixing (conversations,
    who-to-follow, promoted tweets) and pagination; the followees' recent and popular tweets
    (`fallback: true`) when there is no feed."""
    own_timeline(user_id, who)
    return await for_you_page(
        serving,
        user_id=user_id,
        cursor=cursor,
        count=count,
        previous=cursor_state(serving, cursor, kind="for_you", owner=user_id),
    )


@router.get(
    "/users/{user_id}/timelines/following",
    response_model=ChronologicalTimeline,
    responses=error_responses(400, 401, 403, 503),
)
async def following(
    user_id: UserId, who: ViewerDep, serving: ServingDep, cursor: Cursor = None, count: Count = DEFAULT_COUNT
) -> Response:
    """Reverse-chronological tweets of the accounts the user follows, including tweets posted
    since the batch build."""
    own_timeline(user_id, who)
    return await following_page(
        serving,
        user_id=user_id,
        cursor=cursor,
        count=count,
        before=cursor_state(serving, cursor, kind="following", owner=user_id).get("b"),
    )


@router.get(
    "/lists/{list_id}/timeline",
    response_model=ChronologicalTimeline,
    responses=error_responses(400, 401, 403, 404, 503),
)
async def list_timeline(
    list_id: ListId, who: ViewerDep, serving: ServingDep, cursor: Cursor = None, count: Count = DEFAULT_COUNT
) -> Response:
    """Reverse-chronological tweets of the list's members; a private list only for its owner and members."""
    before = cursor_state(serving, cursor, kind="list", owner=list_id).get("b")
    return await list_page(serving, viewer=who, list_id=list_id, before=before, count=count)


async def serve_home_timeline(app: FastAPI, request: TimelineRequest) -> Response | None:
    """`for_you` and `following` for the fast path (`serving.fast_path`): None where the route
    would refuse the request (FastAPI then answers it)."""
    serving = app.state.serving
    try:
        who = verify_token(request.token, serving.secret, now=serving.clock())
        own_timeline(request.user_id, who)
        previous = cursor_state(serving, request.cursor, kind=request.timeline, owner=request.user_id)
    except (InvalidToken, InvalidCursor, Forbidden):
        return None
    try:
        if request.timeline == "for_you":
            return await for_you_page(
                serving, user_id=request.user_id, cursor=request.cursor, previous=previous, count=request.count
            )
        return await following_page(
            serving, user_id=request.user_id, cursor=request.cursor, before=previous.get("b"), count=request.count
        )
    except Exception as error:  # a domain error is answered as the route's exception handlers answer it
        response = error_response(error)
        if response is None:
            raise
        return response
