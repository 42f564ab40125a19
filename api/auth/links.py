"""Signed result links: a viewer or PACS fetches a mask or overlay without the API key.

A link is the path plus ``?client=…&expires=…&signature=…``: HMAC-SHA256 over the path, the
client and the expiry (epoch seconds) under a server key, base64url without padding. Keys
rotate: the first key signs, every key verifies, so a new key goes first and the old one
stays in the list until the links it signed have expired. Without configured keys, one is
made once in ``<data_dir>/link.key`` (mode 0600).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from api.auth.principal import Principal, Scope
from api.errors import InvalidLink

KEY_FILE = "link.key"
MIN_KEY_CHARS = 32  # 32 characters of a generated key are 190 bits or more
# The query parameters a signed link carries.
CLIENT, EXPIRES, SIGNATURE = "client", "expires", "signature"
SIGNED_LINK = "signed-link"  # Principal.method of a caller let in by a link


def now() -> float:
    """The time links are signed and checked at, epoch seconds (tests replace it)."""
    return time.time()


@dataclass(frozen=True)
class LinkClaim:
    """What a presented link says: its path, the client it was signed for, its expiry."""

    path: str
    client: str
    expires: int
    signature: str


class LinkSigner:
    """Signs links with the first key and verifies them against every key."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("a link signer needs at least one key")
        self._keys = tuple(keys)

    def query(self, path: str, client: str, expires: int) -> dict[str, str]:
        """The query parameters that make ``path`` a link for ``client`` until ``expires``."""
        return {CLIENT: client, EXPIRES: str(expires),
                SIGNATURE: _signature(self._keys[0], path, client, expires)}

    def verify(self, claim: LinkClaim, now: float) -> None:
        """Raise :class:`InvalidLink` unless a key signed ``claim`` and it has not expired."""
        signed = any(
            hmac.compare_digest(_signature(key, claim.path, claim.client, claim.expires),
                                claim.signature)
            for key in self._keys
        )
        if not signed:
            raise InvalidLink("the link's signature does not match its path, client and expiry")
        if now >= claim.expires:
            raise InvalidLink("the link has expired; read the study again for fresh links")


class SignedLinks:
    """The service's links: signed for ``ttl_s`` from now, and checked for requests that carry
    no credentials (:class:`api.auth.principal.LinkVerifier`)."""

    def __init__(self, signer: LinkSigner, ttl_s: int) -> None:
        self.signer = signer
        self.ttl_s = ttl_s

    def query(self, path: str, client: str) -> dict[str, str]:
        """The query that makes ``path`` a link for ``client``, valid for ``ttl_s``."""
        return self.signer.query(path, client, int(now()) + self.ttl_s)

    def verify_link(self, path: str, query: Mapping[str, str]) -> Principal | None:
        """``studies:read`` of ``path`` for the link's client; None when there is no link."""
        client, expires, signature = (query.get(name) for name in (CLIENT, EXPIRES, SIGNATURE))
        if client is None and expires is None and signature is None:
            return None
        if client is None or expires is None or signature is None:
            raise InvalidLink("a signed link carries client, expires and signature")
        try:
            expiry = int(expires)
        except ValueError as exc:
            raise InvalidLink("the link's expiry is not a time") from exc
        self.signer.verify(LinkClaim(path, client, expiry, signature), now())
        return Principal(client, frozenset({Scope.READ}), method=SIGNED_LINK)


def _signature(key: bytes, path: str, client: str, expires: int) -> str:
    # JSON keeps the three fields apart whatever characters a client name holds.
    message = json.dumps(["bonemets-link-v1", path, client, expires]).encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def link_keys(configured: str | None, data_dir: Path) -> list[bytes]:
    """The keys from ``BONEMETS_LINK_KEYS`` (comma-separated), or the generated one."""
    if configured is not None and configured.strip():
        keys = [part.strip() for part in configured.split(",") if part.strip()]
        short = [i for i, key in enumerate(keys) if len(key) < MIN_KEY_CHARS]
        if short:
            raise ValueError(f"link keys must be at least {MIN_KEY_CHARS} characters;"
                             f" key(s) {short} (0-based) are shorter")
        return [key.encode() for key in keys]
    return [_generated_key(data_dir / KEY_FILE)]


def _generated_key(path: Path) -> bytes:
    """The key in ``path``, made on first use, readable by the service alone."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole under another name, then linked: a process starting beside this one
        # never reads a half-written key, and the first link made wins.
        partial = path.with_name(f"{path.name}.{secrets.token_hex(4)}")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
        try:
            os.link(partial, path)
        except FileExistsError:
            pass
        finally:
            partial.unlink()
    key = path.read_bytes().strip()
    if len(key) < MIN_KEY_CHARS:  # an emptied or hand-edited file must not sign with ""
        raise ValueError(f"{path} holds no usable link key; remove it to have one made")
    return key
