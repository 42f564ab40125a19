"""The audit trail: one JSON line per access, in its own file, never in the service log.

Each line says who (the authenticated client, else ``anonymous``), did what (submit, read,
list, delete, download, auth-failure), to which job, with what outcome (the HTTP status),
from where (the peer address), and when (UTC, ISO 8601), with the method and the route's
path *template*. Nothing the client wrote is copied: no query string (signed links carry
signatures), no header value, and a job id only where it has the form of one we issue, so
that a name typed into a URL never reaches the file. Health probes and the docs pages and
their assets are not audited (:data:`UNAUDITED`).

The file is appended to through a ``WatchedFileHandler``: when logrotate moves it away the
next line reopens it, so lines are never written into a file that is gone.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.config import Settings

AUDIT_LOGGER = "bonemets.audit"
AUDIT_FILE = "audit.log"
# Probes every few seconds and static pages: no study is reached through them.
UNAUDITED = ("/healthz", "/readyz", "/docs", "/redoc", "/openapi.json")
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
KEYS_PREFIX = "/v1/keys"  # API key management, wherever it is served
# (method, route template) -> action; other routes are audited as "access".
ACTIONS = {
    ("POST", "/v1/studies"): "submit",
    ("GET", "/v1/studies"): "list",
    ("GET", "/v1/studies/{job_id}"): "read",
    ("DELETE", "/v1/studies/{job_id}"): "delete",
    ("GET", "/v1/studies/{job_id}/slices/{index}/mask.png"): "download",
    ("GET", "/v1/studies/{job_id}/slices/{index}/overlay.png"): "download",
}


def audit_path(settings: Settings) -> Path:
    """Where the trail is written: ``BONEMETS_AUDIT_LOG``, else ``<data_dir>/audit.log``."""
    return settings.audit_log or settings.data_dir / AUDIT_FILE


def install_audit(app: FastAPI, settings: Settings) -> None:
    """Audit every request to ``app`` (outermost, so refusals of other layers are seen too).

    Installing twice changes nothing: one line per request.
    """
    if not any(getattr(m, "cls", None) is AuditTrail for m in app.user_middleware):
        app.add_middleware(AuditTrail, path=audit_path(settings), routes=app.router.routes)


def audit_logger(path: Path) -> logging.Logger:
    """A logger of its own, outside logging's tree: nothing reaches the root logger's
    handlers, and two apps in one process (tests) never write into each other's file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.WatchedFileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.Logger(AUDIT_LOGGER, logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    return logger


class AuditTrail:
    """ASGI middleware writing one audit line per HTTP request once it is answered."""

    def __init__(self, app: ASGIApp, path: Path, routes: Sequence[BaseRoute] = ()) -> None:
        self.app = app
        self.path = path
        self.routes = routes  # to name the route of a request refused before routing
        self._logger: logging.Logger | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._opening_on_startup(receive),
                           self._closing_on_shutdown(send))
            return
        if scope["type"] != "http" or _unaudited(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        answer: dict[str, Any] = {"status": 500, "location": None}

        async def noting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                answer["location"] = _header(message.get("headers", ()), b"location")
            await send(message)

        try:
            await self.app(scope, receive, noting_send)
        finally:
            if "route" not in scope:
                scope = {**scope, **_routed(scope, self.routes)}
            self.write(audit_record(scope, answer["status"], answer["location"]))

    def write(self, record: dict[str, Any]) -> None:
        if self._logger is None:
            self._logger = audit_logger(self.path)
        self._logger.info(json.dumps(record, separators=(",", ":")))

    def close(self) -> None:
        if self._logger is not None:
            for handler in list(self._logger.handlers):
                handler.close()
                self._logger.removeHandler(handler)
            self._logger = None

    def _opening_on_startup(self, receive: Receive) -> Receive:
        """Open the file as the app starts: a trail that cannot be written stops the start
        (the lifespan fails), rather than every request after it."""

        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup" and self._logger is None:
                self._logger = audit_logger(self.path)
            return message

        return wrapped

    def _closing_on_shutdown(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            await send(message)
            if message["type"] == "lifespan.shutdown.complete":
                self.close()

        return wrapped


def audit_record(scope: Scope, status: int, location: str | None) -> dict[str, Any]:
    """The line for one answered request: only values the service made or checked."""
    route = scope.get("route")
    template = getattr(route, "path", None) if route is not None else None
    method = scope.get("method", "")
    principal = (scope.get("state") or {}).get("principal")
    client = scope.get("client")
    return {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "client": getattr(principal, "client", None) or "anonymous",
        "credential": getattr(principal, "method", None),
        "action": _action(method, template, status),
        "job_id": _job_id(scope, location),
        "outcome": status,
        "source": client[0] if client else None,
        "method": method,
        "path": template,  # None for a path no route matched: the raw path is the client's
        "request_id": _request_id(scope),
    }


def _routed(scope: Scope, routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """The route and path parameters the router would have found (for an early refusal)."""
    for route in routes:
        match, child = route.matches(scope)
        if match is not Match.FULL:
            continue
        # FastAPI wraps an included router: its own routes name the template.
        included = getattr(getattr(route, "original_router", None), "routes", None)
        if included is not None:
            return _routed(scope, included)
        return {"route": route, **child}
    return {}


def _action(method: str, template: str | None, status: int) -> str:
    if status == 401:
        return "auth-failure"
    if template is not None and template.startswith(KEYS_PREFIX):
        return "key-use"
    return ACTIONS.get((method, template or ""), "access")


def _job_id(scope: Scope, location: str | None) -> str | None:
    candidate = (scope.get("path_params") or {}).get("job_id")
    if candidate is None and location:
        candidate = location.rstrip("/").rsplit("/", 1)[-1]
    return candidate if isinstance(candidate, str) and JOB_ID.match(candidate) else None


def _request_id(scope: Scope) -> str | None:
    """A request id the service set (``request.state.request_id``); none is taken from the
    client, whose header could carry anything."""
    value = (scope.get("state") or {}).get("request_id")
    return value if isinstance(value, str) else None


def _unaudited(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in UNAUDITED)


def _header(headers: Any, name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None
