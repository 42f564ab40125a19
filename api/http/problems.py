"""RFC 9457 problem+json for every error the API answers with."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.errors import BoneMetsError, InferenceUnavailable

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"


def problem_response(
    status: int, type_: str, title: str, detail: str, instance: str | None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"type": type_, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def error_response(exc: BoneMetsError, instance: str | None) -> JSONResponse:
    headers = None
    if isinstance(exc, InferenceUnavailable):
        headers = {"Retry-After": str(exc.retry_after_s)}
    return problem_response(exc.status, exc.type_uri, exc.title, exc.detail, instance, headers)


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
        return problem_response(
            422, "urn:bonemets:problem:invalid-request", "Invalid request",
            "; ".join(parts) or "invalid request", request.url.path,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = {404: "not-found", 405: "method-not-allowed", 413: "upload-too-large"}.get(
            exc.status_code, "http-error"
        )
        return problem_response(
            exc.status_code, f"urn:bonemets:problem:{slug}", str(exc.detail), str(exc.detail),
            request.url.path, dict(exc.headers) if exc.headers else None,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the log; the client gets no internals.
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem_response(
            500, "urn:bonemets:problem:internal", "Internal error",
            "an unexpected error occurred; it has been logged", request.url.path,
        )
