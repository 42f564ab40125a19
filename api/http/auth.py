"""Credentials on every route: the dependencies a route declares for the scope it needs.

``Authorization: Bearer <API key or OIDC access token>`` (or ``X-API-Key: <API key>``) is
read here and checked by :mod:`api.auth`: a ``bm_…`` token against the key store, any other
bearer token, when an OIDC issuer is configured, as a JWT of that issuer. :func:`authenticate`
is an app-wide dependency (``FastAPI(dependencies=...)``), so every route, including one added
later that declares nothing, refuses an anonymous request unless its path is one of
``settings.auth_open_paths``; a route then takes the caller through :data:`Submitter`,
:data:`Reader`, :data:`Deleter` or :data:`Administrator`. No credentials, or bad ones, is a
401 with ``WWW-Authenticate: Bearer``; a caller without the scope, a 403.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import lru_cache
from typing import Annotated, Any

import fastapi.routing
from fastapi import Depends, Request
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as ASGIScope

from api import logs
from api.auth.keys import KEY_PATTERN
from api.auth.links import SIGNED_LINK
from api.auth.principal import ANONYMOUS, LOCAL_OPERATOR, Principal, Scope
from api.errors import Forbidden, Unauthenticated
from api.http.deps import get_services
from api.study.services import Services

log = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
API_KEY_PREFIX = "bm_"


@lru_cache(maxsize=8)
def open_paths(setting: str) -> tuple[frozenset[str], tuple[str, ...]]:
    """``/healthz,/docs/`` as (exact paths, prefixes): a trailing ``/`` opens a prefix."""
    entries = [entry.strip() for entry in setting.split(",") if entry.strip()]
    return (frozenset(e for e in entries if not e.endswith("/")),
            tuple(e for e in entries if e.endswith("/")))


def is_open(path: str, setting: str) -> bool:
    """Whether ``path`` (a route's path template) takes no credentials."""
    exact, prefixes = open_paths(setting)
    return path in exact or path.startswith(prefixes)


def route_path(request: Request) -> str:
    """The path template of the route that matched (not the raw URL, whose spelling varies)."""
    route: BaseRoute | None = request.scope.get("route")
    return str(getattr(route, "path", request.url.path))


def app_path(request: Request) -> str:
    """The path the app routes, behind any proxy prefix (what a signed link names)."""
    path, root = request.url.path, str(request.scope.get("root_path", ""))
    return path[len(root):] if root and path.startswith(root) else path


async def authenticate(request: Request) -> Principal:
    """The caller of ``request`` (also left in ``request.state.principal``): checked
    credentials, or 401; on an open path, :data:`ANONYMOUS`; with auth off, the local operator.
    """
    services = get_services(request)
    settings = services.settings
    if settings.auth == "off":
        principal = LOCAL_OPERATOR
    elif is_open(route_path(request), settings.auth_open_paths):
        principal = ANONYMOUS
    else:
        principal = await _verify(request, services)
    request.state.principal = principal
    logs.client.set(principal.client)  # the request's log lines name it from here on
    return principal


async def _verify(request: Request, services: Services) -> Principal:
    authorization = request.headers.get("authorization")
    api_key = request.headers.get(API_KEY_HEADER)
    if authorization is not None:
        return await _bearer(authorization, services)
    if api_key is not None:
        return await _api_key(api_key.strip(), services)
    if services.links is not None:
        principal = services.links.verify_link(app_path(request), request.query_params)
        if principal is not None:
            return principal
    raise Unauthenticated("send an API key or access token: Authorization: Bearer <token>")


async def _bearer(authorization: str, services: Services) -> Principal:
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise Unauthenticated("the Authorization header must read 'Bearer <token>'")
    if token.startswith(API_KEY_PREFIX):
        return await _api_key(token, services)
    if services.oidc is None:
        raise Unauthenticated("the bearer token is not an API key of this service")
    return await services.oidc.verify(token)


async def _api_key(key: str, services: Services) -> Principal:
    # A primary-key lookup, but SQLite may wait on a writer (`bonemets keys create`).
    principal = await asyncio.to_thread(services.keys.verify, key)
    if principal is None:
        match = KEY_PATTERN.fullmatch(key)
        # The key id is not secret (it is listed by `bonemets keys list`); the key is.
        log.info("API key refused (id %s)", match.group(1) if match else "malformed")
        raise Unauthenticated("the API key is malformed, unknown or revoked")
    return principal


class _Guarded:
    """A mounted app or plain route (no FastAPI dependencies run there) behind credentials."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope)
            services = get_services(request)
            if services.settings.auth != "off":
                request.state.principal = await _verify(request, services)
        await self.app(scope, receive, send)


def flat_routes(routes: Sequence[BaseRoute]) -> list[Any]:
    """Every route with its full path, routers included into the app flattened.

    Recent FastAPI keeps an included router as one entry of ``app.routes``; its
    ``iter_route_contexts`` yields each route with the prefixes applied (``.path``) and the
    route object itself (``.original_route``). Older FastAPI flattens ``app.routes`` itself.
    """
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    return list(iterate(routes)) if iterate is not None else list(routes)


def original(route: Any) -> BaseRoute:
    """The route object behind an entry of :func:`flat_routes`."""
    found: BaseRoute = getattr(route, "original_route", route)
    return found


def guard_plain_routes(routes: Sequence[BaseRoute], open_setting: str) -> list[str]:
    """Put every mount and plain route that is not open behind :func:`authenticate`'s checks.

    The app-wide dependency covers FastAPI's own routes only; this covers the rest (a static
    folder, ``/openapi.json`` when it is not listed open). Called once the app is complete
    (at startup); returns the paths it guarded.
    """
    guarded = []
    for entry in flat_routes(routes):
        route = original(entry)
        if isinstance(route, APIRoute) or not isinstance(route, Mount | Route):
            continue
        if is_open(entry.path, open_setting) or isinstance(route.app, _Guarded):
            continue
        route.app = _Guarded(route.app)
        guarded.append(entry.path)
    return guarded


Caller = Annotated[Principal, Depends(authenticate)]


def require(scope: Scope) -> Callable[[Request, Principal], Awaitable[Principal]]:
    """A dependency: the authenticated caller, who must hold ``scope``."""

    async def caller_with_scope(request: Request, principal: Caller) -> Principal:
        if principal.method == SIGNED_LINK:
            raise Forbidden("a signed link opens only the mask or overlay it was made for")
        if not principal.allows(scope):
            raise Forbidden(f"this needs the scope {scope.value!r}")
        request.state.principal = principal
        return principal

    caller_with_scope.required_scope = scope  # type: ignore[attr-defined]  # for the OpenAPI
    return caller_with_scope


Submitter = Annotated[Principal, Depends(require(Scope.WRITE))]
Reader = Annotated[Principal, Depends(require(Scope.READ))]
Deleter = Annotated[Principal, Depends(require(Scope.DELETE))]
Administrator = Annotated[Principal, Depends(require(Scope.ADMIN))]
