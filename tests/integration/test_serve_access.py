"""``bonemets serve`` as a user starts it: the first start's key, BONEMETS_AUTH=off, HTTPS.

The gateway runs with ``--triton-url`` at a port where nothing listens: what is tested here
(start, /healthz, stop) never calls the model.
"""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from api.auth.keys import open_key_store
from tests.certificates import self_signed_certificate
from tests.integration.conftest import OutputLines, free_ports, running_cli, wait_http_ok

pytestmark = pytest.mark.integration

KEY = re.compile(r"\bbm_[0-9a-f]{12}_[A-Za-z0-9_-]{43}\b")
LOG_LINE = re.compile(r"^(\S+ \S+ (DEBUG|INFO|WARNING|ERROR) |(INFO|WARNING|ERROR):)")


def _environment(tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("BONEMETS_")
    }
    environment.update(BONEMETS_PORT=str(port), BONEMETS_DATA_DIR=str(tmp_path / "data"),
                       BONEMETS_DECODE_WORKERS="1", **extra)
    return environment


def _serve_args(triton_port: int, *argv: str) -> list[str]:
    return ["serve", "--triton-url", f"127.0.0.1:{triton_port}", *argv]


def _stop(cli: subprocess.Popen[str], output: OutputLines) -> str:
    cli.send_signal(signal.SIGTERM)
    assert cli.wait(timeout=60) == 0
    log = output.rest()
    assert "Traceback" not in log
    return log


def test_first_start_prints_a_development_key_once(tmp_path: Path) -> None:
    port, nothing = free_ports(2)
    environment = _environment(tmp_path, port)
    with running_cli(_serve_args(nothing), environment, tmp_path) as (cli, output):
        banner = output.until("More keys: bonemets keys create", timeout=120)
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", cli, timeout=30)
        log = _stop(cli, output)
    keys = set(KEY.findall("".join(banner)))
    assert len(keys) == 1
    (key,) = keys
    assert f'curl -H "Authorization: Bearer {key}"' in log
    # On the terminal only: no log line (uvicorn's or ours) carries it.
    assert [line for line in log.splitlines() if LOG_LINE.match(line) and key in line] == []
    principal = open_key_store(tmp_path / "data").verify(key)
    assert principal is not None and principal.client == "local-dev"

    with running_cli(_serve_args(nothing), environment, tmp_path) as (cli, output):
        output.until("API keys: 1 active of 1", timeout=120)
        log = _stop(cli, output)
    assert KEY.search(log) is None


def test_auth_off_warns_and_binds_loopback_only(tmp_path: Path) -> None:
    port, nothing = free_ports(2)
    environment = _environment(tmp_path, port, BONEMETS_AUTH="off", BONEMETS_HOST="0.0.0.0")
    refused = subprocess.run(
        [sys.executable, "-m", "api.cli", *_serve_args(nothing)], cwd=tmp_path,
        env=environment, capture_output=True, text=True, timeout=60,
    )
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1
    assert "BONEMETS_AUTH=off" in refused.stderr and "not '0.0.0.0'" in refused.stderr

    environment["BONEMETS_HOST"] = "127.0.0.1"
    with running_cli(_serve_args(nothing), environment, tmp_path) as (cli, output):
        output.until("WARNING api.commands.access: BONEMETS_AUTH=off", timeout=60)
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", cli, timeout=120)
        log = _stop(cli, output)
    store = tmp_path / "data" / "keys.sqlite"  # the app may open it; no key is made in it
    assert KEY.search(log) is None
    assert not store.exists() or open_key_store(store.parent).list() == []


def test_serves_https_with_the_given_certificate(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path)
    port, nothing = free_ports(2)
    environment = _environment(tmp_path, port, BONEMETS_SSL_KEYFILE=str(key))
    argv = _serve_args(nothing, "--ssl-certfile", str(cert))
    with running_cli(argv, environment, tmp_path) as (cli, output):
        output.until(f"Uvicorn running on https://127.0.0.1:{port}", timeout=120)
        trusting_the_test_ca = ssl.create_default_context(cafile=str(cert))
        answer = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=trusting_the_test_ca)
        assert (answer.status_code, answer.json()["status"]) == (200, "ok")
        assert answer.url.scheme == "https"
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"https://127.0.0.1:{port}/healthz")  # the system's CAs only
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/healthz")  # no plain HTTP on that port
        banner = "".join(output.until("More keys: bonemets keys create", timeout=30))
        assert f'"https://127.0.0.1:{port}/v1/studies?wait=120"' in banner
        _stop(cli, output)
