"""A live uvicorn's access log names the path of a followed link, never its signature."""

from __future__ import annotations

import logging
import threading
import time

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from api.http.access_log import hide_query_strings
from api.tritonserver.launcher import free_ports


def test_the_access_log_leaves_the_query_out(caplog: pytest.LogCaptureFixture) -> None:
    app = FastAPI()

    @app.get("/v1/studies/x/slices/1/mask.png")
    async def mask() -> dict[str, str]:
        return {}

    (port,) = free_ports(1)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info"))
    hide_query_strings()
    access = logging.getLogger("uvicorn.access")  # uvicorn's config stops its propagation
    access.addHandler(caplog.handler)
    thread = threading.Thread(target=server.run, daemon=True)
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}/v1/studies/x/slices/1/mask.png"
        assert httpx.get(url, params={"client": "alice", "signature": "s3cret"}).status_code == 200
        server.should_exit = True
        thread.join(timeout=10)
    access.removeHandler(caplog.handler)
    lines = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert any("/v1/studies/x/slices/1/mask.png" in line for line in lines), lines
    assert not any("s3cret" in line or "client=" in line for line in lines), lines
