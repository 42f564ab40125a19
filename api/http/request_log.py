"""A request id for every HTTP request, and (JSON logs) one line per request.

The id is the caller's ``X-Request-ID`` when it is a short token of ``A-Z a-z 0-9 . _ -``
(anything else, which could break a log line or carry a header's worth of text, is
replaced), else a new one. It is answered as ``X-Request-ID`` on every answer, refusals and
500s included (the middleware sits outside Starlette's error handler: :class:`Gateway`), and
set for the log (:data:`api.logs.request_id`), so every line written while the request is
handled carries it: give it to support with a ticket.

Only an id the service made goes into ``request.state.request_id``, which the audit trail
records: the audit copies nothing a client wrote (api/http/audit.py).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import logs, metrics

REQUEST_ID_HEADER = "X-Request-ID"
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
access_log = logging.getLogger("bonemets.access")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def request_id_of(scope: Scope) -> tuple[str, bool]:
    """The id of the request in ``scope``, and whether the service made it."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"x-request-id":
            given = value.decode("latin-1")
            if SANE_REQUEST_ID.fullmatch(given):
                return given, False
            break
    return uuid.uuid4().hex, True


class RequestLog:
    """Pure ASGI middleware (not ``BaseHTTPMiddleware``: streamed answers stay streamed and
    the context variables it sets reach the app)."""

    def __init__(self, app: ASGIApp, access_lines: bool = False) -> None:
        self.app = app
        self.access_lines = access_lines

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid, made_here = request_id_of(scope)
        if made_here:
            scope.setdefault("state", {})["request_id"] = rid
        token = logs.request_id.set(rid)
        client_token = logs.client.set(None)  # authentication sets it (api/http/auth.py)
        began = time.perf_counter()
        status = 500  # an answer never started is a failure

        async def identified_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, identified_send)
        finally:
            seconds = time.perf_counter() - began
            _count(scope, status, seconds)
            if self.access_lines:
                self._write(scope, status, seconds)
            logs.client.reset(client_token)
            logs.request_id.reset(token)

    def _write(self, scope: Scope, status: int, seconds: float) -> None:
        """The request's line: method, path (never its query: a signed link's is a
        credential), status, duration, and the client once authenticated."""
        method, path = scope.get("method", ""), scope.get("path", "")
        principal = (scope.get("state") or {}).get("principal")
        duration_ms = round(seconds * 1000, 1)
        access_log.info(
            "%s %s %d %.1f ms", method, path, status, duration_ms,
            extra={"method": method, "path": path, "status": status,
                   "duration_ms": duration_ms, "client": getattr(principal, "client", None)},
        )


def _count(scope: Scope, status: int, seconds: float) -> None:
    """The request in the metrics, under its route's template: a raw path would make a
    label per job id."""
    route = str(getattr(scope.get("route"), "path", "unmatched"))
    method = scope.get("method", "")
    method = method if method in METHODS else "other"  # a client may send any word
    metrics.http_requests.labels(route, method, str(status)).inc()
    metrics.http_duration.labels(route, method).observe(seconds)


class Gateway(FastAPI):
    """FastAPI with :class:`RequestLog` outermost, around Starlette's own error handler, so
    that the 500 it answers carries the request id too."""

    def __init__(self, *, access_lines: bool = False, **options: Any) -> None:
        self._access_lines = access_lines
        super().__init__(**options)

    def build_middleware_stack(self) -> ASGIApp:
        return RequestLog(super().build_middleware_stack(), access_lines=self._access_lines)
