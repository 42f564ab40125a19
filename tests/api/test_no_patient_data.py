"""No patient data in any log: every route driven with identified studies, every line grepped.

A phantom study carrying a name, an id, a birth date and an accession number, the corpus'
real series, singles, edge cases and malformed files (their identifying values read from the
files here) go through every route, failures included; then every record of every logger
(root at DEBUG), every line the JSON log format writes of them, and every line of the audit
trail is searched for each value.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydicom import dcmread

from api.config import Settings
from api.http.audit import audit_path
from export.phantoms.ct_dicom import PixelFormat, SeriesIdentity, ct_series, ct_slice, save
from tests.api.conftest import as_files, as_zip, wait_finished
from tests.api.json_log import json_log
from tests.api.test_audit import audited_app

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "ct-corpus"
IDENTIFYING = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber",
               "OtherPatientIDs")
# Words anonymisers write instead of a name: finding them says nothing about a patient.
GENERIC = {"ANONYMOUS", "ANONYMIZED", "ANONIMO", "REMOVED", "UNKNOWN", "PATIENT"}
MIN_LENGTH = 5  # "001", "HEAD", "72": too short to mean anything in a log line
MIN_DIGITS = 8  # a number shorter than a date could be a byte count or a slice count
PHANTOM = {"PatientName": "Quixote^Dulcinea^Maria", "PatientID": "MRN-7731-QX",
           "PatientBirthDate": "19470311", "AccessionNumber": "ACC99X1234"}


def searchable(value: str) -> set[str]:
    """The strings of one attribute value worth searching for (a name's parts too)."""
    whole = value.strip()
    found = {whole} | {part.strip() for part in re.split(r"[\^=\\]", whole)}
    return {v for v in found if meaningful(v)}


def meaningful(value: str) -> bool:
    if len(value) < MIN_LENGTH or value.upper() in GENERIC or len(set(value)) == 1:
        return False
    if value.isdigit() and len(value) < MIN_DIGITS:
        return False
    return not (value.isdigit() and len(set(value)) <= 2)  # 0000000001 and the like


def identifying_values(paths: Iterable[Path]) -> set[str]:
    values: set[str] = set()
    for path in paths:
        try:
            ds = dcmread(path, stop_before_pixels=True, force=True)
        except Exception:  # noqa: BLE001 - files pydicom cannot read carry nothing it can find
            continue
        for keyword in IDENTIFYING:
            value = ds.get(keyword)
            items = value if isinstance(value, list | tuple) else [value]
            for item in items:
                if item not in (None, ""):
                    values |= searchable(str(item))
    return values


def leaks(lines: Iterable[str], values: Iterable[str]) -> list[tuple[str, str]]:
    """(value, line) for each identifying value found in a line, case-insensitively."""
    lowered = [(line, line.lower()) for line in lines]
    return [(v, line) for v in values for line, low in lowered if v.lower() in low]


def phantom_study(folder: Path, slices: int = 4) -> list[Path]:
    """A small phantom series with a bright block, identified like a real patient's."""
    identity = SeriesIdentity.random(PHANTOM["PatientName"], PHANTOM["PatientID"])
    series = ct_series(identity, rows=128, columns=128, pixel_spacing=[2.0, 2.0],
                       slice_thickness=2.5)
    series.PatientBirthDate = PHANTOM["PatientBirthDate"]
    series.AccessionNumber = PHANTOM["AccessionNumber"]
    volume = np.full((slices, 128, 128), 40, dtype=np.int16)
    volume[1:3, 50:60, 60:70] = 1500
    return [save(ct_slice(series, PixelFormat().stored(volume[k]),
                          position=[-128.0, -128.0, 2.5 * k], instance_number=k + 1),
                 # Named the way some PACS exports name files: a name leak shows here too.
                 folder / f"Quixote_Dulcinea_{k}.dcm") for k in range(slices)]


def drive_finished_job(client: TestClient, job_id: str, reports: bool = False) -> str:
    """Read, download and delete a job, then ask for it again (404s); its final state. With
    ``reports``, its SEG, SR, FHIR Bundle and viewer page too (made from the headers)."""
    job = wait_finished(client, job_id)
    assert client.get(f"/v1/studies/{job_id}").status_code == 200
    if job["state"] == "succeeded":
        for kind in ("mask", "overlay"):
            assert client.get(f"/v1/studies/{job_id}/slices/0/{kind}.png").status_code == 200
            assert client.get(f"/v1/studies/{job_id}/slices/9999/{kind}.png").status_code == 404
        for path in ("seg.dcm", "sr.dcm", "fhir", "viewer") if reports else ():
            assert client.get(f"/v1/studies/{job_id}/{path}").status_code == 200, path
    assert client.delete(f"/v1/studies/{job_id}").status_code == 204
    for path in ("", "/slices/0/mask.png", "/slices/0/overlay.png"):
        assert client.get(f"/v1/studies/{job_id}{path}").status_code == 404
    assert client.delete(f"/v1/studies/{job_id}").status_code == 404
    return str(job["state"])


def submit(client: TestClient, files: list, reports: bool = False) -> str:
    """Send ``files``, follow the job through every route; its state, or "refused"."""
    response = client.post("/v1/studies", files=files)
    assert response.status_code < 500, response.text
    if response.status_code != 202:
        return "refused"
    return drive_finished_job(client, response.json()["id"], reports)


def corpus_files(folder: str) -> list[Path]:
    return files_under(CORPUS / folder)


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_the_search_finds_a_value_when_one_is_logged() -> None:
    values = searchable(PHANTOM["PatientName"]) | searchable(PHANTOM["PatientID"])
    assert {"Quixote^Dulcinea^Maria", "Quixote", "Dulcinea", "MRN-7731-QX"} <= values
    assert "Maria" in values and "001" not in searchable("001")
    found = leaks(["job 1 queued", "reading DULCINEA's file"], values)
    assert [value for value, _ in found] == ["Dulcinea"]
    assert not meaningful("ANONYMOUS") and not meaningful("00000000")
    assert meaningful("19470311") and not meaningful("12345")


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the CT corpus is not here")
def test_no_identifying_value_reaches_any_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = Settings(data_dir=tmp_path / "data", decode_workers=1, batch_size=4,
                        client_uploads_per_minute=10_000, client_max_inflight=10_000,
                        refused_body_parts="",  # the head series go all the way through
                        log_format="json")  # the request lines too
    phantom = phantom_study(tmp_path / "phantom")
    series = sorted(p for p in (CORPUS / "series").iterdir() if p.is_dir())
    singles = [*corpus_files("singles"), *corpus_files("edgecases"),
               *corpus_files("enhanced_multiframe")]
    malformed = corpus_files("malformed")
    values = identifying_values([*phantom, *singles, *malformed,
                                 *(p for s in series for p in files_under(s))])
    assert searchable(PHANTOM["PatientName"]) <= values
    assert len(values) > 20, values  # the corpus' own names and ids were read
    with (json_log(logging.DEBUG) as json_lines,
          TestClient(audited_app(settings), raise_server_exceptions=False) as client):
        assert submit(client, as_files(phantom), reports=True) == "succeeded"
        assert submit(client, as_zip(phantom)) == "succeeded"
        for folder in series:
            assert submit(client, as_zip(files_under(folder))) == "succeeded", folder.name
        for path in singles:
            submit(client, as_files([path]))
        for path in malformed:
            assert submit(client, as_files([path])) in ("refused", "failed"), path.name
        assert client.post("/v1/studies", content=b"x",
                           headers={"content-type": "text/plain"}).status_code < 500
        assert client.get("/v1/studies?state=queued").status_code < 500
        assert client.get("/v1/models").status_code == 200
    lines = [*caplog.text.splitlines(), *(r.getMessage() for r in caplog.records)]
    audit_lines = audit_path(settings).read_text().splitlines()
    json_text = json_lines.text.splitlines()  # as written, each line one object
    assert len(audit_lines) > 100 and len(lines) > 20 and len(json_lines.lines()) > 100
    assert leaks([*lines, *audit_lines, *json_text], values) == []
