"""What ``bonemets serve`` does about access: BONEMETS_AUTH=off, the first start's key, TLS."""

from __future__ import annotations

import asyncio
import io
import logging
import ssl
from pathlib import Path
from typing import Any

import pytest

from api.auth.keys import KEY_PATTERN, open_key_store
from api.commands import access, serve
from api.config import Settings
from tests.certificates import self_signed_certificate


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("HOST", "PORT", "AUTH", "SSL_CERTFILE", "SSL_KEYFILE", "PUBLIC_URL"):
        monkeypatch.delenv(f"BONEMETS_{name}", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env of the developer's


def _settings(tmp_path: Path, **values: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data", **values)


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("localhost", True),
    ("LOCALHOST", True), ("::ffff:127.0.0.1", True),
    ("0.0.0.0", False), ("::", False), ("", False), ("10.0.0.5", False),
    ("192.168.1.2", False), ("example.org", False), ("localhost.example.org", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert access.is_loopback(host) is loopback


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "myhost"])
def test_auth_off_refuses_a_non_loopback_bind(tmp_path: Path, host: str) -> None:
    with pytest.raises(ValueError, match="BONEMETS_AUTH=off .* binds only a loopback"):
        access.check_auth_mode(_settings(tmp_path, auth="off", host=host))


def test_auth_off_on_loopback_is_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        access.check_auth_mode(_settings(tmp_path, auth="off", host="127.0.0.1"))
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "BONEMETS_AUTH=off: no credentials are asked" in record.getMessage()


def test_auth_on_binds_anywhere_without_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        access.check_auth_mode(_settings(tmp_path, auth="on", host="0.0.0.0"))
    assert caplog.records == []


def test_serve_refuses_auth_off_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BONEMETS_AUTH", "off")
    started: list[str] = []
    monkeypatch.setattr(serve, "_serve", lambda *args: started.append("serve") or 0)
    args = serve_args("--host", "0.0.0.0", "--data-dir", str(tmp_path / "data"))
    with pytest.raises(ValueError, match="not '0.0.0.0'"):
        serve.run(args)
    assert started == []
    assert serve.run(serve_args("--data-dir", str(tmp_path / "data"))) == 0
    assert started == ["serve"]
    assert not (tmp_path / "data" / "keys.sqlite").exists()  # auth off: no key made


def serve_args(*argv: str) -> Any:
    import argparse

    parser = argparse.ArgumentParser()
    serve.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", *argv])


def test_first_start_makes_a_key_once_and_prints_it_only_to_the_terminal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(tmp_path)
    terminal = io.StringIO()
    with caplog.at_level(logging.DEBUG):
        on_started = access.first_start_key(settings, out=terminal)
        store = open_key_store(tmp_path / "data")
        assert store.list() == []  # made only once the gateway listens
        on_started()
    (key,) = [word for word in terminal.getvalue().split() if KEY_PATTERN.fullmatch(word)]
    principal = store.verify(key)
    assert principal is not None and principal.client == "local-dev"
    assert principal.scopes == {"studies:write", "studies:read", "studies:delete"}
    assert f'curl -H "Authorization: Bearer {key}"' in terminal.getvalue()
    assert "http://127.0.0.1:8000/v1/studies" in terminal.getvalue()
    assert all(key not in record.getMessage() for record in caplog.records)

    again = io.StringIO()
    with caplog.at_level(logging.INFO):
        access.first_start_key(settings, out=again)()
    assert again.getvalue() == "" and len(store.list()) == 1
    assert "API keys: 1 active of 1" in caplog.text and "bonemets keys create" in caplog.text


def test_a_revoked_key_is_not_replaced_by_a_new_development_key(tmp_path: Path) -> None:
    store = open_key_store(tmp_path / "data")
    record, _ = store.create("pacs", ["studies:write"])
    store.revoke(record.id)
    terminal = io.StringIO()
    access.first_start_key(_settings(tmp_path), out=terminal)()
    assert terminal.getvalue() == "" and [key.id for key in store.list()] == [record.id]


def test_no_key_with_auth_off(tmp_path: Path) -> None:
    terminal = io.StringIO()
    access.first_start_key(_settings(tmp_path, auth="off"), out=terminal)()
    assert terminal.getvalue() == "" and not (tmp_path / "data").exists()


@pytest.mark.parametrize(("values", "url"), [
    ({}, "http://127.0.0.1:8000"),
    ({"host": "0.0.0.0", "port": 9000}, "http://localhost:9000"),
    ({"host": "::1"}, "http://[::1]:8000"),
    ({"ssl_certfile": Path("cert.pem")}, "https://127.0.0.1:8000"),
    ({"public_url": "https://bonemets.hospital.example/"}, "https://bonemets.hospital.example"),
])
def test_the_banner_url(tmp_path: Path, values: dict[str, Any], url: str) -> None:
    assert access.base_url(_settings(tmp_path, **values)) == url


def test_tls_files_are_checked_up_front(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path)
    access.check_tls(_settings(tmp_path, ssl_certfile=cert, ssl_keyfile=key))
    access.check_tls(_settings(tmp_path))  # no TLS: nothing to check
    with pytest.raises(ValueError, match="--ssl-keyfile needs --ssl-certfile"):
        access.check_tls(_settings(tmp_path, ssl_keyfile=key))
    with pytest.raises(ValueError, match="no such certificate or key file"):
        access.check_tls(_settings(tmp_path, ssl_certfile=tmp_path / "nope.pem"))
    not_a_key = tmp_path / "garbage.pem"
    not_a_key.write_text("not a key\n")
    with pytest.raises(ssl.SSLError):  # an OSError: one line from the dispatcher
        access.check_tls(_settings(tmp_path, ssl_certfile=cert, ssl_keyfile=not_a_key))


def test_tls_options_reach_uvicorn(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import uvicorn

    seen: dict[str, Any] = {}

    class FakeServer:
        started = True

        def __init__(self, config: uvicorn.Config) -> None:
            seen.update(cert=config.ssl_certfile, key=config.ssl_keyfile)

        def run(self) -> None:
            pass

    monkeypatch.setattr(uvicorn, "Server", FakeServer)
    cert, key = self_signed_certificate(tmp_path)
    monkeypatch.setenv("BONEMETS_SSL_KEYFILE", str(key))
    args = serve_args("--triton-url", "127.0.0.1:1", "--data-dir", str(tmp_path / "data"),
                      "--ssl-certfile", str(cert))
    assert serve.run(args) == 0
    assert seen == {"cert": cert, "key": key}


def test_the_announcement_comes_once_the_server_listens() -> None:
    import uvicorn

    async def app(scope: Any, receive: Any, send: Any) -> None:
        pass

    calls: list[bool] = []
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="error")
    server = serve._announcing_server(config, lambda: calls.append(server.started))

    async def start_and_stop() -> None:
        config.load()
        server.lifespan = config.lifespan_class(config)
        await server.startup()
        await server.shutdown()

    asyncio.run(start_and_stop())
    assert calls == [True]
