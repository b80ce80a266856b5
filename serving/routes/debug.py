"""The explain page."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from serving.dependencies import Count, PageViewerDep, ServingDep, UserId
from serving.limits import DEFAULT_COUNT
from serving.pages import explained_page, own_timeline
from serving.schemas import error_responses

router = APIRouter(prefix="/debug", tags=["debug"])


@router.get("/users/{user_id}/for_you", response_class=HTMLResponse, responses=error_responses(401, 403, 503))
async def explain(
    user_id: UserId, who: PageViewerDep, serving: ServingDep, count: Count = DEFAULT_COUNT
) -> HTMLResponse:
    """The first For You page explained (HTML): each entry with its sources, per-head
    probabilities, final score and rank change, social proof, and every candidate a filter
    removed with the filter's identifier. The viewer must be the user or an admin."""
    own_timeline(user_id, who, admin_too=True)
    return HTMLResponse(await explained_page(serving, user_id=user_id, count=count))
