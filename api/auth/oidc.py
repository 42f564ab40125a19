"""OAuth 2.0 / OpenID Connect access tokens (JWTs) from the hospital's identity provider.

A token is accepted when it is signed (RS256 or ES256) by a key of the issuer's JWKS, its
``iss`` is the configured issuer, its ``aud`` holds the configured audience, and the time is
between its ``nbf`` and ``exp`` (30 s of clock skew allowed). The client is the claim named
by ``client_claim`` (``azp`` by default; when a token lacks it, ``client_id``, then ``sub``),
the scopes those of ``scopes_claim`` (a space-separated string such as ``scope``, or a list
such as ``scp``) that bonemets knows; other scopes a provider adds (``openid``, ...) are
ignored. PyJWT does the JOSE work; nothing here parses a signature by hand.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx
import jwt
from jwt.exceptions import PyJWTError

from api.auth.jwks import ALLOWED_ALGORITHMS, JwksCache
from api.auth.principal import Principal, Scope
from api.errors import Unauthenticated

log = logging.getLogger(__name__)

CLOCK_SKEW_S = 30
FALLBACK_CLIENT_CLAIMS = ("client_id", "sub")
KNOWN_SCOPES = frozenset(scope.value for scope in Scope)
# Providers' client ids are GUIDs, names, e-mail-like or URL-like: any visible ASCII, bounded.
OIDC_CLIENT_PATTERN = re.compile(r"[!-~]{1,128}")


class OidcVerifier:
    """Checks access tokens of one issuer for one audience."""

    def __init__(self, issuer: str, audience: str | None, *, client_claim: str = "azp",
                 scopes_claim: str = "scope", http: httpx.AsyncClient | None = None,
                 min_refresh_s: float = 10.0) -> None:
        if not audience:
            # Without an audience, a token the provider issued for any other application
            # would be accepted here.
            raise ValueError("BONEMETS_OIDC_AUDIENCE must be set with BONEMETS_OIDC_ISSUER")
        self.issuer = issuer
        self.audience = audience
        self.client_claim = client_claim
        self.scopes_claim = scopes_claim
        self._http = http or httpx.AsyncClient(timeout=httpx.Timeout(5.0))
        self.jwks = JwksCache(issuer, self._http, min_refresh_s=min_refresh_s)

    async def close(self) -> None:
        await self._http.aclose()

    async def verify(self, token: str) -> Principal:
        """The caller a token names; :class:`Unauthenticated` for any token not proven good."""
        try:
            header = jwt.get_unverified_header(token)
        except PyJWTError:
            raise Unauthenticated("the bearer token is neither an API key nor a JWT") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALLOWED_ALGORITHMS:
            raise Unauthenticated(f"tokens signed with {alg!r} are not accepted")
        if not isinstance(kid, str):
            raise Unauthenticated("the token names no signing key (kid)")
        key = await self.jwks.key(kid)
        if key is None:
            log.info("token refused: the provider has no key %r", kid[:64])
            raise Unauthenticated("the token's signing key is not the identity provider's")
        try:
            claims = jwt.decode(
                token, key=key, algorithms=list(ALLOWED_ALGORITHMS), audience=self.audience,
                issuer=self.issuer, leeway=CLOCK_SKEW_S,
                options={"require": ["exp", "iss", "aud"]},
            )
        except PyJWTError as exc:
            log.info("token refused (kid %r): %s", kid[:64], type(exc).__name__)
            raise Unauthenticated(f"the token is not valid here: {exc}") from None
        return self._principal(claims)

    def _principal(self, claims: dict[str, Any]) -> Principal:
        client = client_of(claims, self.client_claim)
        if client is None:
            raise Unauthenticated(f"the token names no client ({self.client_claim!r})")
        return Principal(client, scopes_of(claims, self.scopes_claim), method="oidc")


def client_of(claims: dict[str, Any], claim: str) -> str | None:
    """The client id: ``claim``, else ``client_id``, else ``sub``; None if none is usable."""
    for name in (claim, *FALLBACK_CLIENT_CLAIMS):
        value = claims.get(name)
        if isinstance(value, str) and value:
            return value if OIDC_CLIENT_PATTERN.fullmatch(value) else None
    return None


def scopes_of(claims: dict[str, Any], claim: str) -> frozenset[str]:
    """The bonemets scopes in ``claim``: a space-separated string or a list of strings."""
    value = claims.get(claim)
    if isinstance(value, str):
        names = value.split()
    elif isinstance(value, list):
        names = [name for name in value if isinstance(name, str)]
    else:
        names = []
    return frozenset(names) & KNOWN_SCOPES
