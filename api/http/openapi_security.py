"""The OpenAPI document says which operations need credentials, how to send them, and the 401
and 403 problems they may answer.

FastAPI would document security only for routes that declare a security object themselves;
here it follows what :func:`api.http.auth.authenticate` enforces (every route off the open
paths), so a route added later is documented as protected without declaring anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from api.http.auth import API_KEY_HEADER, flat_routes, is_open, original
from api.http.problems import problem_responses

SECURITY_SCHEMES = {
    "bearer": {
        "type": "http", "scheme": "bearer",
        "description": "An API key (`bm_…`, from `bonemets keys create`) or, where an"
        " identity provider is configured, its OAuth 2.0 / OIDC access token (a JWT).",
    },
    "apiKey": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER,
               "description": "An API key, for clients that cannot send a bearer token."},
}
# Either scheme on its own is enough.
SECURITY_REQUIREMENT: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]


def install_security_docs(app: FastAPI, open_setting: str) -> None:
    """Make ``app.openapi()`` document the security of every operation (FastAPI's own hook)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document_security(build(), app.routes, open_setting)
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document_security(spec: dict[str, Any], routes: list[Any], open_setting: str) -> None:
    """Add the schemes, and on each protected operation its requirement, 401 and 403."""
    spec.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    for route in flat_routes(routes):
        if not isinstance(original(route), APIRoute) or not route.include_in_schema:
            continue
        if is_open(route.path, open_setting):
            continue
        statuses = (401, 403) if needs_scope(route.dependant) else (401,)
        for method in route.methods or ():
            operation = spec["paths"].get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            operation["security"] = SECURITY_REQUIREMENT
            for status, response in problem_responses(*statuses).items():
                operation["responses"].setdefault(str(status), response)


def needs_scope(dependant: Dependant) -> bool:
    """Whether a route takes its caller through a scope check (``require``)."""
    return any(hasattr(dep.call, "required_scope") for dep in _walk(dependant))


def _walk(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _walk(sub)
