"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core import redis_layout as rl
from serving.dependencies import ServingDep

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready"}})
async def readyz(serving: ServingDep):
    """Redis is reachable and a published version is present."""
    try:
        await serving.store.client.ping()
        pointer = await serving.store.pointer()
    except rl.REDIS_ERRORS as error:
        return JSONResponse({"status": "unavailable", "detail": f"Redis: {error}"}, status_code=503)
    if not pointer or "version" not in pointer:
        return JSONResponse({"status": "unavailable", "detail": "no published version"}, status_code=503)
    return {"status": "ready", "version": int(pointer["version"]), "published_at": pointer.get("published_at")}


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format 0.0.4"}},
)
async def prometheus_metrics(serving: ServingDep):
    """Prometheus text format: requests and latency per endpoint and stage, filtered candidates,
    fallbacks, sources that failed open, events."""
    return PlainTextResponse(generate_latest(serving.metrics.registry), media_type=CONTENT_TYPE_LATEST)
