"""The caller of a request, once authenticated, and the scopes a route can ask for."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class Scope(StrEnum):
    """What a caller may do. ``admin`` includes every other scope and every client's studies."""

    WRITE = "studies:write"  # submit a study
    READ = "studies:read"  # its own results, masks, overlays
    DELETE = "studies:delete"  # delete its own studies
    METRICS = "metrics:read"  # this process's Prometheus metrics (GET /metrics)
    ADMIN = "admin"  # every client's studies; keys


@dataclass(frozen=True)
class Principal:
    """An authenticated client: its id (the owner of the studies it submits) and scopes."""

    client: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    method: str = "api-key"  # api-key | oidc | signed-link | anonymous (auth off)

    @property
    def is_admin(self) -> bool:
        return Scope.ADMIN in self.scopes

    def allows(self, scope: Scope) -> bool:
        return self.is_admin or scope in self.scopes

    def may_see(self, owner: str | None) -> bool:
        """Whether a study owned by ``owner`` exists for this caller (else it answers 404)."""
        return self.is_admin or owner == self.client


# With BONEMETS_AUTH=off (loopback only): one local caller that may do everything.
LOCAL_OPERATOR = Principal("local", frozenset(Scope), method="anonymous")
# On the open paths (health, the API's documentation): whoever calls, with no scope.
ANONYMOUS = Principal("anonymous", frozenset(), method="anonymous")


class LinkVerifier(Protocol):
    """Checks a signed result link, for requests that carry no credentials in headers."""

    def verify_link(self, path: str, query: Mapping[str, str]) -> Principal | None:
        """The principal a valid link grants; None when ``query`` holds no link signature.

        Raises :class:`api.errors.InvalidLink` for a signature that does not match, or an
        expired link.
        """
        ...
