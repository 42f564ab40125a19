"""``bonemets serve --dicom-port``: the listener answers with the gateway, and SIGTERM stops
it with the gateway, leaving no port listening."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from tests.integration.conftest import free_ports, running_cli, wait_http_ok

pytestmark = pytest.mark.integration


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_sigterm_stops_the_dicom_listener_with_the_gateway(tmp_path: Path) -> None:
    port, dicom_port, triton_port = free_ports(3)
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("BONEMETS_")
    }
    # An external Triton that is not there: the gateway starts all the same (not ready).
    environment.update(BONEMETS_PORT=str(port), BONEMETS_TRITON_URL=f"127.0.0.1:{triton_port}",
                       BONEMETS_DATA_DIR=str(tmp_path / "data"), BONEMETS_DECODE_WORKERS="1")
    argv = ["serve", "--dicom-port", str(dicom_port), "--ae-title", "BONEMETS_T"]
    with running_cli(argv, environment, tmp_path) as (cli, output):
        output.until("DICOM listener BONEMETS_T on 127.0.0.1", timeout=60)
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", cli, timeout=60)
        sender = AE(ae_title="SCU")
        sender.add_requested_context(Verification)
        assoc = sender.associate("127.0.0.1", dicom_port, ae_title="BONEMETS_T")
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(timeout=60) == 0
    log = output.rest()
    assert "DICOM listener stopped" in log
    assert "SIGTERM received; gateway stopped" in log
    assert "Traceback" not in log
    assert not listening(dicom_port)
