"""GET /v1/studies/{id}/seg.dcm and sr.dcm: valid by dciodvfy, equal to the JSON result."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.dataset import Dataset
from pydicom.uid import UID, JPEG2000Lossless

from api.config import Settings
from api.http.app import create_app
from export.phantoms.ct_dicom import PixelFormat, SeriesIdentity, ct_series, ct_slice, write_series
from tests.api.conftest import as_files, build_series
from tests.api.contract import CheckedClient
from tests.api.dicom_checks import check_seg, check_sr, dciodvfy
from tests.api.fakes import BrightBoneModel
from tests.api.stored import StorageUnderTest
from tests.conftest import corpus_series_files


def two_lesions(folder: Path, transfer_syntax: UID | None = None) -> list[Path]:
    """Eight 96x96 slices; lesion 1 on slices 2-4 (an L with a diagonal arm), lesion 2 on 6."""
    volume = np.full((8, 96, 96), 40, dtype=np.int16)
    volume[2:5, 20:30, 50:56] = 1500
    volume[3, 30:36, 50:54] = 1500
    for step in range(4):
        volume[3, 36 + step, 54 + step] = 1500  # touches only at corners: 8-connected
    volume[6, 60:64, 10:13] = 1500
    series = ct_series(SeriesIdentity.random("TEST^SEG", "SEG-0001"), rows=96, columns=96,
                       pixel_spacing=[0.7, 0.7], slice_thickness=2.0)
    extra = {} if transfer_syntax is None else {"transfer_syntax": transfer_syntax}
    named = ((f"s{k}.dcm", ct_slice(series, PixelFormat().stored(volume[k]),
                                     position=[-30.0, -30.0, 2.0 * k], instance_number=k + 1,
                                     **extra))
             for k in (5, 1, 7, 0, 3, 2, 6, 4))
    return write_series(folder, named)


def _client(settings: Settings, hu_threshold: int,
            floor_mm: float | None = None) -> Iterator[TestClient]:
    model = BrightBoneModel(hu_threshold=hu_threshold)
    update: dict[str, object] = {"refused_body_parts": ""}
    if floor_mm is not None:
        update["reporting_floor_mm"] = floor_mm
    app = create_app(settings.model_copy(update=update), model_factory=lambda _: model)
    with CheckedClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def bone_client(settings: Settings) -> Iterator[TestClient]:
    """Marks real bone (>= 700 HU) in real CT as lesions."""
    yield from _client(settings, 700)


@pytest.fixture
def enhanced_client(settings: Settings) -> Iterator[TestClient]:
    """The corpus' enhanced CT peaks at 1196 stored: marks its brightest (>= 150 HU) parts,
    all under the default reporting floor, which these tests do not test: reports them all."""
    yield from _client(settings, 150, floor_mm=0.0)


@pytest.fixture
def unfloored_client(settings: Settings) -> Iterator[TestClient]:
    """The bright-bone fake reporting every finding: the two-lesion phantom's second lesion
    (4 x 3 px of 0.7 mm) is under the default reporting floor."""
    yield from _client(settings, 1400, floor_mm=0.0)


def _headers(paths: list[Path]) -> dict[str, Dataset]:
    found = {}
    for path in paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        found[str(ds.SOPInstanceUID)] = ds
    return found


def _places(job: dict, sources: dict[str, Dataset]) -> list[tuple[str, int]]:
    """Each slice's (source instance, 1-based frame): frames of a multi-frame source by z."""
    slices = job["result"]["slices"]
    (only,) = sources.values() if len(sources) == 1 else (None,)
    if only is None or int(only.get("NumberOfFrames", 1)) == 1:
        return [(s["sop_instance_uid"], 1) for s in slices]
    normal = np.cross(*np.asarray(only.SharedFunctionalGroupsSequence[0]
                                  .PlaneOrientationSequence[0].ImageOrientationPatient,
                                  dtype=float).reshape(2, 3))
    z = [float(np.dot(normal, np.asarray(f.PlanePositionSequence[0].ImagePositionPatient,
                                         dtype=float)))
         for f in only.PerFrameFunctionalGroupsSequence]
    order = sorted(range(len(z)), key=lambda k: z[k])
    return [(str(only.SOPInstanceUID), order[s["index"]] + 1) for s in slices]


def study_reports(client: TestClient, paths: list[Path], tmp_path: Path) -> dict:
    """Submit ``paths``, then check its SEG (when it has lesions) and SR; the job document."""
    response = client.post("/v1/studies?wait=120", files=as_files(paths))
    assert response.status_code == 200, response.text
    job = response.json()
    sources = _headers(paths)
    seg_uid = None
    places = _places(job, sources)
    if job["result"]["lesions"]:
        seg = client.get(f"/v1/studies/{job['id']}/seg.dcm")
        assert seg.status_code == 200 and seg.headers["content-type"] == "application/dicom"
        dciodvfy(seg.content, tmp_path, "seg.dcm")
        seg_uid = str(check_seg(client, job, sources, places, seg.content).SOPInstanceUID)
    sr = client.get(f"/v1/studies/{job['id']}/sr.dcm")
    assert sr.status_code == 200 and sr.headers["content-type"] == "application/dicom"
    dciodvfy(sr.content, tmp_path, "sr.dcm")
    check_sr(job, sources, places, sr.content, seg_uid)
    return job


def test_a_phantom_with_two_lesions(unfloored_client: TestClient, tmp_path: Path) -> None:
    job = study_reports(unfloored_client, two_lesions(tmp_path / "s"), tmp_path)
    assert len(job["result"]["lesions"]) >= 2


