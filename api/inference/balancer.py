"""Several Triton endpoints as one model: requests spread over the healthy ones.

``BONEMETS_TRITON_URL`` may name several endpoints (``host1:8001,host2:8001``) or a DNS name
that resolves to many addresses (a Kubernetes headless Service: one per Triton pod). A name is
resolved again every ``refresh_s``, so pods that come and go are followed; each address gets
its own gRPC channel, since one long-lived channel to a Service's virtual IP would stick to
one pod. A request goes to the healthy endpoint with the fewest requests in flight; an
endpoint that is unreachable is taken out for ``cooldown_s`` (doubling while it stays down, up
to ``max_cooldown_s``) and the request is tried on another at once. The model's own refusals
(a bad answer, a shape) are not the endpoint's fault and pass through.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from api.errors import InferenceUnavailable
from api.inference.protocol import ModelInfo, Segmentation, SegmentationModel

log = logging.getLogger(__name__)

T = TypeVar("T")
Resolver = Callable[[str, int], list[str]]
Connect = Callable[[str], SegmentationModel]


def split_endpoints(urls: str) -> list[tuple[str, int]]:
    """``host:port`` entries, comma-separated, as (host, port); ValueError on a bad one."""
    endpoints = []
    for entry in (part.strip() for part in urls.split(",")):
        if not entry:
            continue
        host, sep, port = entry.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"a Triton endpoint is host:port, not {entry!r}")
        endpoints.append((host.strip("[]"), int(port)))
    if not endpoints:
        raise ValueError("no Triton endpoint given")
    return endpoints


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, as ``address:port`` (sorted, no duplicates)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = {str(info[4][0]) for info in infos}
    return sorted(f"[{a}]:{port}" if ":" in a else f"{a}:{port}" for a in addresses)


@dataclass
class Endpoint:
    url: str
    model: SegmentationModel
    inflight: int = 0
    failures: int = 0
    out_until: float = 0.0  # monotonic time it may be tried again
    order: int = field(default=0)

    def healthy(self, now: float) -> bool:
        return now >= self.out_until


class BalancedSegmenter:
    """A :class:`SegmentationModel` over several endpoints, each its own ``connect(url)``."""

    def __init__(self, urls: str, connect: Connect, *, resolver: Resolver = resolve,
                 refresh_s: float = 30.0, cooldown_s: float = 5.0,
                 max_cooldown_s: float = 60.0) -> None:
        self._targets = split_endpoints(urls)
        self._connect = connect
        self._resolver = resolver
        self._refresh_s = refresh_s
        self._cooldown_s = cooldown_s
        self._max_cooldown_s = max_cooldown_s
        self._endpoints: dict[str, Endpoint] = {}
        self._resolved_at = -float("inf")
        self._counter = itertools.count()
        self._closing: list[SegmentationModel] = []

    @property
    def urls(self) -> list[str]:
        """The endpoints known now (after the last resolution)."""
        self._refresh()
        return sorted(self._endpoints)

    async def info(self) -> ModelInfo:
        return await self._on_endpoint(lambda model: model.info())

    async def ready(self) -> bool:
        """True when any endpoint has the model ready."""
        self._refresh()
        answers = await asyncio.gather(*(e.model.ready() for e in self._endpoints.values()),
                                       return_exceptions=True)
        return any(answer is True for answer in answers)

    async def segment(self, hounsfield: npt.NDArray[np.int16]) -> Segmentation:
        return await self._on_endpoint(lambda model: model.segment(hounsfield))

    async def close(self) -> None:
        models = [e.model for e in self._endpoints.values()] + self._closing
        self._endpoints, self._closing = {}, []
        await asyncio.gather(*(m.close() for m in models), return_exceptions=True)

    async def _on_endpoint(self, call: Callable[[SegmentationModel], Awaitable[T]]) -> T:
        """``call`` on the least busy healthy endpoint, then on the others while they are
        unreachable; InferenceUnavailable when none answers."""
        self._refresh()
        tried: set[str] = set()
        last: InferenceUnavailable | None = None
        while (endpoint := self._pick(tried)) is not None:
            tried.add(endpoint.url)
            endpoint.inflight += 1
            try:
                answer = await call(endpoint.model)
            except InferenceUnavailable as exc:
                self._take_out(endpoint, exc)
                last = exc
                continue
            finally:
                endpoint.inflight -= 1
            endpoint.failures = 0
            return answer
        if last is not None:
            raise last
        raise InferenceUnavailable("no Triton endpoint is known: the names in"
                                   " BONEMETS_TRITON_URL resolve to no address")

    def _pick(self, tried: set[str]) -> Endpoint | None:
        now = time.monotonic()
        candidates = [e for e in self._endpoints.values() if e.url not in tried]
        healthy = [e for e in candidates if e.healthy(now)]
        if not healthy and not tried and candidates:
            # Every endpoint is out: try the one due back soonest rather than fail unasked.
            healthy = [min(candidates, key=lambda e: e.out_until)]
        if not healthy:
            return None
        chosen = min(healthy, key=lambda e: (e.inflight, e.order))
        chosen.order = next(self._counter)  # ties go round-robin
        return chosen

    def _take_out(self, endpoint: Endpoint, exc: InferenceUnavailable) -> None:
        endpoint.failures += 1
        wait = min(self._cooldown_s * 2 ** (endpoint.failures - 1), self._max_cooldown_s)
        endpoint.out_until = time.monotonic() + wait
        log.warning("Triton endpoint %s unavailable (%s); out for %.0f s", endpoint.url,
                    exc.detail, wait)

    def _refresh(self) -> None:
        """Resolve the targets again when due; new addresses get a channel, gone ones are
        closed at the next close() (a request may still be using them)."""
        now = time.monotonic()
        if now - self._resolved_at < self._refresh_s:
            return
        self._resolved_at = now
        urls: list[str] = []
        for host, port in self._targets:
            try:
                urls.extend(self._resolver(host, port))
            except OSError as exc:
                log.warning("cannot resolve Triton endpoint %s:%d (%s)", host, port, exc)
        if not urls:
            return  # keep what we had: a DNS hiccup is not a reason to forget every pod
        for url in _new(urls, self._endpoints):
            self._endpoints[url] = Endpoint(url, self._connect(url))
        for url in [u for u in self._endpoints if u not in urls]:
            self._closing.append(self._endpoints.pop(url).model)


def _new(urls: Sequence[str], known: dict[str, Endpoint]) -> list[str]:
    return [url for url in dict.fromkeys(urls) if url not in known]
