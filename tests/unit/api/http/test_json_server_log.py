"""A live uvicorn in JSON mode: its own lines and the gateway's request line, all JSON, the
query of a followed link nowhere, the request id in the line and the answer alike."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from api.http.access_log import UVICORN_LOGGERS, hide_query_strings, uvicorn_logging
from api.http.request_log import Gateway
from api.logs import JsonFormatter
from api.tritonserver.launcher import free_ports


@pytest.fixture
def root_json() -> Iterator[io.StringIO]:
    """The root logger writing JSON into a string (uvicorn's loggers put back after)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    saved = root.level, [(logging.getLogger(name), logging.getLogger(name).propagate,
                          logging.getLogger(name).handlers[:]) for name in UVICORN_LOGGERS]
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        for logger, propagate, handlers in saved[1]:
            logger.propagate, logger.handlers[:] = propagate, handlers


def test_every_line_of_a_json_server_is_json_and_names_the_request(
    root_json: io.StringIO,
) -> None:
    app = Gateway(access_lines=True)

    @app.get("/v1/studies/x/slices/1/mask.png")
    async def mask() -> dict[str, str]:
        logging.getLogger("bonemets.test").info("serving the mask")
        return {}

    (port,) = free_ports(1)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info",
                                           **uvicorn_logging("json")))
    hide_query_strings()
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}/v1/studies/x/slices/1/mask.png"
    answer = httpx.get(url, params={"client": "alice", "signature": "s3cret"},
                       headers={"X-Request-ID": "support-7"})
    server.should_exit = True
    thread.join(timeout=10)
    assert answer.status_code == 200 and answer.headers["X-Request-ID"] == "support-7"
    lines = [json.loads(line) for line in root_json.getvalue().splitlines()]
    service = [line for line in lines if line["logger"] != "httpx"]  # the test's own client
    assert any(line["logger"] == "uvicorn.error" and "Uvicorn running" in line["message"]
               for line in service), service
    assert not any(line["logger"] == "uvicorn.access" for line in service)
    (request,) = [line for line in service if line["logger"] == "bonemets.access"]
    assert request["path"] == "/v1/studies/x/slices/1/mask.png"
    assert (request["request_id"], request["status"]) == ("support-7", 200)
    (inside,) = [line for line in service if line["logger"] == "bonemets.test"]
    assert inside["request_id"] == "support-7"
    assert "s3cret" not in json.dumps(service) and "client=" not in json.dumps(service)


def test_text_mode_leaves_uvicorns_logging_alone() -> None:
    assert uvicorn_logging("text") == {}
