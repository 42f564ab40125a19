"""Webhooks: a job's end POSTed, signed, to real local receivers: verified by the Standard
Webhooks library, retried after a 500, failed for good when the receiver stays down, refused
off the allow-list (at submission, and at send time on the resolved address); the delivery
state in the job document; rows deleted with the job; nothing of the caller's in the logs."""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.config import Settings
from api.delivery.webhook_clients import load_webhooks
from api.errors import CallbackRefused
from api.http.app import create_app
from api.schemas.submission import SubmissionMetadata
from api.study.intake import select_series
from api.study.series_record import keep_series
from api.study.services import Services
from tests.api.conftest import BuiltSeries, as_files, wait_finished
from tests.api.contract import CheckedClient
from tests.api.fakes import BrightBoneModel
from tests.api.scrapes import counted
from tests.api.test_dimse import free_port
from tests.api.test_submissions import with_metadata
from tests.api.webhook_receiver import (
    Receiver,
    event_of,
    new_secret,
    self_signed,
    wait_webhook,
    webhooks_file,
)

SECRET_ENV = "BONEMETS_TEST_WEBHOOK_SECRET"
METADATA = SubmissionMetadata(accession_number="ACC-778899", placer_order="ORD-55443",
                              service_request="ServiceRequest/sr-321", subject="Patient/p-987")


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    value = new_secret()
    monkeypatch.setenv(SECRET_ENV, value)
    return value


@pytest.fixture
def receiver(secret: str) -> Iterator[Receiver]:
    started = Receiver(secret)
    yield started
    started.close()


def served(tmp_path: Path, webhooks: Path, allow: str = "127.0.0.0/8") -> CheckedClient:
    settings = Settings(data_dir=tmp_path / "data", decode_workers=1, batch_size=8,
                        webhooks=webhooks, webhook_allow=allow)
    return CheckedClient(create_app(settings, model_factory=lambda _: BrightBoneModel()),
                         raise_server_exceptions=False)


def services_of(client: CheckedClient) -> Services:
    services: Services = client.app_state["services"]
    return services


def queue_with_metadata(client: CheckedClient, series: BuiltSeries | None,
                        metadata: SubmissionMetadata) -> str:
    """A job of the test client with ``metadata``, stored as intake stores one. Without a
    series, the job has no upload and fails when run: a failed job's event, without a
    model that fails."""
    services = services_of(client)
    job_id = uuid.uuid4().hex
    slices = 0
    if series is not None:
        upload = services.store.create(job_id)
        files = [Path(shutil.copy(path, upload)) for path in series.paths]
        chosen = select_series(files, services.settings)
        services.store.keep_upload(job_id)
        keep_series(services.store, job_id, chosen, upload)
        slices = len(chosen.slices)
    services.jobs.create(job_id, slices_total=slices, owner="tests", metadata=metadata)
    client.portal.call(services.runner.submit, job_id)  # type: ignore[union-attr]
    return job_id


def test_a_succeeded_job_sends_one_verified_event_to_its_clients_default_url(
        tmp_path: Path, series: BuiltSeries, receiver: Receiver) -> None:
    with served(tmp_path, webhooks_file(tmp_path, SECRET_ENV, receiver.url)) as client:
        job_id = client.post("/v1/studies", files=as_files(series.paths)).json()["id"]
        job = wait_finished(client, job_id)
        row = wait_webhook(services_of(client).jobs.webhooks.of_job, job_id)
        document = client.get(f"/v1/studies/{job_id}").json()
    assert job["state"] == "succeeded"
    (sent,) = receiver.received
    assert sent.verified is not None, "the Standard Webhooks verifier refused the signature"
    assert sent.headers["webhook-id"] == row.event_id and row.event_id.startswith("msg_")
    assert abs(int(sent.headers["webhook-timestamp"]) - sent.at) < 5
    base = f"/v1/studies/{job_id}"
    assert sent.verified == {
        "type": "study.succeeded", "timestamp": sent.verified["timestamp"],
        "data": {"id": job_id, "state": "succeeded",
                 "lesion_count": len(job["result"]["lesions"]),
                 "links": {"job": base, "seg": f"{base}/seg.dcm", "sr": f"{base}/sr.dcm",
                           "fhir": f"{base}/fhir"},
                 "metadata": {}},
    }
    assert len(job["result"]["lesions"]) == 1
    (webhook,) = document["webhooks"]
    assert webhook == {"event": "study.succeeded", "host": "127.0.0.1", "state": "delivered",
                       "attempts": 1, "last_status": 204, "since": row.since,
                       "last_attempt_at": row.last_attempt_at, "next_attempt_at": None,
                       "delivered_at": row.delivered_at, "detail": None}
    assert "t0k3n" not in str(document)  # the URL's query (the caller's token) is not shown


