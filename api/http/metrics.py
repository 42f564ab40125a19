"""The Prometheus exposition of this process: its own counters and histograms (api/metrics.py)
with the job database's backlog read at scrape time; on the gateway's port (``GET /metrics``)
or on a plain listener of its own (``BONEMETS_METRICS=port:NNNN``).

One exporter per process, not prometheus-client's multiprocess mode: ``bonemets serve`` is
one uvicorn process per role and pod, each scraped on its own (docs/operations.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, Request
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from api.auth.principal import Principal, Scope
from api.errors import Forbidden
from api.http.auth import Caller, is_open, route_path
from api.http.deps import get_services
from api.study.backlog import BacklogCollector
from api.study.jobs import JobStore

log = logging.getLogger(__name__)


class ProcessMetrics(Collector):
    """What one scrape of this process answers: the default registry (this process's
    metrics, and prometheus-client's process and Python collectors) and the backlog."""

    def __init__(self, jobs: JobStore) -> None:
        self._backlog = BacklogCollector(jobs.backlog)

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        yield from self._backlog.collect()


def exposition(jobs: JobStore) -> bytes:
    """The text a scrape of this process reads."""
    return generate_latest(ProcessMetrics(jobs))


async def metrics_reader(request: Request, principal: Caller) -> Principal:
    """A dependency: a caller with the ``metrics:read`` scope, or anyone where ``/metrics``
    is an open path."""
    settings = get_services(request).settings
    if settings.auth == "on" and not is_open(route_path(request), settings.auth_open_paths) \
            and not principal.allows(Scope.METRICS):
        raise Forbidden(f"this needs the scope {Scope.METRICS.value!r}")
    return principal


MetricsReader = Annotated[Principal, Depends(metrics_reader)]


@contextmanager
def metrics_listener(host: str, port: int, jobs: JobStore) -> Iterator[None]:
    """A plain HTTP listener answering this process's metrics on ``host:port`` (any path),
    stopped when the block ends. It asks no credentials: bind it where only the scraper
    reaches (a pod network behind a NetworkPolicy)."""
    from prometheus_client import start_http_server

    server, thread = start_http_server(port, addr=host, registry=ProcessMetrics(jobs))
    log.info("metrics on http://%s:%d/metrics", host, port)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
