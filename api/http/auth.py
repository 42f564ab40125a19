"""Credentials on every route: the dependencies a route declares for the scope it needs.

``Authorization: Bearer <API key or OIDC access token>`` (or ``X-API-Key``) is read here and
checked by :mod:`api.auth`; a route takes the caller through :data:`Submitter`,
:data:`Reader`, :data:`Deleter` or :data:`Administrator`. No credentials, or bad ones, is a
401 with ``WWW-Authenticate: Bearer``; a caller without the scope, a 403.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from api.auth.principal import LOCAL_OPERATOR, Principal, Scope
from api.errors import Forbidden


async def authenticate(request: Request) -> Principal:
    """The caller of ``request``. (Until credentials are checked: the local operator.)"""
    return LOCAL_OPERATOR


Caller = Annotated[Principal, Depends(authenticate)]


def require(scope: Scope) -> Callable[[Request, Principal], Awaitable[Principal]]:
    """A dependency: the authenticated caller, who must hold ``scope``."""

    async def caller_with_scope(request: Request, principal: Caller) -> Principal:
        if not principal.allows(scope):
            raise Forbidden(f"this needs the scope {scope.value!r}")
        request.state.principal = principal
        return principal

    return caller_with_scope


Submitter = Annotated[Principal, Depends(require(Scope.WRITE))]
Reader = Annotated[Principal, Depends(require(Scope.READ))]
Deleter = Annotated[Principal, Depends(require(Scope.DELETE))]
Administrator = Annotated[Principal, Depends(require(Scope.ADMIN))]
