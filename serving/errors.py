"""The API's domain errors and the one place they become HTTP responses: JSON `{"detail": ...}`.

400 an invalid cursor (`InvalidCursor`), 401 no, bad or expired token (`InvalidToken`), 403
`Forbidden`, 404 `NotFound`, an event batch refused with its event's status (`EventError`; 422
shaped as FastAPI's own validation errors, as the schema declares), 503 no published version
(`NotPublished`) or Redis unreachable (with `Retry-After: 1`).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from core import redis_layout as rl
from serving.auth import InvalidCursor, InvalidToken
from serving.events import EventError
from serving.store import NotPublished


class Forbidden(Exception):
    """Not the viewer's to read or change (403)."""


class NotFound(Exception):
    """No such resource (404)."""


def error_response(error: Exception) -> JSONResponse | None:
    """The response a domain error is answered with; None for any other exception."""
    if isinstance(error, InvalidToken):
        return JSONResponse({"detail": str(error)}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
    if isinstance(error, InvalidCursor):
        return JSONResponse({"detail": f"invalid cursor: {error}"}, status_code=400)
    if isinstance(error, Forbidden):
        return JSONResponse({"detail": str(error)}, status_code=403)
    if isinstance(error, NotFound):
        return JSONResponse({"detail": str(error)}, status_code=404)
    if isinstance(error, NotPublished):
        return JSONResponse({"detail": str(error)}, status_code=503)
    if isinstance(error, rl.REDIS_ERRORS):
        return JSONResponse(
            {"detail": f"Redis unavailable: {type(error).__name__}: {error}"},
            status_code=503,
            headers={"Retry-After": "1"},
        )
    if isinstance(error, EventError) and error.status != 422:
        return JSONResponse({"detail": str(error)}, status_code=error.status)
    return None


async def _domain_error(request: Request, error: Exception) -> Response:
    if isinstance(error, EventError) and error.status == 422:
        return await request_validation_exception_handler(
            request,
            RequestValidationError(
                [{"type": "value_error", "loc": ("body", "events", error.index), "msg": str(error), "input": None}]
            ),
        )
    return error_response(error)


def add_exception_handlers(app: FastAPI) -> None:
    for error_type in (InvalidToken, InvalidCursor, Forbidden, NotFound, NotPublished, EventError, *rl.REDIS_ERRORS):
        app.add_exception_handler(error_type, _domain_error)
