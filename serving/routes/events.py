"""Client events: the request-time state they change at once, and the log the next build ingests."""

from __future__ import annotations

from fastapi import APIRouter

from serving.dependencies import ServingDep, ViewerDep
from serving.events import EventBatch, apply_events
from serving.schemas import EventsAccepted, error_responses

router = APIRouter(prefix="/v1", tags=["events"])


@router.post(
    "/events",
    response_model=EventsAccepted,
    status_code=202,
    responses=error_responses(400, 401, 403, 404, 409, 413, 503),
)
async def post_events(batch: EventBatch, who: ViewerDep, serving: ServingDep) -> EventsAccepted:
    """A batch of the viewer's client events (at most 100), applied to the request-time state at
    once and appended to the event log the next batch build ingests (`homefeed drain-events`).
    All or nothing: one event that cannot be applied refuses the batch (404 unknown tweet, 403
    deleting another's tweet, 409 tweet id taken, 422 invalid)."""
    records, log_ids = await apply_events(serving.store, who.user_id, batch.events, now_ms=int(serving.clock() * 1000))
    for record in records:
        serving.metrics.inc(serving.metrics.events, record["type"])
    return EventsAccepted(accepted=len(records), log_ids=log_ids)
