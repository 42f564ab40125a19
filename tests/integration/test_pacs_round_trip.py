"""Round trips with a real PACS: Debian's Orthanc (with its DICOMweb plugin) sends a study to
bonemets, and bonemets sends the SEG and SR back to it.

(a) Orthanc's "store to modality" (C-STORE) into bonemets' DIMSE listener; SEG and SR back
    by STOW-RS to Orthanc's DICOMweb root, with HTTP Basic auth.
(b) Orthanc's DICOMweb client STOWs the study to bonemets' STOW-RS route, with an API key;
    SEG and SR back by C-STORE to Orthanc's DICOM port.
(c) Orthanc stopped while the results are due: the job stays succeeded, the delivery is
    retried, and completes once Orthanc is back.

The model is the bright-bone fake (tests/api/fakes.py): every part outside the model is the
real one, bonemets served by uvicorn on a free port where Orthanc must reach it over HTTP.
"""

from __future__ import annotations

import time
from io import BytesIO
from pathlib import Path
from typing import Any

import highdicom as hd
import httpx
import pydicom
import pytest

from api.config import Settings
from tests.api.conftest import BuiltSeries, build_series
from tests.api.fakes import BrightBoneModel, GatedModel
from tests.api.test_dimse import free_port
from tests.integration.orthanc import DicomWebServer, Modality, Orthanc, running_orthanc
from tests.integration.served import api_key, bonemets

PACS_AE = "PACS"
PASSWORD_ENV = "BONEMETS_TEST_PACS_PASSWORD"


def gateway_settings(tmp_path: Path, destination: str, **values: Any) -> Settings:
    path = tmp_path / "destinations.toml"
    path.write_text(destination)
    return Settings(data_dir=tmp_path / "data", port=free_port(), decode_workers=1,
                    batch_size=2, ae_title="BONEMETS", destinations=path,
                    delivery_backoff_s=0.2, delivery_backoff_max_s=1.0, **values)


def stow_to(pacs: Orthanc, clients: str) -> str:
    return (f'[[destination]]\nname = "orthanc-web"\nkind = "stow-rs"\n'
            f'url = "{pacs.dicomweb_url}"\nusername = "{pacs.username}"\n'
            f'password_env = "{PASSWORD_ENV}"\nclients = {clients}\n')


def c_store_to(pacs: Orthanc, clients: str) -> str:
    return (f'[[destination]]\nname = "orthanc-dimse"\nkind = "c-store"\n'
            f'ae_title = "{pacs.ae_title}"\nhost = "127.0.0.1"\nport = {pacs.dicom_port}\n'
            f'clients = {clients}\n')


def c_store_in_stow_out(tmp_path: Path, pacs: Orthanc, monkeypatch: pytest.MonkeyPatch
                        ) -> tuple[Settings, str]:
    """The gateway's settings for studies in from ``pacs`` by C-STORE (their client named
    after its AE title) and results back to it by STOW-RS; a key of that client."""
    monkeypatch.setenv(PASSWORD_ENV, pacs.password)
    settings = gateway_settings(
        tmp_path, stow_to(pacs, '["dimse-PACS"]'), dicom_port=free_port(),
        dicom_calling_aes=PACS_AE, dicom_quiet_s=0.5, dicom_client="dimse-{calling_ae}")
    return settings, api_key(settings, "dimse-PACS")


def delivered_job(base: str, key: str, timeout_s: float = 60) -> dict[str, Any]:
    """The caller's one study, once it succeeded and its one delivery is delivered."""
    headers = {"Authorization": f"Bearer {key}"}
    deadline = time.monotonic() + timeout_s
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        items = httpx.get(f"{base}/v1/studies", headers=headers).json()["items"]
        if items:
            job = httpx.get(f"{base}/v1/studies/{items[0]['id']}", headers=headers).json()
            assert job["state"] in ("queued", "running", "succeeded"), job
            if [d["state"] for d in job["deliveries"]] == ["delivered"]:
                return job
        time.sleep(0.2)
    raise AssertionError(f"no delivered study in {timeout_s} s: {job}")


def assert_pacs_holds_the_results(pacs: Orthanc, series: BuiltSeries,
                                  job: dict[str, Any]) -> None:
    """Orthanc found by QIDO-RS one SEG and one SR in the source study, each referencing the
    source series, with as many segments and measurement groups as the result has lesions."""
    source = pydicom.dcmread(series.paths[0])
    study = source.StudyInstanceUID
    lesions = len(job["result"]["lesions"])
    assert lesions >= 1
    [seg_json] = pacs.qido_until(f"studies/{study}/instances", {"Modality": "SEG"}, count=1)
    [sr_json] = pacs.qido_until(f"studies/{study}/instances", {"Modality": "SR"}, count=1)
    seg = hd.seg.segread(BytesIO(_stored(pacs, seg_json)))
    assert len(seg.SegmentSequence) == lesions
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    sr = hd.sr.srread(BytesIO(_stored(pacs, sr_json)))
    # TID 1410 groups: each lesion's outline on its largest slice, its volume from the SEG.
    assert len(sr.content.get_planar_roi_measurement_groups()) == lesions
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
    series_uids = {s.SeriesInstanceUID for s in evidence.ReferencedSeriesSequence}
    assert source.SeriesInstanceUID in series_uids
    assert job["deliveries"][0]["objects"] == ["seg.dcm", "sr.dcm"]


