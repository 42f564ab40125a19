"""Callers for the access-control tests: ``Authorization: Bearer <name>`` names one.

Until credentials are checked for real, ``authenticate`` is overridden with :func:`by_bearer`:
a request without a known name is refused as a real one would be.
"""

from __future__ import annotations

from fastapi import FastAPI, Request

from api.auth.principal import Principal, Scope
from api.errors import Unauthenticated
from api.http.auth import authenticate

OWN = frozenset({Scope.WRITE, Scope.READ, Scope.DELETE})
CALLERS = {
    "alice": Principal("alice", OWN),
    "bob": Principal("bob", OWN),
    "root": Principal("root", frozenset({Scope.ADMIN})),
    "writer": Principal("writer", frozenset({Scope.WRITE})),
}


async def by_bearer(request: Request) -> Principal:
    name = request.headers.get("authorization", "").removeprefix("Bearer ")
    if name not in CALLERS:
        raise Unauthenticated("no credentials")
    return CALLERS[name]


def as_caller(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {name}"}


def with_callers(app: FastAPI) -> FastAPI:
    app.dependency_overrides[authenticate] = by_bearer
    return app
