"""What a submission carries besides its images: metadata kept with the job and deleted with
it, never logged; an Idempotency-Key that makes a retried submission answer with its first
job instead of running the study twice."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.config import Settings
from api.errors import InvalidMetadata
from api.http.app import create_app
from api.schemas.submission import METADATA
from api.study.jobs import open_job_store
from tests.api.callers import as_caller, with_callers
from tests.api.conftest import BuiltSeries, as_files, build_series, wait_finished
from tests.api.contract import CheckedClient
from tests.api.fakes import BrightBoneModel

Files = list[tuple[str, tuple[str, bytes, str]]]
# The documented example without its callback: no webhooks are configured here.
SENT = {name: value for name, value in METADATA.items() if name != "callback_url"}


def with_metadata(files: Files, metadata: dict[str, Any] | bytes) -> Files:
    raw = metadata if isinstance(metadata, bytes) else json.dumps(metadata).encode()
    return [*files, ("metadata", ("metadata.json", raw, "application/json"))]


def given(shown: dict[str, Any]) -> dict[str, Any]:
    """The job document's metadata, without the fields the caller left out (null there)."""
    return {name: value for name, value in shown.items() if value is not None}


def submit(client: TestClient, files: Files, key: str | None = None, query: str = "",
           who: str = "alice") -> Any:
    headers = as_caller(who) | ({} if key is None else {"Idempotency-Key": key})
    return client.post(f"/v1/studies{query}", files=files, headers=headers)


@pytest.fixture
def series(tmp_path: Path) -> BuiltSeries:
    """Small: these tests are about the request, not the pixels."""
    return build_series(tmp_path / "series", slices=3, size=64)


@pytest.fixture
def api(settings: Settings, fake_model: BrightBoneModel) -> Any:
    app = with_callers(create_app(settings, model_factory=lambda _: fake_model))
    with CheckedClient(app, raise_server_exceptions=False) as client:
        client.headers.update(as_caller("alice"))  # wait_finished asks as alice too
        yield client


def test_metadata_is_kept_with_the_job_across_a_restart(settings: Settings,
                                                         series: BuiltSeries) -> None:
    app = with_callers(create_app(settings, model_factory=lambda _: BrightBoneModel()))
    with CheckedClient(app) as client:
        sent = submit(client, with_metadata(as_files(series.paths), SENT), query="?wait=60")
        assert sent.status_code == 200
        assert given(sent.json()["metadata"]) == SENT
    app = with_callers(create_app(settings, model_factory=lambda _: BrightBoneModel()))
    with CheckedClient(app) as client:
        again = client.get(f"/v1/studies/{sent.json()['id']}", headers=as_caller("alice"))
        plain = submit(client, as_files(series.paths))
    assert given(again.json()["metadata"]) == SENT
    assert plain.json()["metadata"] is None


def test_a_callback_url_is_refused_where_no_webhook_is_configured(
        api: TestClient, series: BuiltSeries) -> None:
    refused = submit(api, with_metadata(as_files(series.paths),
                                        {"callback_url": "https://x.org/e"}))
    assert refused.status_code == 422 and refused.json()["type"].endswith(":callback-refused")


@pytest.mark.parametrize(("metadata", "field"), [
    ({"accession_number": "A1", "patient_name": "DOE^JANE"}, "patient_name"),
    ({"subject": "urn:not-a-reference"}, "subject"),
    ({"callback_url": "ftp://ris.example.org/x"}, "callback_url"),
    ({"accession_number": "A\nB"}, "accession_number"),
    (b"{not json", "metadata"),
    (b"[1, 2]", "metadata"),
])
def test_metadata_that_is_not_the_documented_object_is_a_422_naming_the_field(
        api: TestClient, series: BuiltSeries, metadata: dict[str, Any] | bytes,
        field: str) -> None:
    answer = submit(api, with_metadata(as_files(series.paths[:1]), metadata))
    assert answer.status_code == 422
    problem = answer.json()
    assert problem["type"] == InvalidMetadata.type_uri
    assert field in problem["detail"]
    # The values are patient data: a proxy may log the answer.
    assert "DOE^JANE" not in problem["detail"] and "urn:not" not in problem["detail"]
    assert api.get("/v1/studies", headers=as_caller("alice")).json()["items"] == []


def test_a_metadata_part_over_its_limit_is_refused(api: TestClient, series: BuiltSeries) -> None:
    huge = json.dumps({"accession_number": "A" * 20_000}).encode()
    answer = submit(api, with_metadata(as_files(series.paths[:1]), huge))
    assert answer.status_code == 400 and "16 KiB" in answer.json()["detail"]


