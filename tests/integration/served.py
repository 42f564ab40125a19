"""The gateway served for real in a thread of the test (uvicorn on a free port), for clients
that need a socket: a PACS, a browser."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from api.auth.keys import open_key_store
from api.commands.serve import with_dicom_listener
from api.config import Settings
from api.http.app import create_app
from tests.api.fakes import BrightBoneModel


@contextmanager
def bonemets(settings: Settings, model: BrightBoneModel) -> Iterator[str]:
    """The gateway (with its DICOM listener when ``settings.dicom_port``) on a free port; its
    base URL."""
    app = create_app(settings, model_factory=lambda _: model)
    with_dicom_listener(app)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, name="bonemets", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "bonemets did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{settings.port}"
    finally:
        server.should_exit = True
        thread.join(30)


def api_key(settings: Settings, client: str) -> str:
    """A key of ``client`` that submits and reads, in the gateway's key store."""
    keys = open_key_store(settings.data_dir)
    try:
        return keys.create(client, ["studies:write", "studies:read"])[1]
    finally:
        keys.close()
