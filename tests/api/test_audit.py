"""The audit trail: one JSON line per access, in its own file, with nothing the client wrote."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from api.auth.principal import Principal, Scope
from api.config import Settings
from api.errors import Unauthenticated
from api.http.app import create_app
from api.http.audit import audit_path, install_audit
from api.http.auth import Reader, authenticate
from api.http.quotas import install_quotas
from tests.api.conftest import BuiltSeries, as_files, wait_finished
from tests.api.fakes import BrightBoneModel

HOSPITAL = Principal("hospital-a", frozenset(Scope), method="api-key")


def audited_app(settings: Settings) -> FastAPI:
    """The real app with the audit trail (and the upload limits the route may need)."""
    app = create_app(settings, model_factory=lambda _: BrightBoneModel())
    install_audit(app, settings)
    install_quotas(app, settings)
    app.dependency_overrides[authenticate] = lambda: HOSPITAL

    @app.get("/v1/probe/{job_id}")
    async def probe(job_id: str, _: Reader) -> dict[str, str]:
        """A route that takes its caller the way every route will once credentials are
        checked: the audit line names that caller."""
        return {"job_id": job_id}

    install_audit(app, settings)  # twice: still one line per request
    return app


def audit_lines(settings: Settings) -> list[dict[str, Any]]:
    path = audit_path(settings)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def audit_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", decode_workers=1, batch_size=2,
                    inflight_batches=2, client_uploads_per_minute=1000,
                    client_max_inflight=1000)


@pytest.fixture
def audited(audit_settings: Settings) -> Iterator[TestClient]:
    with TestClient(audited_app(audit_settings), raise_server_exceptions=False) as client:
        yield client


def test_each_access_is_one_line_with_who_what_which_job_and_outcome(
    audited: TestClient, audit_settings: Settings, series: BuiltSeries
) -> None:
    submitted = audited.post("/v1/studies", files=as_files(series.paths))
    assert submitted.status_code == 202
    job_id = submitted.json()["id"]
    wait_finished(audited, job_id)
    lesion_slice = 2
    assert audited.get(f"/v1/studies/{job_id}/slices/{lesion_slice}/mask.png").status_code == 200
    assert audited.get(f"/v1/studies/{job_id}/slices/0/overlay.png").status_code == 200
    assert audited.delete(f"/v1/studies/{job_id}").status_code == 204
    assert audited.get(f"/v1/studies/{job_id}").status_code == 404
    lines = audit_lines(audit_settings)
    submit = lines[0]
    assert submit["action"] == "submit" and submit["job_id"] == job_id
    assert (submit["outcome"], submit["method"], submit["path"]) == (202, "POST", "/v1/studies")
    assert submit["source"] == "testclient"
    when = datetime.fromisoformat(submit["time"])
    assert when.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - when) < timedelta(minutes=1)
    tail = [(line["action"], line["outcome"], line["path"]) for line in lines[-4:]]
    assert tail == [
        ("download", 200, "/v1/studies/{job_id}/slices/{index}/mask.png"),
        ("download", 200, "/v1/studies/{job_id}/slices/{index}/overlay.png"),
        ("delete", 204, "/v1/studies/{job_id}"),
        ("read", 404, "/v1/studies/{job_id}"),
    ]
    assert {line["job_id"] for line in lines} == {job_id}
    assert {line["action"] for line in lines[1:-4]} == {"read"}  # the polling


def test_the_line_names_the_authenticated_client(
    audited: TestClient, audit_settings: Settings
) -> None:
    job_id = "ab" * 16
    assert audited.get(f"/v1/probe/{job_id}").status_code == 200
    (line,) = audit_lines(audit_settings)
    assert (line["client"], line["credential"], line["job_id"]) == ("hospital-a", "api-key", job_id)
    assert line["path"] == "/v1/probe/{job_id}"


def test_a_refused_credential_is_an_auth_failure_of_an_anonymous_caller(
    audit_settings: Settings,
) -> None:
    app = audited_app(audit_settings)

    def refuse(request: Request) -> Principal:
        raise Unauthenticated("unknown API key")

    app.dependency_overrides[authenticate] = refuse
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/v1/probe/" + "cd" * 16,
                          headers={"Authorization": "Bearer sk-secret-value"}).status_code == 401
    (line,) = audit_lines(audit_settings)
    assert (line["action"], line["client"], line["outcome"]) == ("auth-failure", "anonymous", 401)
    assert "sk-secret-value" not in audit_path(audit_settings).read_text()


def test_nothing_the_client_wrote_is_copied(
    audited: TestClient, audit_settings: Settings
) -> None:
    audited.get("/v1/studies/DOE%5EJANE?signature=SIGNED-SECRET&expires=1",
                headers={"X-Request-ID": "PATIENT-ID-1234", "User-Agent": "MRN-5678"})
    audited.get("/v1/no/such/JOHN-SMITH")
    text = audit_path(audit_settings).read_text()
    for written in ("DOE", "JANE", "SIGNED-SECRET", "signature", "PATIENT-ID", "MRN", "JOHN"):
        assert written not in text
    first, second = audit_lines(audit_settings)
    assert (first["action"], first["job_id"], first["path"]) == (
        "read", None, "/v1/studies/{job_id}")
    assert (second["action"], second["outcome"], second["path"]) == ("access", 404, None)
    assert first["request_id"] is None


def test_probes_and_docs_are_not_audited(audited: TestClient, audit_settings: Settings) -> None:
    for path in ("/healthz", "/readyz", "/docs", "/redoc", "/openapi.json",
                 "/docs/assets/swagger-ui.css"):
        assert audited.get(path).status_code in (200, 503)
    assert audit_lines(audit_settings) == []
    audited.get("/v1/models")
    assert [line["path"] for line in audit_lines(audit_settings)] == ["/v1/models"]


def test_the_trail_stays_out_of_the_service_log(
    audited: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    audited.get("/v1/studies/" + "ef" * 16)
    assert not [r for r in caplog.records if r.name.startswith("bonemets.audit")]
    assert not [r for r in caplog.records if '"action"' in r.getMessage()]


def test_the_file_is_appended_to_and_reopened_when_rotated(
    tmp_path: Path, audit_settings: Settings
) -> None:
    settings = audit_settings.model_copy(update={"audit_log": tmp_path / "logs" / "trail.log"})
    settings.audit_log.parent.mkdir()  # type: ignore[union-attr]
    settings.audit_log.write_text('{"earlier": true}\n')  # type: ignore[union-attr]
    with TestClient(audited_app(settings), raise_server_exceptions=False) as client:
        client.get("/v1/studies/" + "01" * 16)
        settings.audit_log.rename(tmp_path / "logs" / "trail.log.1")  # type: ignore[union-attr]
        client.get("/v1/studies/" + "02" * 16)
    rotated = (tmp_path / "logs" / "trail.log.1").read_text().splitlines()
    assert rotated[0] == '{"earlier": true}' and len(rotated) == 2
    assert [line["job_id"] for line in audit_lines(settings)] == ["02" * 16]


def test_a_body_refused_by_the_size_limit_is_audited(
    tmp_path: Path, audit_settings: Settings
) -> None:
    settings = audit_settings.model_copy(update={"max_upload_mb": 1})
    with TestClient(audited_app(settings), raise_server_exceptions=False) as client:
        big = [("files", ("a.dcm", bytes(2 << 20), "application/dicom"))]
        assert client.post("/v1/studies", files=big).status_code == 413
    (line,) = audit_lines(settings)
    assert (line["action"], line["outcome"], line["job_id"]) == ("submit", 413, None)


def test_key_management_routes_are_key_use(audit_settings: Settings) -> None:
    app = audited_app(audit_settings)

    @app.get("/v1/keys")
    async def keys() -> list[str]:
        return []

    with TestClient(app) as client:
        assert client.get("/v1/keys").status_code == 200
    (line,) = audit_lines(audit_settings)
    assert (line["action"], line["path"]) == ("key-use", "/v1/keys")


def test_an_unexpected_error_is_audited_as_500(audit_settings: Settings) -> None:
    app = audited_app(audit_settings)

    @app.get("/v1/studies/{job_id}/broken")
    async def broken(job_id: str) -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get(f"/v1/studies/{'ab' * 16}/broken").status_code == 500
    (line,) = audit_lines(audit_settings)
    assert (line["outcome"], line["job_id"]) == (500, "ab" * 16)


def test_a_trail_that_cannot_be_written_stops_the_start(
    tmp_path: Path, audit_settings: Settings
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    settings = audit_settings.model_copy(update={"audit_log": blocker / "audit.log"})
    with pytest.raises(OSError), TestClient(audited_app(settings)):
        pass


def test_the_file_is_opened_at_start(audit_settings: Settings) -> None:
    with TestClient(audited_app(audit_settings)):
        assert audit_path(audit_settings).exists()
