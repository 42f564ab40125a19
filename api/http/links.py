"""Signed result links over HTTP: the links a reader is given, and who a link lets in.

``GET /v1/studies/{id}`` signs each stored path at the time it answers (the stored result
keeps plain paths, so no stored link is ever stale). The mask and overlay routes take their
caller from a valid link, or else from the credentials, as any route does.
"""

from __future__ import annotations

import inspect
import time
from typing import Annotated
from urllib.parse import urlencode, urlsplit

from fastapi import Depends, Query, Request

from api.auth.links import LinkClaim, LinkSigner, link_keys
from api.auth.principal import Principal, Scope
from api.errors import Forbidden, InvalidLink
from api.http import auth
from api.http.deps import ServicesDep
from api.study.views import LinkMaker

SIGNED_LINK = "signed-link"  # Principal.method of a caller let in by a link


def link_clock() -> float:
    """Now, in epoch seconds, for links' expiry; tests override it instead of waiting."""
    return time.time()


def get_link_signer(services: ServicesDep) -> LinkSigner:
    """The signer of ``BONEMETS_LINK_KEYS``, or of the key generated in the data directory."""
    settings = services.settings
    return LinkSigner(link_keys(settings.link_keys, settings.data_dir))


ClockDep = Annotated[float, Depends(link_clock)]
SignerDep = Annotated[LinkSigner, Depends(get_link_signer)]


def viewer_of(principal: Principal) -> str | None:
    """The client whose studies ``principal`` sees; None for an admin, who sees everyone's."""
    if principal.is_admin:
        return None
    if not principal.client and principal.method != SIGNED_LINK:
        # The empty client names the studies from before owners (admin only) in links.
        raise Forbidden("a caller without a client name sees no study")
    return principal.client


def result_links(services: ServicesDep, signer: SignerDep, now: ClockDep) -> LinkMaker:
    """Links that expire ``link_ttl_s`` from now, absolute under ``BONEMETS_PUBLIC_URL``."""
    settings = services.settings
    expires = int(now) + settings.link_ttl_s
    base = settings.public_url.rstrip("/")

    def link(stored: str, owner: str | None) -> str:
        # A result stored with an absolute link (public_url, before signing) keeps its path.
        path = urlsplit(stored).path
        return f"{base}{path}?{urlencode(signer.query(path, owner or '', expires))}"

    return link


async def link_or_reader(
    request: Request, signer: SignerDep, now: ClockDep,
    client: Annotated[str | None, Query(description="signed link: the study's client")] = None,
    expires: Annotated[str | None, Query(description="signed link: expiry, epoch s")] = None,
    signature: Annotated[str | None, Query(description="signed link: HMAC-SHA256")] = None,
) -> Principal:
    """The caller of a mask or overlay: a valid signed link, else credentials with
    ``studies:read``."""
    if client is None and expires is None and signature is None:
        principal = await _authenticated(request)
        if not principal.allows(Scope.READ):
            raise Forbidden(f"this needs the scope {Scope.READ.value!r}")
    else:
        signer.verify(_claim(request, client, expires, signature), now)
        principal = Principal(client or "", frozenset({Scope.READ}), method=SIGNED_LINK)
    request.state.principal = principal
    return principal


def _claim(request: Request, client: str | None, expires: str | None,
           signature: str | None) -> LinkClaim:
    if client is None or expires is None or signature is None:
        raise InvalidLink("a signed link carries client, expires and signature")
    try:
        expiry = int(expires)
    except ValueError as exc:
        raise InvalidLink("the link's expiry is not a time") from exc
    path = request.url.path
    root = request.scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]  # links name the path the app routes, behind any prefix
    return LinkClaim(path, client, expiry, signature)


async def _authenticated(request: Request) -> Principal:
    # Called here, not declared as a dependency: a request with a valid link has no
    # credentials, and a declared dependency would refuse it before this one could look.
    # A test's override of ``authenticate`` is honoured as FastAPI would honour it.
    authenticate = request.app.dependency_overrides.get(auth.authenticate, auth.authenticate)
    answer = authenticate(request) if inspect.signature(authenticate).parameters else (
        authenticate())
    principal: Principal = await answer if inspect.isawaitable(answer) else answer
    return principal


LinkOrReader = Annotated[Principal, Depends(link_or_reader)]
LinksDep = Annotated[LinkMaker, Depends(result_links)]