def _stored(pacs: Orthanc, qido_item: dict[str, Any]) -> bytes:
    """The file Orthanc stored for one QIDO-RS answer, by its SOP Instance UID."""
    uid = qido_item["00080018"]["Value"][0]
    [found] = pacs.request("POST", "/tools/find", json={
        "Level": "Instance", "Query": {"SOPInstanceUID": uid}}).json()
    return pacs.file(found)


@pytest.fixture
def series(tmp_path: Path) -> BuiltSeries:
    return build_series(tmp_path / "series", slices=4, lesion_slices=(1, 2))


def test_a_c_store_in_from_orthanc_gets_seg_and_sr_back_by_stow_rs(
        tmp_path: Path, series: BuiltSeries, monkeypatch: pytest.MonkeyPatch) -> None:
    with running_orthanc(tmp_path / "pacs", ae_title=PACS_AE) as pacs:
        settings, key = c_store_in_stow_out(tmp_path, pacs, monkeypatch)
        pacs.upload(series.paths)
        pacs.add_modality("bonemets", Modality("BONEMETS", settings.dicom_port or 0))
        with bonemets(settings, BrightBoneModel()) as base:
            study = pacs.find_study(pydicom.dcmread(series.paths[0]).StudyInstanceUID)
            assert study is not None
            sent = pacs.store_to_modality("bonemets", [study])
            assert (sent["InstancesCount"], sent["FailedInstancesCount"]) == (4, 0)
            job = delivered_job(base, key)
        assert_pacs_holds_the_results(pacs, series, job)


def test_a_stow_rs_in_from_orthanc_gets_seg_and_sr_back_by_c_store(
        tmp_path: Path, series: BuiltSeries) -> None:
    with running_orthanc(tmp_path / "pacs", ae_title=PACS_AE) as pacs:
        settings = gateway_settings(tmp_path, c_store_to(pacs, '["pacs-router"]'))
        key = api_key(settings, "pacs-router")
        [*_] = pacs.upload(series.paths)
        with bonemets(settings, BrightBoneModel()) as base:
            pacs.add_dicomweb_server("bonemets", DicomWebServer(
                f"{base}/v1/dicomweb", headers={"Authorization": f"Bearer {key}"}))
            study = pacs.find_study(pydicom.dcmread(series.paths[0]).StudyInstanceUID)
            assert study is not None
            sent = pacs.stow_to_server("bonemets", [study])
            assert sent["InstancesCount"] == "4"
            job = delivered_job(base, key)
        assert_pacs_holds_the_results(pacs, series, job)


def test_orthanc_down_while_results_are_due_gets_them_once_back(
        tmp_path: Path, series: BuiltSeries, monkeypatch: pytest.MonkeyPatch) -> None:
    model = GatedModel()
    model.gate.set()
    with running_orthanc(tmp_path / "pacs", ae_title=PACS_AE) as pacs:
        settings, key = c_store_in_stow_out(tmp_path, pacs, monkeypatch)
        headers = {"Authorization": f"Bearer {key}"}
        pacs.upload(series.paths)
        pacs.add_modality("bonemets", Modality("BONEMETS", settings.dicom_port or 0))
        with bonemets(settings, model) as base:
            model.gate.clear()  # the study waits at the model while Orthanc goes down
            study = pacs.find_study(pydicom.dcmread(series.paths[0]).StudyInstanceUID)
            pacs.store_to_modality("bonemets", [study or ""])
            pacs.stop()
            model.gate.set()
            waiting = _failing_delivery(base, headers)
            assert waiting["state"] == "succeeded"
            pacs.start()
            job = delivered_job(base, key)
        delivery = job["deliveries"][0]
        assert delivery["attempts"] > waiting["deliveries"][0]["attempts"] >= 2
        assert_pacs_holds_the_results(pacs, series, job)


def _failing_delivery(base: str, headers: dict[str, str]) -> dict[str, Any]:
    """The one study, once its delivery has failed at least twice (and is still pending)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        items = httpx.get(f"{base}/v1/studies", headers=headers).json()["items"]
        if items:
            job = httpx.get(f"{base}/v1/studies/{items[0]['id']}", headers=headers).json()
            deliveries = job["deliveries"]
            if deliveries and deliveries[0]["attempts"] >= 2:
                assert deliveries[0]["state"] == "pending", deliveries
                assert "STOW-RS to 127.0.0.1" in deliveries[0]["detail"]
                return dict(job)
        time.sleep(0.1)
    raise AssertionError("the delivery was not retried while Orthanc was down")
