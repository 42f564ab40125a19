"""Per-client abuse limits on uploads: studies in flight, and uploads per minute.

Both are checked by :data:`UploadQuota`, a dependency of the upload route, which FastAPI
resolves before the handler streams the body: a client past either limit is answered 429
(``RateLimited``, with ``Retry-After``) without a byte of its upload read.

Uploads per minute are counted in memory, per process (a sliding window of the last 60 s):
with several gateway processes behind a balancer each counts its own share. Studies in
flight are counted in the job store, so every process sees the same number.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from api.config import Settings
from api.errors import RateLimited
from api.http.auth import Submitter
from api.http.deps import ServicesDep

WINDOW_S = 60.0
# A study takes seconds to minutes: a client at its in-flight limit may try again in this.
INFLIGHT_RETRY_AFTER_S = 30
Clock = Callable[[], float]


class UploadWindow:
    """Each client's upload times in the last minute (sliding window), and its uploads
    being received now, in this process."""

    def __init__(self, per_minute: int, clock: Clock = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._times: defaultdict[str, deque[float]] = defaultdict(deque)
        # Not yet jobs in the store: without them, parallel uploads would pass the
        # in-flight limit together.
        self.receiving: Counter[str] = Counter()

    def admit(self, client: str) -> None:
        """Count one upload of ``client``; RateLimited when it would pass the limit."""
        now = self.clock()
        times = self._times[client]
        while times and times[0] <= now - WINDOW_S:
            times.popleft()
        if len(times) >= self.per_minute:
            wait = max(1, math.ceil(times[0] + WINDOW_S - now))
            raise RateLimited(
                f"more than {self.per_minute} uploads in a minute from this client; "
                f"try again in {wait} s",
                retry_after_s=wait,
            )
        times.append(now)


class QuotaState:
    """ASGI middleware handing the app's one :class:`UploadWindow` to each request's state,
    as the lifespan hands its services (no module-level state, none bolted onto the app)."""

    def __init__(self, app: ASGIApp, window: UploadWindow) -> None:
        self.app = app
        self.window = window

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})["upload_window"] = self.window
        await self.app(scope, receive, send)


def install_quotas(app: FastAPI, settings: Settings, clock: Clock = time.monotonic) -> None:
    """Give ``app`` its per-process upload window (``UploadQuota`` reads it). Installing
    again replaces the window (a test's clock), never adds a second one."""
    app.user_middleware[:] = [
        m for m in app.user_middleware if getattr(m, "cls", None) is not QuotaState
    ]
    window = UploadWindow(settings.client_uploads_per_minute, clock)
    app.add_middleware(QuotaState, window=window)


def client_inflight(principal: Submitter, services: ServicesDep) -> int:
    """The calling client's studies in flight (a dependency, so tests can set it)."""
    return services.jobs.count_unfinished(principal.client)


async def check_upload_quota(
    request: Request,
    principal: Submitter,
    services: ServicesDep,
    inflight: Annotated[int, Depends(client_inflight)],
) -> AsyncIterator[None]:
    """429 before the body is read when the caller is past either of its limits; the
    upload counts as in flight while it is received."""
    window: UploadWindow | None = getattr(request.state, "upload_window", None)
    if window is None:
        # Loud, so that a route wired without install_quotas is caught by its first test.
        raise RuntimeError("UploadQuota needs install_quotas(app, settings)")
    client = principal.client
    limit = services.settings.client_max_inflight
    studies = inflight + window.receiving[client]
    if studies >= limit:
        raise RateLimited(
            f"this client has {studies} studies being received, queued or running; the limit"
            f" is {limit}",
            retry_after_s=INFLIGHT_RETRY_AFTER_S,
        )
    window.admit(client)
    window.receiving[client] += 1
    try:
        yield
    finally:
        window.receiving[client] -= 1
        if window.receiving[client] <= 0:
            del window.receiving[client]


UploadQuota = Annotated[None, Depends(check_upload_quota)]
