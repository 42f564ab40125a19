"""STOW-RS: a study sent as multipart/related DICOM instances, answered in DICOM JSON."""

from __future__ import annotations

import uuid
from pathlib import Path

import pydicom
from fastapi.testclient import TestClient

from api.dimse.instances import CANNOT_UNDERSTAND, PROCESSING_FAILURE, SOP_CLASS_NOT_SUPPORTED
from tests.api.conftest import BuiltSeries, as_files, build_series, wait_finished

STOW = "/v1/dicomweb/studies"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def related(parts: list[bytes], boundary: str = "") -> tuple[bytes, dict[str, str]]:
    """A STOW-RS body, one application/dicom part per item, and its Content-Type header."""
    boundary = boundary or uuid.uuid4().hex
    body = b"".join(
        b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + part
        + b"\r\n" for part in parts
    ) + b"--" + boundary.encode() + b"--\r\n"
    header = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return body, {"Content-Type": header}


def post_instances(client: TestClient, parts: list[bytes]) -> tuple[int, dict, object]:
    body, headers = related(parts)
    response = client.post(STOW, content=body, headers=headers)
    return response.status_code, response.json(), response


def sop_uids(sequence: dict) -> list[tuple[str, str]]:
    return [(item["00081150"].get("Value", [""])[0], item["00081155"].get("Value", [""])[0])
            for item in sequence["Value"]]


def as_mr(path: Path, folder: Path) -> bytes:
    ds = pydicom.dcmread(path)
    ds.Modality = "MR"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    out = folder / "mr.dcm"
    ds.save_as(out)
    return out.read_bytes()


def test_a_study_sent_by_stow_is_stored_and_finds_what_an_upload_finds(
    client: TestClient, series: BuiltSeries
) -> None:
    status, body, response = post_instances(client, [p.read_bytes() for p in series.paths])
    assert status == 200
    expected = sorted((str(ds.SOPClassUID), str(ds.SOPInstanceUID))
                      for ds in map(pydicom.dcmread, series.paths))
    assert sorted(sop_uids(body["00081199"])) == expected
    assert "00081198" not in body
    location = response.headers["Location"]  # type: ignore[attr-defined]
    assert body["00081190"] == {"vr": "UR", "Value": [f"http://testserver{location}"]}
    stowed = wait_finished(client, location.rsplit("/", 1)[-1])
    uploaded = client.post("/v1/studies?wait=60", files=as_files(series.paths)).json()
    assert stowed["state"] == uploaded["state"] == "succeeded"
    assert stowed["result"]["lesions"] == uploaded["result"]["lesions"]
    assert len(stowed["result"]["lesions"]) == 1


def test_instances_that_cannot_be_read_fail_with_their_reason_and_the_rest_is_queued(
    client: TestClient, series: BuiltSeries, tmp_path: Path
) -> None:
    mr = as_mr(series.paths[0], tmp_path)
    parts = [p.read_bytes() for p in series.paths] + [b"%PDF-1.4 not dicom", mr]
    status, body, response = post_instances(client, parts)
    assert status == 202
    failed = body["00081198"]["Value"]
    assert [item["00081197"]["Value"][0] for item in failed] == [
        CANNOT_UNDERSTAND, SOP_CLASS_NOT_SUPPORTED]
    assert failed[0]["00081155"] == {"vr": "UI"}  # no UID could be read from it
    assert failed[1]["00081150"]["Value"] == [MR_IMAGE_STORAGE]
    assert len(body["00081199"]["Value"]) == len(series.paths)
    job = wait_finished(client, response.headers["Location"].rsplit("/", 1)[-1])
    assert job["state"] == "succeeded"


def test_a_body_without_any_usable_instance_is_a_conflict_and_queues_nothing(
    client: TestClient, series: BuiltSeries, tmp_path: Path
) -> None:
    status, body, response = post_instances(client, [b"not dicom", as_mr(series.paths[0],
                                                                           tmp_path)])
    assert status == 409
    assert "Location" not in response.headers  # type: ignore[attr-defined]
    assert [item["00081197"]["Value"][0] for item in body["00081198"]["Value"]] == [
        CANNOT_UNDERSTAND, SOP_CLASS_NOT_SUPPORTED]
    assert response.headers["Warning"].startswith('299 bonemets "')  # type: ignore[attr-defined]
    assert client.get("/v1/studies").json()["items"] == []


def test_a_body_cut_short_is_refused_with_a_problem(client: TestClient,
                                                    series: BuiltSeries) -> None:
    body, headers = related([p.read_bytes() for p in series.paths])
    response = client.post(STOW, content=body[: len(body) // 2], headers=headers)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert "cut short" in response.json()["detail"]
    assert client.get("/v1/studies").json()["items"] == []


def test_a_form_upload_sent_to_stow_is_refused(client: TestClient, series: BuiltSeries) -> None:
    response = client.post(STOW, files=as_files(series.paths))
    assert response.status_code == 400
    assert "multipart/related" in response.json()["detail"]


def test_stow_needs_credentials(client: TestClient, series: BuiltSeries) -> None:
    body, headers = related([series.paths[0].read_bytes()])
    with client.sending(None):  # type: ignore[attr-defined]
        response = client.post(STOW, content=body, headers=headers)
    assert response.status_code == 401
    assert client.get("/v1/studies").json()["items"] == []


def test_instances_of_a_series_not_chosen_fail_as_not_processed(
    client: TestClient, series: BuiltSeries, tmp_path: Path
) -> None:
    other = build_series(tmp_path / "other", slices=3, seed=1, lesion_slices=(1, 1))
    parts = [p.read_bytes() for p in [*series.paths, *other.paths]]
    status, body, _ = post_instances(client, parts)
    assert status == 202
    left_out = {str(pydicom.dcmread(p).SOPInstanceUID) for p in other.paths}
    failed = body["00081198"]["Value"]
    assert {item["00081155"]["Value"][0] for item in failed} == left_out
    assert {item["00081197"]["Value"][0] for item in failed} == {PROCESSING_FAILURE}


def test_a_body_of_metadata_and_bulk_data_is_not_accepted(client: TestClient,
                                                          series: BuiltSeries) -> None:
    body, headers = related([series.paths[0].read_bytes()])
    headers["Content-Type"] = headers["Content-Type"].replace(
        'type="application/dicom"', 'type="application/dicom+json"')
    response = client.post(STOW, content=body, headers=headers)
    assert response.status_code == 400
    assert 'type="application/dicom"' in response.json()["detail"]


def test_the_published_document_declares_dicom_json_answers(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"][STOW]["post"]
    for status in ("200", "202", "409"):
        assert list(operation["responses"][status]["content"]) == ["application/dicom+json"]


def test_stow_takes_a_priority_as_uploads_do(client: TestClient, series: BuiltSeries) -> None:
    parts = [path.read_bytes() for path in series.paths]
    body, headers = related(parts)
    stat = client.post(f"{STOW}?priority=stat", content=body, headers=headers)
    routine = client.post(STOW, content=body, headers=headers)
    refused = client.post(f"{STOW}?priority=now", content=body, headers=headers)
    assert (stat.status_code, routine.status_code, refused.status_code) == (200, 200, 422)
    priorities = [client.get(answer.headers["Location"]).json()["priority"]
                  for answer in (stat, routine)]
    assert priorities == ["stat", "routine"]