def test_the_same_key_and_body_answer_with_the_first_job(api: TestClient,
                                                         series: BuiltSeries) -> None:
    files = with_metadata(as_files(series.paths), SENT)
    first = submit(api, files, key="order-42")
    again = submit(api, files, key="order-42")
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    done = wait_finished(api, first.json()["id"])
    late = submit(api, files, key="order-42")
    assert late.status_code == 200 and late.json()["state"] == "succeeded"
    assert late.json()["result"] == done["result"]
    listed = api.get("/v1/studies", headers=as_caller("alice")).json()["items"]
    assert [job["id"] for job in listed] == [first.json()["id"]]


@pytest.mark.parametrize("change", ["files", "metadata", "priority"])
def test_the_same_key_with_another_request_is_a_409(api: TestClient, series: BuiltSeries,
                                                    change: str) -> None:
    files = as_files(series.paths)
    first = submit(api, with_metadata(files, SENT), key="k-1")
    other = {
        "files": (with_metadata(files[:-1], SENT), ""),
        "metadata": (with_metadata(files, {**SENT, "accession_number": "A2"}), ""),
        "priority": (with_metadata(files, SENT), "?priority=stat"),
    }[change]
    answer = submit(api, other[0], key="k-1", query=other[1])
    assert answer.status_code == 409
    assert answer.json()["type"] == "urn:bonemets:problem:idempotency-key-reused"
    assert first.json()["id"] in answer.json()["detail"]
    listed = api.get("/v1/studies", headers=as_caller("alice")).json()["items"]
    assert len(listed) == 1


def test_a_key_is_the_clients_own(api: TestClient, series: BuiltSeries) -> None:
    files = as_files(series.paths)
    alice = submit(api, files, key="shared-key", who="alice")
    bob = submit(api, files, key="shared-key", who="bob")
    assert (alice.status_code, bob.status_code) == (202, 202)
    assert alice.json()["id"] != bob.json()["id"]


def test_a_key_older_than_its_window_makes_a_new_job(tmp_path: Path,
                                                     series: BuiltSeries) -> None:
    settings = Settings(data_dir=tmp_path / "d", decode_workers=1,
                        idempotency_window_h=0.5 / 3600)
    app = with_callers(create_app(settings, model_factory=lambda _: BrightBoneModel()))
    with CheckedClient(app) as client:
        first = submit(client, as_files(series.paths), key="k")
        time.sleep(0.6)
        second = submit(client, as_files(series.paths), key="k")
        third = submit(client, as_files(series.paths), key="k")
    assert second.status_code == 202 and second.json()["id"] != first.json()["id"]
    assert third.status_code == 200 and third.json()["id"] == second.json()["id"]


def test_a_job_the_service_failed_runs_again_under_its_key(tmp_path: Path,
                                                           series: BuiltSeries) -> None:
    model = BrightBoneModel()
    settings = Settings(data_dir=tmp_path / "d", decode_workers=1, inference_retries=0)
    app = with_callers(create_app(settings, model_factory=lambda _: model))
    with CheckedClient(app, raise_server_exceptions=False) as client:
        model.fail_next = 10**6  # Triton down
        failed = submit(client, as_files(series.paths), key="k", query="?wait=60")
        model.fail_next = 0
        retried = submit(client, as_files(series.paths), key="k", query="?wait=60")
        replayed = submit(client, as_files(series.paths), key="k")
    assert failed.status_code == 503
    assert retried.status_code == 200 and retried.json()["state"] == "succeeded"
    assert retried.json()["id"] != failed.headers["Location"].rsplit("/", 1)[-1]
    assert replayed.json()["id"] == retried.json()["id"]


def test_metadata_never_reaches_a_log_and_goes_with_the_job(
        api: TestClient, settings: Settings, caplog: pytest.LogCaptureFixture,
        series: BuiltSeries) -> None:
    caplog.set_level(logging.DEBUG)
    sent = submit(api, with_metadata(as_files(series.paths), SENT), key="A20261207-0042")
    job = wait_finished(api, sent.json()["id"])
    assert given(job["metadata"]) == SENT
    assert api.delete(f"/v1/studies/{job['id']}", headers=as_caller("alice")).status_code == 204
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for value in SENT.values():
        assert value not in logged
    jobs = open_job_store(settings)
    try:
        with jobs.transaction() as cur:
            left = cur.execute("SELECT COUNT(*) FROM jobs WHERE metadata IS NOT NULL OR"
                               " idempotency_key IS NOT NULL").fetchone()
    finally:
        jobs.close()
    assert left == (0,)
