"""``bonemets serve``: where it binds, and how a stop signal ends it."""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from api.commands import serve
from api.commands.stopping import SignalStop, StopRequested


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", *argv])


@pytest.fixture(autouse=True)
def _no_env_bind(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BONEMETS_HOST", raising=False)
    monkeypatch.delenv("BONEMETS_PORT", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env of the developer's


def test_binds_loopback_by_default() -> None:
    settings = serve.settings_from(_parse([]))
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)


def test_host_and_port_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BONEMETS_HOST", "0.0.0.0")
    monkeypatch.setenv("BONEMETS_PORT", "9123")
    settings = serve.settings_from(_parse([]))
    assert (settings.host, settings.port) == ("0.0.0.0", 9123)
    settings = serve.settings_from(_parse(["--port", "9200", "--host", "10.0.0.1"]))
    assert (settings.host, settings.port) == ("10.0.0.1", 9200)


def test_the_resolved_bind_reaches_uvicorn(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import uvicorn

    seen: dict[str, Any] = {}

    class FakeServer:
        started = True

        def __init__(self, config: uvicorn.Config) -> None:
            seen.update(host=config.host, port=config.port)

        def run(self) -> None:
            seen["ran"] = True

    monkeypatch.setattr(uvicorn, "Server", FakeServer)
    monkeypatch.setenv("BONEMETS_PORT", "9124")
    args = _parse(["--triton-url", "127.0.0.1:1", "--data-dir", str(tmp_path / "data")])
    assert serve.run(args) == 0
    assert seen == {"host": "127.0.0.1", "port": 9124, "ran": True}


def test_a_stop_signal_raises_once_then_is_ignored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with SignalStop(signal.SIGTERM) as stop:
        with pytest.raises(StopRequested, match="SIGTERM"):
            os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # during the clean-up: noted, nothing raised
        assert stop.received == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_stop_signal_forwarded_to_a_server_until_shielded() -> None:
    calls: list[str] = []
    with SignalStop(signal.SIGTERM) as stop:
        stop.forward_to(lambda: calls.append("stop"))
        os.kill(os.getpid(), signal.SIGTERM)
        stop.shield()
        os.kill(os.getpid(), signal.SIGTERM)
    assert calls == ["stop"] and stop.received == "SIGTERM"
