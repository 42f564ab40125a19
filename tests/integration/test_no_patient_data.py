"""A real ``bonemets serve``: identified studies in, nothing identifying in what it writes.

Its whole output (the gateway, uvicorn's access log, the decode workers, the local Triton's
lines) and the audit trail are searched for the names, ids, birth dates and accession
numbers the uploaded files carry.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest

from api.config import Settings
from api.http.app import create_app
from api.http.audit import AuditTrail
from tests.api.conftest import as_files, as_zip
from tests.api.test_no_patient_data import (
    CORPUS,
    PHANTOM,
    files_under,
    identifying_values,
    leaks,
    phantom_study,
    searchable,
)
from tests.integration.conftest import TritonEndpoint, free_ports, running_cli, wait_http_ok

pytestmark = pytest.mark.integration


def follow(client: httpx.Client, files: list) -> str:
    """Submit, wait for the result, read it, download a mask and an overlay, delete it; the
    job's final state, or "refused"."""
    response = client.post("/v1/studies", params={"wait": 120}, files=files)
    assert response.status_code < 500 or response.status_code in (502, 503), response.text
    if response.status_code not in (200, 202):
        return "refused"
    job_id = response.json()["id"]
    job = client.get(f"/v1/studies/{job_id}").json()
    if job["state"] == "succeeded":
        assert client.get(f"/v1/studies/{job_id}/slices/0/mask.png").status_code == 200
        assert client.get(f"/v1/studies/{job_id}/slices/0/overlay.png").status_code == 200
    assert client.delete(f"/v1/studies/{job_id}").status_code == 204
    assert client.get(f"/v1/studies/{job_id}").status_code == 404
    return str(job["state"])


def audited(settings: Settings) -> bool:
    """Whether the app ``bonemets serve`` builds writes the audit trail."""
    app = create_app(settings)
    return any(getattr(m, "cls", None) is AuditTrail for m in app.user_middleware)


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the CT corpus is not here")
def test_a_served_gateway_writes_no_identifying_value(
    triton_server: TritonEndpoint, tmp_path: Path
) -> None:
    (port,) = free_ports(1)
    data = tmp_path / "data"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BONEMETS_")}
    environment.update(
        BONEMETS_PORT=str(port), BONEMETS_TRITON_URL=triton_server.grpc_url,
        BONEMETS_DECODE_WORKERS="1", BONEMETS_DATA_DIR=str(data), BONEMETS_AUTH="off",
        BONEMETS_REFUSED_BODY_PARTS="",
    )
    phantom = phantom_study(tmp_path / "phantom")
    series = files_under(CORPUS / "series" / "S04_ge_lightspeed_abdomen_3slice")
    malformed = files_under(CORPUS / "malformed")[:6]
    values = identifying_values([*phantom, *series, *malformed])
    assert searchable(PHANTOM["PatientName"]) <= values
    with running_cli(["serve"], environment, tmp_path) as (cli, output):
        wait_http_ok(f"http://127.0.0.1:{port}/readyz", cli, timeout=180)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=180) as client:
            assert follow(client, as_files(phantom)) == "succeeded"
            assert follow(client, as_zip(series)) == "succeeded"
            for path in malformed:
                follow(client, as_files([path]))
            assert client.get("/v1/studies/" + "0" * 32).status_code == 404
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(timeout=60) == 0
    written = output.rest().splitlines()
    assert any("job" in line and "queued" in line for line in written)
    trail = data / "audit.log"
    if audited(Settings(data_dir=data)):
        written += trail.read_text().splitlines()
    assert leaks(written, values) == []
