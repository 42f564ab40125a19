"""GET /v1/studies/{id}/fhir: an R4 Bundle whose values are the JSON result's and whose
references are the SEG and SR the API serves; and the same Bundle, as a transaction, sent to a
FHIR server (a real one on a free port, that parses what arrives) through the deliveries."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydicom
import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle

from api.config import Settings
from api.schemas.submission import METADATA
from tests.api.conftest import as_files, build_series
from tests.api.fakes import BrightBoneModel
from tests.api.fhir_server import FhirServer
from tests.api.test_delivery import serving, submit, wait_delivery
from tests.api.test_reports import two_lesions
from tests.api.test_submissions import with_metadata

FHIR_JSON = "application/fhir+json"


@pytest.fixture(autouse=True)
def every_finding_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """The phantoms here (the second lesion of two_lesions, the 64-pixel series' only one)
    are under the default reporting floor, which this module does not test."""
    monkeypatch.setenv("BONEMETS_REPORTING_FLOOR_MM", "0")


def by_type(bundle: Bundle, kind: str) -> list[Any]:
    return [entry.resource for entry in bundle.entry or []
            if entry.resource.get_resource_type() == kind]


def _instant(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


def _served_uid(client: TestClient, job_id: str, name: str) -> str:
    answer = client.get(f"/v1/studies/{job_id}/{name}")
    assert answer.status_code == 200
    return f"urn:oid:{pydicom.dcmread(io.BytesIO(answer.content)).SOPInstanceUID}"


def test_the_bundle_holds_the_json_result_and_the_served_seg_and_sr(
        client: TestClient, tmp_path: Path) -> None:
    job = client.post("/v1/studies?wait=60", files=as_files(two_lesions(tmp_path / "s"))).json()
    answer = client.get(f"/v1/studies/{job['id']}/fhir")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == FHIR_JSON
    bundle = Bundle.model_validate_json(answer.content)
    assert bundle.type == "collection"
    lesions = job["result"]["lesions"]
    observations = by_type(bundle, "Observation")
    assert len(lesions) >= 2 and len(observations) == len(lesions)
    [report], [device] = by_type(bundle, "DiagnosticReport"), by_type(bundle, "Device")
    seg, sr = (_served_uid(client, job["id"], name) for name in ("seg.dcm", "sr.dcm"))
    for lesion, observation in zip(lesions, observations, strict=True):
        values = [float(c.valueQuantity.value) for c in observation.component]
        assert values == [lesion["volume_ml"], lesion["longest_axial_diameter_mm"],
                          lesion["probability_max"]]
        assert [c.valueQuantity.code for c in observation.component] == ["mL", "mm", "1"]
        assert [ref.identifier.value for ref in observation.derivedFrom] == [sr, seg]
        assert observation.subject is None and observation.encounter is None
    largest = max(lesion["longest_axial_diameter_mm"] for lesion in lesions)
    assert report.conclusion == (
        f"{len(lesions)} suspected bone metastases, largest {largest:.0f} mm.")
    assert report.status == "preliminary"
    assert report.imagingStudy[0].identifier.value == (
        f"urn:oid:{job['result']['study_instance_uid']}")
    assert report.subject is None and report.encounter is None and report.basedOn is None
    assert len(report.identifier) == 1  # no accession number was given
    # The phantom has no StudyDate: the study is dated by its job.
    raw = answer.json()["entry"][0]["resource"]
    assert raw["effectiveDateTime"] == _instant(job["created_at"])
    assert raw["issued"] == _instant(job["updated_at"])
    assert [n.name for n in device.deviceName] == ["bonemets", job["result"]["model"]["name"]]
    assert device.version[0].value == job["result"]["model"]["version"]


def test_a_study_without_lesions_has_no_observation_and_no_seg(
        client: TestClient, fake_model: BrightBoneModel, tmp_path: Path) -> None:
    fake_model.hu_threshold = 10**5
    job = client.post("/v1/studies?wait=60",
                      files=as_files(build_series(tmp_path / "s", size=64).paths)).json()
    bundle = Bundle.model_validate_json(client.get(f"/v1/studies/{job['id']}/fhir").content)
    [report] = by_type(bundle, "DiagnosticReport")
    assert report.conclusion == "No suspected bone metastasis."
    assert report.result is None and by_type(bundle, "Observation") == []
    assert client.get(f"/v1/studies/{job['id']}/seg.dcm").status_code == 404


def test_the_caller_s_references_travel_into_the_bundle(
        client: TestClient, tmp_path: Path) -> None:
    # No callback_url: the FHIR references alone, whatever the webhook allow-list says.
    given = {key: value for key, value in METADATA.items() if key != "callback_url"}
    files = with_metadata(as_files(build_series(tmp_path / "s", size=64).paths), given)
    job = client.post("/v1/studies?wait=60", files=files).json()
    bundle = Bundle.model_validate_json(client.get(f"/v1/studies/{job['id']}/fhir").content)
    [report], [observation] = by_type(bundle, "DiagnosticReport"), by_type(bundle, "Observation")
    for resource in (report, observation):
        assert resource.subject.reference == METADATA["subject"]
        assert resource.encounter.reference == METADATA["encounter"]
        assert [ref.reference for ref in resource.basedOn] == [METADATA["service_request"]]
    assert report.identifier[1].value == METADATA["accession_number"]
    assert report.identifier[1].system == METADATA["accession_system"]
    assert report.identifier[1].type.coding[0].code == "ACSN"
    assert report.conclusion.startswith("1 suspected bone metastasis, ")


def test_a_final_report_when_the_setting_says_so(settings: Settings, tmp_path: Path) -> None:
    with serving(settings.model_copy(update={"fhir_report_status": "final"})) as client:
        job = submit(client, build_series(tmp_path / "s", size=64))
        bundle = Bundle.model_validate_json(client.get(f"/v1/studies/{job['id']}/fhir").content)
    assert [entry.resource.status for entry in bundle.entry[:2]] == ["final", "final"]


def test_an_unknown_or_unfinished_study_is_a_problem(
        client: TestClient, fake_model: BrightBoneModel, tmp_path: Path) -> None:
    unknown = client.get("/v1/studies/0123456789abcdef0123456789abcdef/fhir")
    assert unknown.status_code == 404
    assert unknown.json()["type"] == "urn:bonemets:problem:job-not-found"
    fake_model.delay_s = 1.0
    running = client.post("/v1/studies",
                          files=as_files(build_series(tmp_path / "s", size=64).paths)).json()
    answer = client.get(f"/v1/studies/{running['id']}/fhir")
    fake_model.delay_s = 0.0
    assert answer.status_code == 409
    assert answer.json()["type"] == "urn:bonemets:problem:job-not-finished"
    assert "FHIR comes with the result" in answer.json()["detail"]


def _fhir_settings(tmp_path: Path, server: FhirServer, token: bool = True) -> Settings:
    path = tmp_path / "destinations.toml"
    path.write_text(f'[[destination]]\nname = "ehr"\nkind = "fhir"\nurl = "{server.url}"\n'
                    + ('token_env = "EHR_TOKEN"\n' if token else "") + "timeout_s = 5\n")
    return Settings(data_dir=tmp_path / "data", decode_workers=1, batch_size=2,
                    delivery_backoff_s=0.2, delivery_backoff_max_s=0.5, destinations=path)


def test_the_transaction_reaches_a_fhir_server_that_answers_503_first(
        tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("EHR_TOKEN", "t0ken")
    with FhirServer() as server:
        server.statuses = [503]
        with serving(_fhir_settings(tmp_path, server)) as client:
            job = submit(client, build_series(tmp_path / "s", size=64))
            delivered = wait_delivery(client, job["id"], "delivered")
            served = Bundle.model_validate_json(client.get(f"/v1/studies/{job['id']}/fhir")
                                                .content)
    assert delivered["destination"] == "ehr" and delivered["objects"] == ["fhir"]
    assert delivered["attempts"] == 2 and delivered["detail"] is None
    assert server.refused == [] and len(server.headers) == 2
    assert server.headers[-1]["Authorization"] == "Bearer t0ken"
    assert server.headers[-1]["Content-Type"] == FHIR_JSON
    [sent] = server.received
    assert [e.request.method for e in sent.entry] == ["POST"] * 3
    # The same resources as the route serves, as a transaction.
    assert [e.resource.model_dump() for e in sent.entry] == [
        e.resource.model_dump() for e in served.entry]


def test_a_fhir_server_that_refuses_the_bundle_fails_the_delivery_at_once(
        tmp_path: Path) -> None:
    with FhirServer() as server:
        server.statuses = [422]
        with serving(_fhir_settings(tmp_path, server, token=False)) as client:
            job = submit(client, build_series(tmp_path / "s", size=64))
            failed = wait_delivery(client, job["id"], "failed")
            assert client.get(f"/v1/studies/{job['id']}").json()["state"] == "succeeded"
    assert failed["attempts"] == 1
    assert "HTTP 422" in failed["detail"] and "refused as sent" in failed["detail"]
    assert server.received == []
