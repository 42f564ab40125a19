"""Results back to the PACS by C-STORE: a real pynetdicom storage SCP as the PACS, up, down,
refusing; the delivery state in the job document; resends; restarts. STOW-RS and the round
trips through a real Orthanc are in tests/integration/test_pacs_round_trip.py."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom
import pytest
from fastapi.testclient import TestClient

from api.config import Settings
from api.http.app import create_app
from tests.api.conftest import BuiltSeries, as_files, build_series
from tests.api.contract import CheckedClient
from tests.api.fakes import BrightBoneModel
from tests.api.scrapes import counted
from tests.api.storage_scp import StorageSCP
from tests.api.test_dimse import free_port
from tests.api.test_no_patient_data import PHANTOM, identifying_values, leaks, phantom_study


def destinations_file(folder: Path, port: int, clients: str = '["*"]') -> Path:
    path = folder / "destinations.toml"
    path.write_text(f"""
[[destination]]
name = "pacs"
kind = "c-store"
ae_title = "PACS"
host = "127.0.0.1"
port = {port}
clients = {clients}
timeout_s = 5
""")
    return path


def delivery_settings(tmp_path: Path, port: int, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data", "decode_workers": 1, "batch_size": 2,
        "ae_title": "BONEMETS_T", "delivery_backoff_s": 0.2, "delivery_backoff_max_s": 0.5}
    if "destinations" not in overrides:
        values["destinations"] = destinations_file(tmp_path, port)
    return Settings(**{**values, **overrides})


@pytest.fixture
def pacs_port() -> int:
    return free_port()


def serving(settings: Settings) -> CheckedClient:
    app = create_app(settings, model_factory=lambda _: BrightBoneModel())
    return CheckedClient(app, raise_server_exceptions=False)


def submit(client: TestClient, series: BuiltSeries) -> dict[str, Any]:
    job = client.post("/v1/studies?wait=60", files=as_files(series.paths)).json()
    assert job["state"] == "succeeded", job
    return job


def wait_delivery(client: TestClient, job_id: str, state: str,
                  timeout_s: float = 30) -> dict[str, Any]:
    """The job's only delivery, once it is in ``state``."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.get(f"/v1/studies/{job_id}").json()
        [delivery] = job["deliveries"]
        if delivery["state"] == state:
            assert job["state"] == "succeeded"
            return delivery
        if time.monotonic() > deadline:
            raise AssertionError(f"delivery still {delivery} after {timeout_s} s")
        time.sleep(0.1)


@pytest.fixture
def pacs(pacs_port: int) -> Iterator[StorageSCP]:
    with StorageSCP(pacs_port) as scp:
        yield scp


def test_a_finished_study_s_seg_and_sr_reach_the_pacs(
        tmp_path: Path, pacs: StorageSCP, series: BuiltSeries) -> None:
    with serving(delivery_settings(tmp_path, pacs.port)) as client:
        job = submit(client, series)
        delivery = wait_delivery(client, job["id"], "delivered")
        seg = pydicom.dcmread(BytesIO(client.get(f"/v1/studies/{job['id']}/seg.dcm").content))
        sr = pydicom.dcmread(BytesIO(client.get(f"/v1/studies/{job['id']}/sr.dcm").content))
    assert delivery["objects"] == ["seg.dcm", "sr.dcm"]
    assert delivery["attempts"] == 1 and delivery["detail"] is None
    assert delivery["delivered_at"] >= delivery["since"]
    # What the PACS got is what the API serves: the same instances, sent as our AE title.
    assert pacs.sop_instance_uids() == [seg.SOPInstanceUID, sr.SOPInstanceUID]
    assert pacs.calling == ["BONEMETS_T", "BONEMETS_T"]
    received_seg = pacs.received[0]
    assert received_seg.PixelData == seg.PixelData
    assert received_seg.StudyInstanceUID == pydicom.dcmread(series.paths[0]).StudyInstanceUID


def test_a_pacs_that_is_down_does_not_fail_the_job_and_gets_the_results_when_back(
        tmp_path: Path, pacs_port: int, series: BuiltSeries) -> None:
    retried = counted("bonemets_deliveries_total", kind="c-store", outcome="retried")
    delivered_before = counted("bonemets_deliveries_total", kind="c-store", outcome="delivered")
    with serving(delivery_settings(tmp_path, pacs_port)) as client:
        job = submit(client, series)
        deadline = time.monotonic() + 20
        while (pending := client.get(f"/v1/studies/{job['id']}").json()["deliveries"][0])[
                "attempts"] < 2:
            assert time.monotonic() < deadline, pending
            time.sleep(0.1)
        assert pending["state"] == "pending"
        assert "association" in pending["detail"] and "PACS@127.0.0.1" in pending["detail"]
        assert pending["next_attempt_at"] > pending["last_attempt_at"]
        with StorageSCP(pacs_port) as scp:
            delivered = wait_delivery(client, job["id"], "delivered")
            assert len(scp.received) == 2
    assert delivered["attempts"] > pending["attempts"]
    assert delivered["detail"] is None and delivered["next_attempt_at"] is None
    # The metrics count each attempt under the destination's kind.
    assert counted("bonemets_deliveries_total", kind="c-store", outcome="retried") - retried \
        == delivered["attempts"] - 1
    assert counted("bonemets_deliveries_total", kind="c-store", outcome="delivered") \
        - delivered_before == 1


