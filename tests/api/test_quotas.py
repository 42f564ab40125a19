"""Per-client abuse limits: uploads per minute and studies in flight, 429 before the body."""

from __future__ import annotations

import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as ASGIScope

from api.auth.principal import Principal, Scope
from api.config import Settings
from api.http.app import create_app
from api.http.auth import authenticate
from api.http.multipart import stream_parts
from api.http.quotas import (
    UploadQuota,
    UploadWindow,
    check_upload_quota,
    client_inflight,
    install_quotas,
)
from api.http.routes import studies
from tests.api.conftest import as_files, build_series
from tests.api.contract import CheckedClient
from tests.api.fakes import BrightBoneModel

PROBE = "/quota-probe"
WRITER = frozenset({Scope.WRITE.value})


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def as_client(request: Request) -> Principal:
    """The caller named by the test's X-Test-Client header (the real credentials come later)."""
    return Principal(request.headers.get("x-test-client", "alpha"), WRITER)


def quota_app(settings: Settings, clock: FakeClock) -> tuple[FastAPI, list[int]]:
    """The real app plus a probe route shaped like the upload: the quota, then the stream."""
    app = create_app(settings, model_factory=lambda _: BrightBoneModel())
    reads: list[int] = []

    @app.post(PROBE, status_code=202)
    async def probe(request: Request, _: UploadQuota) -> dict[str, int]:
        async def body() -> AsyncIterator[bytes]:
            async for chunk in request.stream():
                if chunk:
                    reads.append(len(chunk))
                yield chunk

        folder = settings.data_dir / f"probe-{uuid.uuid4().hex}"
        folder.mkdir(parents=True)
        await stream_parts(request.headers.get("content-type", ""), body(), folder)
        return {"read": sum(reads)}

    install_quotas(app, settings, clock=clock)
    app.dependency_overrides[authenticate] = as_client
    return app, reads


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def quota_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", decode_workers=1, client_uploads_per_minute=3,
                    client_max_inflight=2)


@pytest.fixture
def probe_client(quota_settings: Settings, clock: FakeClock) -> Iterator[TestClient]:
    app, _ = quota_app(quota_settings, clock)
    app.dependency_overrides[client_inflight] = lambda: 0
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def upload(client: TestClient, who: str = "alpha") -> httpx.Response:
    return client.post(PROBE, files=[("files", ("a.dcm", b"x" * 100, "application/dicom"))],
                       headers={"x-test-client": who})


def test_the_upload_past_the_minute_limit_is_429_and_passes_a_minute_later(
    probe_client: TestClient, clock: FakeClock
) -> None:
    for second in range(3):
        clock.now = 1000.0 + second * 10
        assert upload(probe_client).status_code == 202
    clock.now = 1030.0
    refused = upload(probe_client)
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "urn:bonemets:problem:rate-limited"
    # The oldest upload (t=1000) leaves the window at t=1060: 30 s from now.
    assert refused.headers["retry-after"] == "30"
    clock.now = 1059.0
    assert upload(probe_client).status_code == 429
    clock.now = 1060.0
    assert upload(probe_client).status_code == 202


def test_clients_are_counted_apart(probe_client: TestClient) -> None:
    for _ in range(3):
        assert upload(probe_client, "alpha").status_code == 202
    assert upload(probe_client, "alpha").status_code == 429
    assert upload(probe_client, "beta").status_code == 202


class ReceiveSpy:
    """ASGI middleware counting each request's calls for its body (``receive``)."""

    def __init__(self, app: ASGIApp, calls: list[int] | None = None) -> None:
        self.app = app
        self.calls: list[int] = [] if calls is None else calls

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.calls.append(0)
        index = len(self.calls) - 1

        async def counting() -> Message:
            self.calls[index] += 1
            return await receive()

        await self.app(scope, counting, send)