def test_a_failed_job_sends_study_failed_to_its_own_callback_with_its_metadata_and_logs_none(
        tmp_path: Path, secret: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    default, own = Receiver(secret), Receiver(secret)
    try:
        with served(tmp_path, webhooks_file(tmp_path, SECRET_ENV, default.url)) as client:
            metadata = METADATA.model_copy(update={"callback_url": own.url})
            job_id = queue_with_metadata(client, None, metadata)  # no upload: it fails
            row = wait_webhook(services_of(client).jobs.webhooks.of_job, job_id)
            assert services_of(client).jobs.get(job_id).state.value == "failed"
    finally:
        default.close()
        own.close()
    assert default.received == [] and row.state.value == "delivered"
    (sent,) = own.received
    assert sent.verified["type"] == "study.failed"
    assert sent.verified["data"] == {
        "id": job_id, "state": "failed",
        "problem": {"type": "urn:bonemets:problem:interrupted",
                    "title": "Processing interrupted", "status": 503},
        "links": {"job": f"/v1/studies/{job_id}"},
        "metadata": METADATA.model_dump(exclude_none=True),
    }
    secrets = (secret, secret.removeprefix("whsec_"), "t0k3n", "/events")
    values = (*METADATA.model_dump(exclude_none=True).values(), *secrets)
    lines = [record.getMessage() for record in caplog.records]
    assert any(job_id in line for line in lines)  # the job is logged, by its id only
    assert [line for line in lines if any(value in line for value in values)] == []


def test_a_receiver_answering_500_first_gets_the_same_event_again_and_the_job_is_untouched(
        tmp_path: Path, series: BuiltSeries, secret: str) -> None:
    receiver = Receiver(secret, statuses=[500, 200])
    retried, delivered = (counted("bonemets_webhooks_total", outcome=outcome)
                          for outcome in ("retried", "delivered"))
    try:
        with served(tmp_path, webhooks_file(tmp_path, SECRET_ENV, receiver.url)) as client:
            job_id = client.post("/v1/studies", files=as_files(series.paths)).json()["id"]
            job = wait_finished(client, job_id)
            wait_webhook(services_of(client).jobs.webhooks.of_job, job_id)
            document = client.get(f"/v1/studies/{job_id}").json()
    finally:
        receiver.close()
    first, second = receiver.received
    assert first.body == second.body and first.verified and second.verified
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    (webhook,) = document["webhooks"]
    assert (webhook["state"], webhook["attempts"], webhook["last_status"]) == ("delivered", 2, 200)
    assert webhook["detail"] is None and webhook["delivered_at"] >= second.at - 1
    # The job ended before the first attempt, and the attempts changed nothing of it.
    assert document["state"] == "succeeded" and document["updated_at"] == job["updated_at"]
    assert job["updated_at"] == webhook["since"] <= first.at
    assert counted("bonemets_webhooks_total", outcome="retried") - retried == 1
    assert counted("bonemets_webhooks_total", outcome="delivered") - delivered == 1


def test_a_receiver_down_throughout_fails_the_event_after_the_retry_time_not_the_job(
        tmp_path: Path, series: BuiltSeries, secret: str) -> None:
    down = f"http://127.0.0.1:{free_port()}/events"  # nothing listens there
    with served(tmp_path, webhooks_file(tmp_path, SECRET_ENV, down, give_up_s=0.6)) as client:
        job_id = client.post("/v1/studies", files=as_files(series.paths)).json()["id"]
        job = wait_finished(client, job_id)
        row = wait_webhook(services_of(client).jobs.webhooks.of_job, job_id, ("failed",))
        document = client.get(f"/v1/studies/{job_id}").json()
    assert job["state"] == document["state"] == "succeeded"
    assert row.attempts >= 2 and row.last_status is None
    assert row.detail.startswith("no answer: ConnectError; still failing after")
    assert row.last_attempt_at - row.since < 0.6 + 2.5  # bounded: give_up_s and one timeout
    assert document["webhooks"][0]["state"] == "failed"


def test_callback_urls_off_the_allow_list_are_refused_at_submission(
        tmp_path: Path, secret: str) -> None:
    path = webhooks_file(tmp_path, SECRET_ENV)
    networks = load_webhooks(path, "127.0.0.0/8")
    names = load_webhooks(path, "ris.example.org,*.hospital.example")
    assert networks.check_callback("http://127.0.0.1:9/x", "tests") is None
    assert names.check_callback("https://ris.example.org/events?t=1", "tests") is None
    assert names.check_callback("https://a.b.hospital.example/events", "tests") is None
    refused = [
        (networks, "http://10.1.2.3/events", "tests"),  # an address outside the networks
        (networks, "http://169.254.169.254/latest/meta-data", "tests"),
        (names, "https://evil.example.org/events", "tests"),
        (names, "https://hospital.example/events", "tests"),  # *.domain: not the domain
        (names, "https://ris.example.org.evil.example/", "tests"),
        (names, "http://127.0.0.1/events", "tests"),  # an address, no network listed
        (names, "ftp://ris.example.org/events", "tests"),
        (names, "https://user:pw@ris.example.org/events", "tests"),
        (names, "https://ris.example.org/events", "someone-else"),  # no secret of its own
        (load_webhooks(path, ""), "https://ris.example.org/events", "tests"),  # empty list
    ]
    for webhooks, url, client in refused:
        with pytest.raises(CallbackRefused) as refusal:
            webhooks.check_callback(url, client)
        assert refusal.value.status == 422, url
        assert url not in refusal.value.detail  # the caller's URL is not quoted back


def test_an_upload_whose_callback_url_is_off_the_allow_list_is_refused_and_not_kept(
        tmp_path: Path, series: BuiltSeries, secret: str) -> None:
    with served(tmp_path, webhooks_file(tmp_path, SECRET_ENV), allow="ris.example.org") as client:
        refused = client.post("/v1/studies", files=with_metadata(
            as_files(series.paths), {"callback_url": "http://169.254.169.254/latest/meta-data"}))
        listed = client.get("/v1/studies").json()["items"]
        studies = list((tmp_path / "data" / "studies").glob("*"))
    assert refused.status_code == 422
    assert refused.json()["type"] == CallbackRefused.type_uri
    assert "169.254" not in refused.json()["detail"]
    assert listed == [] and studies == []


def test_a_name_resolving_to_loopback_is_refused_at_send_time_when_only_a_public_network_is_allowed(
        tmp_path: Path, series: BuiltSeries, receiver: Receiver) -> None:
    # "localhost" passes at submission (a network is listed: the addresses decide), but it
    # resolves to 127.0.0.1, which is neither public nor inside 8.8.8.0/24.
    url = f"http://localhost:{receiver.port}/events"
    webhooks = webhooks_file(tmp_path, SECRET_ENV, url)
    with served(tmp_path, webhooks, allow="8.8.8.0/24") as client:
        services_of(client).check_callback(url, "tests")
        job_id = client.post("/v1/studies", files=as_files(series.paths)).json()["id"]
        assert wait_finished(client, job_id)["state"] == "succeeded"
        row = wait_webhook(services_of(client).jobs.webhooks.of_job, job_id)
    assert receiver.received == []
    assert (row.state.value, row.attempts, row.last_status) == ("failed", 0, None)
    assert "resolves to a loopback address that is not on the allow-list" in row.detail


def test_a_succeeded_job_with_metadata_echoes_it_and_its_events_go_with_the_job(
        tmp_path: Path, series: BuiltSeries, receiver: Receiver) -> None:
    with served(tmp_path, webhooks_file(tmp_path, SECRET_ENV)) as client:
        metadata = METADATA.model_copy(update={"callback_url": receiver.url})
        files = with_metadata(as_files(series.paths), metadata.model_dump(exclude_none=True))
        job_id = client.post("/v1/studies", files=files).json()["id"]
        finished = wait_finished(client, job_id)
        assert finished["state"] == "succeeded"
        # The job shows the callback without its query: the caller's token stays the caller's.
        assert finished["metadata"]["callback_url"] == receiver.url.split("?")[0]
        services = services_of(client)
        wait_webhook(services.jobs.webhooks.of_job, job_id)
        assert client.delete(f"/v1/studies/{job_id}").status_code == 204
        left = services.jobs.webhooks.of_job(job_id)
        with services.jobs.transaction() as cur:
            count = cur.execute("SELECT COUNT(*) FROM webhooks WHERE job_id = ?",
                                (job_id,)).fetchone()[0]
    assert left == [] and count == 0
    event: Any = event_of(receiver.received[0])
    assert receiver.received[0].verified == event
    assert event["data"]["metadata"] == METADATA.model_dump(exclude_none=True)
    assert event["data"]["lesion_count"] == 1


def test_serve_stops_on_a_missing_secret_or_a_default_url_off_the_allow_list(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from api.cli import main

    path = webhooks_file(tmp_path, "BONEMETS_TEST_UNSET_SECRET", "https://ris.example.org/")
    monkeypatch.delenv("BONEMETS_TEST_UNSET_SECRET", raising=False)
    started = time.monotonic()
    assert main(["serve", "--data-dir", str(tmp_path / "d"), "--webhooks", str(path)]) == 2
    monkeypatch.setenv("BONEMETS_TEST_UNSET_SECRET", new_secret())
    monkeypatch.setenv("BONEMETS_WEBHOOK_ALLOW", "*.hospital.example")
    assert main(["serve", "--data-dir", str(tmp_path / "d"), "--webhooks", str(path)]) == 2
    assert time.monotonic() - started < 10 and not (tmp_path / "d").exists()


def test_a_receiver_answering_410_gone_is_not_called_again(
        tmp_path: Path, series: BuiltSeries, secret: str) -> None:
    receiver = Receiver(secret, statuses=[410])
    try:
        with served(tmp_path, webhooks_file(tmp_path, SECRET_ENV, receiver.url)) as client:
            job_id = client.post("/v1/studies", files=as_files(series.paths)).json()["id"]
            row = wait_webhook(services_of(client).jobs.webhooks.of_job, job_id)
            time.sleep(0.3)  # several backoffs: a retry would have come by now
    finally:
        receiver.close()
    assert len(receiver.received) == 1
    assert (row.state.value, row.attempts, row.last_status) == ("failed", 1, 410)
    assert "410 Gone" in row.detail


def test_an_https_receiver_is_reached_at_the_checked_address_under_its_own_name(
        tmp_path: Path, series: BuiltSeries, secret: str) -> None:
    # The request goes to the address checked (127.0.0.1), yet TLS checks the certificate
    # against the URL's name (SNI) and the Host header names it: both must hold, or no event.
    ca_file, tls = self_signed(tmp_path)
    receiver = Receiver(secret, tls=tls)
    url = f"https://localhost:{receiver.port}/events"
    try:
        with served(tmp_path, webhooks_file(tmp_path, SECRET_ENV, url, ca_file=ca_file)) as client:
            job_id = client.post("/v1/studies", files=as_files(series.paths)).json()["id"]
            row = wait_webhook(services_of(client).jobs.webhooks.of_job, job_id)
    finally:
        receiver.close()
    assert (row.state.value, row.last_status, row.detail) == ("delivered", 204, None)
    (sent,) = receiver.received
    assert sent.verified is not None and sent.headers["host"] == f"localhost:{receiver.port}"
