"""Callers for the access-control tests: ``Authorization: Bearer <name>`` names one.

``authenticate`` is overridden with :func:`by_bearer`, so a test names its caller instead of
making keys; a request without the header goes to the real check (links, or a 401).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request

from api.auth.principal import Principal, Scope
from api.config import Settings
from api.errors import Unauthenticated
from api.http.app import create_app
from api.http.auth import Caller, Deleter, Reader, authenticate
from tests.api.fakes import BrightBoneModel

OWN = frozenset({Scope.WRITE, Scope.READ, Scope.DELETE})
CALLERS = {
    "alice": Principal("alice", OWN),
    "bob": Principal("bob", OWN),
    "root": Principal("root", frozenset({Scope.ADMIN})),
    "writer": Principal("writer", frozenset({Scope.WRITE})),
}


async def by_bearer(request: Request) -> Principal:
    """The named caller; a request without the header is the real one's to judge (a signed
    link, or a 401)."""
    header = request.headers.get("authorization")
    if header is None:
        return await authenticate(request)
    name = header.removeprefix("Bearer ")
    if name not in CALLERS:
        raise Unauthenticated("no credentials")
    return CALLERS[name]


def as_caller(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {name}"}


def with_callers(app: FastAPI) -> FastAPI:
    app.dependency_overrides[authenticate] = by_bearer
    return app


def probed_app(settings: Settings) -> FastAPI:
    """The gateway, plus routes that show who the caller is and what a scope lets through."""
    app = create_app(settings, model_factory=lambda _: BrightBoneModel())

    @app.get("/v1/whoami")
    async def whoami(caller: Caller) -> dict[str, Any]:
        return {"client": caller.client, "scopes": sorted(caller.scopes), "method": caller.method}

    @app.get("/v1/needs-read")
    async def needs_read(caller: Reader) -> dict[str, Any]:
        return {"client": caller.client}

    @app.get("/v1/needs-delete")
    async def needs_delete(caller: Deleter) -> dict[str, Any]:
        return {"client": caller.client}

    return app