def test_the_refusal_comes_before_the_body_is_read(
    quota_settings: Settings, clock: FakeClock
) -> None:
    app, reads = quota_app(quota_settings, clock)
    app.dependency_overrides[client_inflight] = lambda: 0
    spy = ReceiveSpy(app)
    with TestClient(spy, raise_server_exceptions=False) as client:
        statuses = [upload(client).status_code for _ in range(4)]
    assert statuses == [202, 202, 202, 429]
    assert all(calls >= 1 for calls in spy.calls[:3])  # the accepted ones were read
    assert spy.calls[3] == 0  # the refused one: its body was never asked for
    assert len(reads) == 3


def test_studies_in_flight_past_the_limit_are_429(quota_settings: Settings,
                                                  clock: FakeClock) -> None:
    app, reads = quota_app(quota_settings, clock)
    inflight = {"alpha": 2, "beta": 1}

    def counted(request: Request) -> int:
        return inflight[request.headers.get("x-test-client", "alpha")]

    app.dependency_overrides[client_inflight] = counted
    with TestClient(app, raise_server_exceptions=False) as client:
        refused = upload(client, "alpha")
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "30"
        assert "2 studies being received, queued or running" in refused.json()["detail"]
        assert reads == []  # not a byte of its body was read
        assert upload(client, "beta").status_code == 202
        inflight["alpha"] = 1  # one of its studies finished
        assert upload(client, "alpha").status_code == 202


def test_the_window_slides() -> None:
    clock = FakeClock()
    window = UploadWindow(2, clock)
    window.admit("a")
    clock.now += 59
    window.admit("a")
    clock.now += 0.5
    with pytest.raises(Exception) as refused:
        window.admit("a")
    assert refused.value.retry_after_s == 1  # type: ignore[attr-defined]
    clock.now += 0.5  # the first upload is now 60 s old
    window.admit("a")


def test_uploads_still_being_received_count_as_in_flight(
    quota_settings: Settings, clock: FakeClock
) -> None:
    settings = quota_settings.model_copy(update={"client_max_inflight": 1})
    app, _ = quota_app(settings, clock)
    app.dependency_overrides[client_inflight] = lambda: 0
    gate, entered = threading.Event(), threading.Event()

    @app.post("/slow-probe", status_code=202)
    async def slow(_: UploadQuota) -> None:
        entered.set()
        await anyio.to_thread.run_sync(gate.wait)

    with TestClient(app, raise_server_exceptions=False) as client:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(client.post, "/slow-probe")
            try:
                assert entered.wait(10)
                second = upload(client).status_code
            finally:
                gate.set()  # a failing test must not leave the first upload hanging
            assert second == 429  # the first is still coming in
            assert first.result(10).status_code == 202
        assert upload(client).status_code == 202


def upload_route_is_limited() -> bool:
    """Whether the upload route takes UploadQuota (wired at the merge of issue 19)."""
    for route in studies.router.routes:
        if isinstance(route, APIRoute) and route.path == "/v1/studies" and "POST" in route.methods:
            return any(dep.call is check_upload_quota for dep in route.dependant.dependencies)
    return False


def test_the_upload_route_refuses_before_reading_its_body(
    quota_settings: Settings, clock: FakeClock, tmp_path: Path
) -> None:
    app = create_app(quota_settings, model_factory=lambda _: BrightBoneModel())
    if not upload_route_is_limited():
        pytest.skip("the upload route does not take UploadQuota yet")
    install_quotas(app, quota_settings, clock=clock)
    app.dependency_overrides[authenticate] = as_client
    app.dependency_overrides[client_inflight] = lambda: 0  # the minute's limit first
    calls: list[int] = []
    app.add_middleware(ReceiveSpy, calls=calls)
    series = build_series(tmp_path / "series", slices=2, size=64).paths
    with CheckedClient(app, raise_server_exceptions=False) as client:
        statuses = [client.post("/v1/studies", files=as_files(series)).status_code
                    for _ in range(4)]
        assert statuses == [202, 202, 202, 429]
        assert calls[3] == 0
        app.dependency_overrides[client_inflight] = lambda: 2
        clock.now += 60
        assert client.post("/v1/studies", files=as_files(series)).status_code == 429
        assert calls[4] == 0
