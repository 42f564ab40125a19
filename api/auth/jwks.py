"""An identity provider's signing keys: found through its discovery document, cached by kid.

``<issuer>/.well-known/openid-configuration`` names the ``jwks_uri`` (OpenID Connect
Discovery 1.0, section 4); the JSON Web Key Set there is parsed by PyJWT and kept by key id.
A token naming a kid the cache lacks triggers one refresh (the provider rotated its keys),
but refreshes are at most one per ``min_refresh_s``, so a flood of tokens with made-up kids
costs the provider one request per interval. A set older than ``max_age_s`` is fetched again
before use, so a key the provider withdrew stops verifying within that time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
from jwt import PyJWK
from jwt.exceptions import PyJWTError

log = logging.getLogger(__name__)

# Asymmetric signatures only: never "none", never an HMAC whose secret a client could guess
# from the public key (the RS256/HS256 confusion).
ALLOWED_ALGORITHMS = ("RS256", "ES256")


class JwksUnavailable(Exception):
    """The discovery document or the key set could not be fetched or read."""


class JwksCache:
    """The signing keys of one issuer, fetched lazily over ``http``, refreshed on a new kid."""

    def __init__(self, issuer: str, http: httpx.AsyncClient, *, min_refresh_s: float = 10.0,
                 max_age_s: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.issuer = issuer
        self._http = http
        self.min_refresh_s = min_refresh_s
        self.max_age_s = max_age_s
        self.clock = clock
        self._keys: dict[str, PyJWK] = {}
        self._jwks_uri: str | None = None
        self._fetched_at: float | None = None  # last successful fetch
        self._tried_at: float | None = None  # last attempt, successful or not
        self._lock = asyncio.Lock()
        self.fetches = 0  # key set requests made, for tests and metrics

    async def key(self, kid: str) -> PyJWK | None:
        """The key ``kid`` names; None when the provider does not have it (after a refresh)."""
        if not self._stale() and kid in self._keys:
            return self._keys[kid]
        async with self._lock:  # concurrent requests wait for one refresh
            if self._stale() or (kid not in self._keys and self._may_refresh()):
                await self._refresh()
            return self._keys.get(kid)

    def _stale(self) -> bool:
        return self._fetched_at is None or self.clock() - self._fetched_at > self.max_age_s

    def _may_refresh(self) -> bool:
        return self._tried_at is None or self.clock() - self._tried_at >= self.min_refresh_s

    async def _refresh(self) -> None:
        if not self._may_refresh():
            return
        self._tried_at = self.clock()
        try:
            if self._jwks_uri is None:
                self._jwks_uri = await self._discover()
            self.fetches += 1
            self._keys = signing_keys(await self._get_json(self._jwks_uri))
        except JwksUnavailable as exc:
            log.warning("the identity provider's keys could not be fetched: %s", exc)
            return
        self._fetched_at = self.clock()
        log.info("identity provider keys loaded: kids %s", sorted(self._keys))

    async def _discover(self) -> str:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = await self._get_json(url)
        # Discovery, section 4.3: the document must name the issuer it was fetched for.
        if document.get("issuer") != self.issuer:
            raise JwksUnavailable(f"{url} names issuer {document.get('issuer')!r}")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri:
            raise JwksUnavailable(f"{url} has no jwks_uri")
        return jwks_uri

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = await self._http.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise JwksUnavailable(f"{url}: {exc}") from exc
        if not isinstance(document, dict):
            raise JwksUnavailable(f"{url}: not a JSON object")
        return document


def signing_keys(jwks: dict[str, Any]) -> dict[str, PyJWK]:
    """The keys of a JWK Set that may verify a token here, by kid; others are skipped."""
    keys: dict[str, PyJWK] = {}
    entries = jwks.get("keys")
    if not isinstance(entries, list):
        raise JwksUnavailable("the key set has no 'keys' list")
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            continue
        if entry.get("use", "sig") != "sig":
            continue  # an encryption key
        try:
            key = PyJWK(entry)
        except PyJWTError:
            continue  # a key type or curve PyJWT does not read
        if key.algorithm_name in ALLOWED_ALGORITHMS:
            keys[entry["kid"]] = key
    return keys
