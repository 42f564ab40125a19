"""Signed result links over HTTP: the links a reader is given, and the routes they open.

``GET /v1/studies/{id}`` signs each stored path at the time it answers (the stored result
keeps plain paths, so no stored link is ever stale). A request that carries a link and no
credentials is let in by :func:`api.http.auth.authenticate` (through ``Services.links``) as a
``studies:read`` caller of that one path; the mask and overlay routes take that caller, or
credentials with ``studies:read``.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode, urlsplit

from fastapi import Depends, Query

from api.auth.links import SIGNED_LINK, SignedLinks
from api.auth.principal import Principal, Scope
from api.errors import Forbidden
from api.http.auth import Caller
from api.http.deps import ServicesDep
from api.study.views import LinkMaker


def viewer_of(principal: Principal) -> str | None:
    """The client whose studies ``principal`` sees; None for an admin, who sees everyone's."""
    if principal.is_admin:
        return None
    if not principal.client and principal.method != SIGNED_LINK:
        # The empty client names the studies from before owners (admin only) in links.
        raise Forbidden("a caller without a client name sees no study")
    return principal.client


def result_links(services: ServicesDep) -> LinkMaker:
    """Links that expire ``link_ttl_s`` from now, absolute under ``BONEMETS_PUBLIC_URL``."""
    links = services.links
    assert isinstance(links, SignedLinks), "the lifespan makes the service's signed links"
    base = services.settings.public_url.rstrip("/")

    def link(stored: str, owner: str | None) -> str:
        # A result stored with an absolute link (public_url, before signing) keeps its path.
        path = urlsplit(stored).path
        return f"{base}{path}?{urlencode(links.query(path, owner or ''))}"

    return link


async def link_or_reader(
    principal: Caller,
    client: Annotated[str | None, Query(description="signed link: the study's client")] = None,
    expires: Annotated[str | None, Query(description="signed link: expiry, epoch s")] = None,
    signature: Annotated[str | None, Query(description="signed link: HMAC-SHA256")] = None,
) -> Principal:
    """The caller of a mask or overlay: a signed link (checked by ``authenticate``), else
    credentials with ``studies:read``. The query parameters are declared for the docs."""
    if principal.method != SIGNED_LINK and not principal.allows(Scope.READ):
        raise Forbidden(f"this needs the scope {Scope.READ.value!r}")
    return principal


LinkOrReader = Annotated[Principal, Depends(link_or_reader)]
LinksDep = Annotated[LinkMaker, Depends(result_links)]
