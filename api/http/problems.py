"""RFC 9457 problem+json for every error the API answers with, and its OpenAPI entries."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.errors import (
    BoneMetsError,
    HTTPProblem,
    InferenceUnavailable,
    InvalidRequest,
    MethodNotAllowed,
    RateLimited,
    RouteNotFound,
    Unauthenticated,
    UploadTooLarge,
)
from api.schemas import Problem

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
# Problem is in the document's components: the job document (StudyJob) refers to it.
_PROBLEM_SCHEMA = {"$ref": "#/components/schemas/Problem"}
_HTTP_ERRORS: dict[int, type[BoneMetsError]] = {
    404: RouteNotFound, 405: MethodNotAllowed, 413: UploadTooLarge,
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for answers that are problem+json bodies, one per status."""
    return {
        status: {
            "description": f"{HTTPStatus(status).phrase} (problem+json)",
            "content": {PROBLEM_MEDIA_TYPE: {"schema": _PROBLEM_SCHEMA}},
        }
        for status in statuses
    }


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(problem.model_dump(exclude_none=True), status_code=problem.status,
                        media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def error_response(exc: BoneMetsError, instance: str | None) -> JSONResponse:
    headers = None
    if isinstance(exc, InferenceUnavailable | RateLimited):
        headers = {"Retry-After": str(exc.retry_after_s)}
    elif isinstance(exc, Unauthenticated):
        # RFC 6750: the scheme the client should use, and why this request failed.
        headers = {"WWW-Authenticate": 'Bearer realm="bonemets"'}
    problem = Problem(type=exc.type_uri, title=exc.title, status=exc.status, detail=exc.detail,
                      instance=instance or None)
    return problem_response(problem, headers)


def install_problem_handlers(app: FastAPI) -> None:
    """Map the error tree, validation errors, HTTP errors and the unexpected to problem+json."""

    @app.exception_handler(BoneMetsError)
    async def _domain(request: Request, exc: BoneMetsError) -> JSONResponse:
        if exc.status >= 500:
            log.warning("%s on %s: %s", type(exc).__name__, request.url.path, exc.detail)
        return error_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()))
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        error = InvalidRequest("; ".join(parts) or "invalid request")
        return error_response(error, request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = _HTTP_ERRORS.get(exc.status_code, HTTPProblem)
        problem = Problem(type=kind.type_uri, title=str(exc.detail), status=exc.status_code,
                          detail=str(exc.detail), instance=request.url.path or None)
        return problem_response(problem, dict(exc.headers) if exc.headers else None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the log; the client gets no internals.
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        error = BoneMetsError("an unexpected error occurred; it has been logged")
        return error_response(error, request.url.path)
