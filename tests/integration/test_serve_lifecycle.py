"""``bonemets serve`` with its local Triton: SIGTERM stops both and leaves nothing behind."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from tests.integration.conftest import free_ports, process_groups, running_cli, wait_http_ok

pytestmark = pytest.mark.integration


def test_sigterm_stops_gateway_and_triton_cleanly(model_repository: Path, tmp_path: Path) -> None:
    port, grpc_port, http_port, metrics_port = free_ports(4)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("BONEMETS_")
    }
    environment.update(
        TMPDIR=str(temporary), BONEMETS_PORT=str(port),
        BONEMETS_TRITON_GRPC_PORT=str(grpc_port), BONEMETS_TRITON_HTTP_PORT=str(http_port),
        BONEMETS_TRITON_METRICS_PORT=str(metrics_port), BONEMETS_DECODE_WORKERS="1",
        BONEMETS_MODEL_REPOSITORY=str(model_repository),
        BONEMETS_DATA_DIR=str(tmp_path / "data"),
    )
    with running_cli(["serve"], environment, tmp_path) as (cli, output):
        started = output.until("tritonserver started (pid", timeout=60)[-1]
        server_pid = int(re.search(r"pid (\d+)", started).group(1))  # type: ignore[union-attr]
        # BONEMETS_PORT is where the gateway listens, on 127.0.0.1.
        wait_http_ok(f"http://127.0.0.1:{port}/readyz", cli, timeout=180)
        assert list(temporary.glob("bonemets-triton-*"))  # what the stop must remove
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(timeout=60) == 0
    log = output.rest()
    assert f"tritonserver stopped (pid {server_pid})" in log
    assert "SIGTERM received; gateway stopped" in log
    assert "Traceback" not in log
    assert not {pid for pid, group in process_groups().items() if group == server_pid}
    assert sorted(path.name for path in temporary.iterdir()) == []
