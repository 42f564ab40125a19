"""The JSON service log through the real app: request ids, the request's and the job's lines."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.config import Settings
from api.http.app import create_app
from tests.api.conftest import BuiltSeries, as_files, wait_finished
from tests.api.contract import CheckedClient
from tests.api.fakes import BrightBoneModel
from tests.api.json_log import JsonLog, json_log
from tests.api.test_audit import audit_lines
from tests.api.test_no_patient_data import PHANTOM, leaks, phantom_study, searchable, submit

HEX_ID = re.compile(r"^[0-9a-f]{32}$")
STAGES = ["read", "decode", "inference", "postprocess", "write"]


@pytest.fixture
def json_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", decode_workers=1, batch_size=2,
                    inflight_batches=2, log_format="json")


@pytest.fixture
def logged() -> Iterator[JsonLog]:
    with json_log() as log:
        yield log


@pytest.fixture
def client(json_settings: Settings, logged: JsonLog) -> Iterator[TestClient]:
    app = create_app(json_settings, model_factory=lambda _: BrightBoneModel())

    @app.get("/v1/broken")
    async def broken() -> None:
        """A route that fails the way a bug would."""
        raise RuntimeError("a bug in a route")

    with CheckedClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_every_line_is_a_json_object_and_a_request_is_one_line_with_its_id(
    client: TestClient, logged: JsonLog
) -> None:
    response = client.get("/v1/models?verbose=SECRET-QUERY")
    assert response.status_code == 200
    rid = response.headers["X-Request-ID"]
    assert HEX_ID.match(rid)
    (line,) = logged.where(logger="bonemets.access", request_id=rid)
    assert (line["method"], line["path"], line["status"]) == ("GET", "/v1/models", 200)
    assert line["client"] == "tests" and line["level"] == "INFO"
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["message"].startswith("GET /v1/models 200 ")
    service_lines = [e for e in logged.lines() if e["logger"] != "httpx"]  # the test's client
    assert "SECRET-QUERY" not in str(service_lines)


def test_a_sane_caller_id_is_echoed_and_an_insane_one_replaced(
    client: TestClient, logged: JsonLog
) -> None:
    sane = "ticket-42.retry_1"
    assert client.get("/v1/models", headers={"X-Request-ID": sane}).headers[
        "X-Request-ID"] == sane
    assert logged.where(logger="bonemets.access", request_id=sane)
    for insane in ("a" * 129, "two words", "line\nbreak", "", "semi;colon", "é"):
        answered = client.get("/v1/models", headers={"X-Request-ID": insane.encode()})
        assert HEX_ID.match(answered.headers["X-Request-ID"]), insane
    assert not logged.where(request_id="a" * 129)


def test_refusals_and_failures_carry_the_id_and_a_traceback_is_kept(
    client: TestClient, logged: JsonLog
) -> None:
    with client.sending(None):  # type: ignore[attr-defined]
        refused = client.get("/v1/models", headers={"X-Request-ID": "no-key-1"})
    assert refused.status_code == 401 and refused.headers["X-Request-ID"] == "no-key-1"
    assert logged.where(logger="bonemets.access", request_id="no-key-1", status=401)
    missing = client.get("/v1/studies/" + "0" * 32, headers={"X-Request-ID": "gone-1"})
    assert missing.status_code == 404 and missing.headers["X-Request-ID"] == "gone-1"
    failed = client.get("/v1/broken", headers={"X-Request-ID": "bug-1"})
    assert failed.status_code == 500 and failed.headers["X-Request-ID"] == "bug-1"
    (error,) = logged.where(level="ERROR", request_id="bug-1")
    assert error["client"] == "tests"
    assert "RuntimeError: a bug in a route" in error["exception"]
    assert logged.where(logger="bonemets.access", request_id="bug-1", status=500)


def test_a_jobs_lines_name_it_and_its_client_one_per_stage(
    client: TestClient, logged: JsonLog, series: BuiltSeries
) -> None:
    submitted = client.post("/v1/studies", files=as_files(series.paths),
                            headers={"X-Request-ID": "upload-1"})
    assert submitted.status_code == 202
    job_id = submitted.json()["id"]
    assert submitted.headers["X-Request-ID"] == "upload-1"
    assert wait_finished(client, job_id)["state"] == "succeeded"
    queued = [e for e in logged.where(request_id="upload-1") if "queued" in e["message"]]
    assert len(queued) == 1 and queued[0]["client"] == "tests"
    job_lines = logged.where(job_id=job_id)
    assert job_lines and all(e["client"] == "tests" for e in job_lines)
    assert not any("request_id" in e for e in job_lines)  # the runner's, not a request's
    stages = [e for e in job_lines if "stage" in e]
    assert [e["stage"] for e in stages] == STAGES
    assert all(isinstance(e["duration_ms"], float) for e in stages)
    assert any(e["message"] == f"job {job_id} succeeded" for e in job_lines)


def test_the_audit_keeps_only_ids_the_service_made(
    client: TestClient, json_settings: Settings
) -> None:
    made = client.get("/v1/models").headers["X-Request-ID"]
    client.get("/v1/models", headers={"X-Request-ID": "PATIENT-ID-1234"})
    first, second = audit_lines(json_settings)
    assert (first["request_id"], second["request_id"]) == (made, None)


def test_an_identified_study_leaves_no_patient_data_in_the_json_lines(
    client: TestClient, logged: JsonLog, tmp_path: Path
) -> None:
    values = set().union(*(searchable(value) for value in PHANTOM.values()))
    phantom = phantom_study(tmp_path / "phantom")
    assert submit(client, as_files(phantom)) == "succeeded"
    lines = logged.text.splitlines()
    assert len(logged.lines()) > 10
    assert leaks(lines, values) == []