def test_objects_refused_as_sent_fail_at_once_and_a_resend_delivers_them(
        tmp_path: Path, pacs: StorageSCP, series: BuiltSeries) -> None:
    pacs.status = 0xA900  # PS3.4 B.2.3: data set does not match SOP class
    with serving(delivery_settings(tmp_path, pacs.port)) as client:
        job = submit(client, series)
        failed = wait_delivery(client, job["id"], "failed")
        assert failed["attempts"] == 1
        assert "0xA900" in failed["detail"] and "refused as sent" in failed["detail"]
        assert client.get(f"/v1/studies/{job['id']}").json()["state"] == "succeeded"
        pacs.status = 0x0000
        resent = client.post(f"/v1/studies/{job['id']}/deliveries")
        assert resent.status_code == 202
        assert [d["state"] for d in resent.json()] == ["pending"]
        delivered = wait_delivery(client, job["id"], "delivered")
    assert delivered["attempts"] == 1  # a resend counts from its own first attempt
    assert len(pacs.received) == 2


def test_a_delivery_failing_past_the_give_up_time_is_failed_with_its_reason(
        tmp_path: Path, pacs_port: int, series: BuiltSeries) -> None:
    settings = delivery_settings(tmp_path, pacs_port, delivery_give_up_h=1.5 / 3600)
    with serving(settings) as client:
        job = submit(client, series)
        failed = wait_delivery(client, job["id"], "failed")
    assert failed["attempts"] >= 2
    assert "still failing after" in failed["detail"] and "association" in failed["detail"]


def test_a_warning_status_counts_as_delivered_and_is_noted(
        tmp_path: Path, pacs: StorageSCP, series: BuiltSeries) -> None:
    pacs.status = 0xB000  # coercion of data elements
    with serving(delivery_settings(tmp_path, pacs.port)) as client:
        delivered = wait_delivery(client, submit(client, series)["id"], "delivered")
    assert delivered["detail"] == "stored with warning 0xB000"


def test_a_study_without_lesions_sends_its_sr_alone(
        tmp_path: Path, pacs: StorageSCP) -> None:
    clear = build_series(tmp_path / "clear", slices=3, lesion_slices=(5, 5))
    with serving(delivery_settings(tmp_path, pacs.port)) as client:
        job = submit(client, clear)
        assert job["result"]["lesions"] == []
        delivered = wait_delivery(client, job["id"], "delivered")
    assert delivered["objects"] == ["sr.dcm"]
    [sr] = pacs.received
    assert sr.Modality == "SR"


def test_destinations_follow_the_client_and_a_resend_with_none_is_a_409(
        tmp_path: Path, pacs: StorageSCP, series: BuiltSeries) -> None:
    (tmp_path / "other").mkdir()
    only_other = destinations_file(tmp_path / "other", pacs.port, clients='["another-client"]')
    with serving(delivery_settings(tmp_path, pacs.port, destinations=only_other)) as client:
        job = submit(client, series)
        time.sleep(1.0)
        assert client.get(f"/v1/studies/{job['id']}").json()["deliveries"] == []
        refused = client.post(f"/v1/studies/{job['id']}/deliveries")
    assert refused.status_code == 409
    assert refused.json()["type"] == "urn:bonemets:problem:no-destination"
    assert pacs.received == []


def test_a_pending_delivery_survives_a_restart(
        tmp_path: Path, pacs_port: int, series: BuiltSeries) -> None:
    settings = delivery_settings(tmp_path, pacs_port)
    with serving(settings) as client:
        job_id = submit(client, series)["id"]
        assert client.get(f"/v1/studies/{job_id}").json()["deliveries"][0]["state"] == "pending"
    with StorageSCP(pacs_port) as scp, serving(settings) as client:
        wait_delivery(client, job_id, "delivered")
        assert len(scp.received) == 2


def test_deleting_a_study_ends_its_deliveries(
        tmp_path: Path, pacs_port: int, series: BuiltSeries) -> None:
    settings = delivery_settings(tmp_path, pacs_port)
    with serving(settings) as client:
        job_id = submit(client, series)["id"]
        assert client.delete(f"/v1/studies/{job_id}").status_code == 204
    with StorageSCP(pacs_port) as scp, serving(settings) as client:
        time.sleep(1.5)
        assert scp.received == []
        assert client.post(f"/v1/studies/{job_id}/deliveries").status_code == 404


def test_a_delivery_logs_no_patient_data(tmp_path: Path, pacs: StorageSCP,
                                         caplog: pytest.LogCaptureFixture) -> None:
    """pynetdicom, dicomweb-client and our own lines, at DEBUG, while an identified study's
    SEG and SR are sent: no name, id, birth date or accession number in any of them."""
    caplog.set_level(logging.DEBUG)
    paths = phantom_study(tmp_path / "phantom")
    with serving(delivery_settings(tmp_path, pacs.port)) as client:
        job = client.post("/v1/studies?wait=60", files=as_files(paths)).json()
        wait_delivery(client, job["id"], "delivered")
    assert pacs.received[0].PatientName == PHANTOM["PatientName"]  # they were in what was sent
    values = identifying_values(paths)
    assert "Dulcinea" in values
    assert leaks([r.getMessage() for r in caplog.records], values) == []
    assert any("delivered to pacs" in r.getMessage() for r in caplog.records)