def test_a_compressed_phantom(unfloored_client: TestClient, tmp_path: Path) -> None:
    paths = two_lesions(tmp_path / "s", JPEG2000Lossless)
    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID == JPEG2000Lossless
    job = study_reports(unfloored_client, paths, tmp_path)
    assert len(job["result"]["lesions"]) >= 2


def test_the_api_phantom_at_full_size(client: TestClient, tmp_path: Path) -> None:
    job = study_reports(client, build_series(tmp_path / "s").paths, tmp_path)
    assert len(job["result"]["lesions"]) == 1


@pytest.mark.parametrize("prefix", ["S04_", "S01b_"])
def test_a_corpus_series(bone_client: TestClient, ct_corpus: Path, tmp_path: Path,
                         prefix: str) -> None:
    job = study_reports(bone_client, corpus_series_files(ct_corpus, prefix), tmp_path)
    assert job["result"]["lesions"]


@pytest.mark.parametrize("name", ["eCT_Supplemental_2frame_evrle.dcm",
                                  "CT0012.not_fragmented_bot_rle.dcm"])
def test_an_enhanced_multi_frame_input(enhanced_client: TestClient, ct_corpus: Path,
                                       tmp_path: Path, name: str) -> None:
    job = study_reports(enhanced_client, [ct_corpus / "enhanced_multiframe" / name], tmp_path)
    assert job["result"]["lesions"]


def test_a_study_without_lesions_has_an_sr_that_says_so_and_no_seg(
    client: TestClient, tmp_path: Path
) -> None:
    paths = build_series(tmp_path / "s", slices=3, size=64, lesion_slices=(9, 9)).paths
    job = study_reports(client, paths, tmp_path)
    assert job["result"]["lesions"] == []
    seg = client.get(f"/v1/studies/{job['id']}/seg.dcm")
    assert seg.status_code == 404
    assert seg.json()["type"] == "urn:bonemets:problem:no-segments"
    assert "sr.dcm" in seg.json()["detail"]


def test_the_objects_are_made_once_kept_with_the_job_and_deleted_with_it(
    client: TestClient, settings: Settings, tmp_path: Path, storage: StorageUnderTest
) -> None:
    job = client.post("/v1/studies?wait=60",
                      files=as_files(two_lesions(tmp_path / "s"))).json()
    outputs = f"studies/{job['id']}/outputs/"
    first = {name: client.get(f"/v1/studies/{job['id']}/{name}").content
             for name in ("seg.dcm", "sr.dcm")}
    kept = [key for key in storage.keys(settings, job["id"]) if key.startswith(outputs)]
    assert {key.removeprefix(outputs): storage.get(settings, key) for key in kept} == first
    storage.put(settings, outputs + "sr.dcm", first["seg.dcm"])  # served as kept, not remade
    assert client.get(f"/v1/studies/{job['id']}/sr.dcm").content == first["seg.dcm"]
    assert client.delete(f"/v1/studies/{job['id']}").status_code == 204
    assert storage.leftovers(settings) == []
    assert client.get(f"/v1/studies/{job['id']}/seg.dcm").status_code == 404


def test_the_dciodvfy_check_fails_on_a_broken_segmentation(
    client: TestClient, tmp_path: Path
) -> None:
    job = client.post("/v1/studies?wait=60",
                      files=as_files(two_lesions(tmp_path / "s"))).json()
    seg = pydicom.dcmread(io.BytesIO(client.get(f"/v1/studies/{job['id']}/seg.dcm").content))
    del seg.SegmentationType  # type 1 in the Segmentation Image module
    broken = io.BytesIO()
    seg.save_as(broken, enforce_file_format=True)
    with pytest.raises(AssertionError, match="Segmentation ?Type"):
        dciodvfy(broken.getvalue(), tmp_path, "broken.dcm")


def test_a_signed_link_opens_the_seg_and_sr_without_a_key(
    client: TestClient, tmp_path: Path
) -> None:
    job = client.post("/v1/studies?wait=60",
                      files=as_files(two_lesions(tmp_path / "s"))).json()
    links = client.app_state["services"].links
    with client.sending(None):
        for name in ("seg.dcm", "sr.dcm"):
            path = f"/v1/studies/{job['id']}/{name}"
            assert client.get(path).status_code == 401
            response = client.get(path, params=links.query(path, "tests"))
            assert response.status_code == 200
            assert response.content[128:132] == b"DICM"
            wrong = links.query(f"/v1/studies/{job['id']}/sr.dcm", "tests")
            if name == "seg.dcm":  # a link opens only its own path
                assert client.get(path, params=wrong).status_code == 403


def test_blank_source_uids_are_the_synthetic_ones_of_the_result(
    client: TestClient, tmp_path: Path
) -> None:
    paths = two_lesions(tmp_path / "s")
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = ds.SeriesInstanceUID = ""
        ds.save_as(path)
    job = client.post("/v1/studies?wait=60", files=as_files(paths)).json()
    result = job["result"]
    assert result["study_instance_uid"].startswith("2.25.")
    for name in ("seg.dcm", "sr.dcm"):
        response = client.get(f"/v1/studies/{job['id']}/{name}")
        assert response.status_code == 200
        dciodvfy(response.content, tmp_path, name)
        made = pydicom.dcmread(io.BytesIO(response.content))
        assert made.StudyInstanceUID == result["study_instance_uid"]
    (referenced,) = pydicom.dcmread(io.BytesIO(
        client.get(f"/v1/studies/{job['id']}/seg.dcm").content)).ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == result["series_instance_uid"]
