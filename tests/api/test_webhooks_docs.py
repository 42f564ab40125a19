"""The webhook receiver docs/integration.md shows, run exactly as written, verifies the events
the service sends and refuses a forged one: the docs cannot drift from the signature."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import BuiltSeries, as_files, wait_finished
from tests.api.test_dimse import free_port
from tests.api.test_webhooks import SECRET_ENV, served, services_of
from tests.api.webhook_receiver import new_secret, wait_webhook, webhooks_file

DOC = Path(__file__).resolve().parents[2] / "docs" / "integration.md"
MARKER = "<!-- webhook-receiver:"


def receiver_snippet() -> str:
    """The Python block right after the marker comment in docs/integration.md."""
    text = DOC.read_text(encoding="utf-8")
    _, fence, rest = text[text.index(MARKER):].split("\n", 2)
    assert fence == "```python"
    return rest.split("```", 1)[0]


@pytest.fixture
def snippet_receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[
        tuple[str, int, subprocess.Popen[str]]]:
    secret = new_secret()
    monkeypatch.setenv(SECRET_ENV, secret)
    script = tmp_path / "receiver.py"
    script.write_text(receiver_snippet())
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(script)], env={"WEBHOOK_SECRET": secret, "PORT": str(port)},
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # until it listens
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.05)
    try:
        yield secret, port, process
    finally:
        process.terminate()
        process.wait(10)


def test_the_documented_receiver_verifies_a_real_event_and_refuses_a_forged_one(
        tmp_path: Path, series: BuiltSeries,
        snippet_receiver: tuple[str, int, subprocess.Popen[str]]) -> None:
    _, port, process = snippet_receiver
    url = f"http://127.0.0.1:{port}/bonemets/events"
    with served(tmp_path, webhooks_file(tmp_path, SECRET_ENV, url)) as client:
        job_id = client.post("/v1/studies", files=as_files(series.paths)).json()["id"]
        assert wait_finished(client, job_id)["state"] == "succeeded"
        row = wait_webhook(services_of(client).jobs.webhooks.of_job, job_id)
    assert (row.state.value, row.last_status) == ("delivered", 204)  # 401 if it did not verify
    forged = httpx.post(url, content=b'{"type":"study.succeeded"}', headers={
        "webhook-id": row.event_id, "webhook-timestamp": str(int(time.time())),
        "webhook-signature": "v1,bm90IHRoZSBzaWduYXR1cmU="})
    assert forged.status_code == 401
    process.terminate()
    printed, _ = process.communicate(timeout=10)
    assert printed.splitlines() == [f"study.succeeded {job_id}"]
