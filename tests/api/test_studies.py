"""The studies API against the real app, with a fake model at the protocol seam."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pydicom
from fastapi.testclient import TestClient
from PIL import Image
from scipy import ndimage

from api.config import Settings
from api.dicom.geometry import resize_to_model
from api.http.app import create_app
from tests.api.conftest import BuiltSeries, as_files, as_zip, build_series, wait_finished
from tests.api.contract import CheckedClient
from tests.api.fakes import BrightBoneModel
from tests.api.stored import StorageUnderTest

PROBLEM = "application/problem+json"


def _png(client: TestClient, url: str) -> np.ndarray:
    response = client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)))


def test_upload_files_answers_202_and_the_result_matches_the_lesion(
    client: TestClient, series: BuiltSeries
) -> None:
    response = client.post("/v1/studies", files=as_files(series.paths))
    assert response.status_code == 202
    job_id = response.json()["id"]
    assert response.headers["location"] == f"/v1/studies/{job_id}"
    job = wait_finished(client, job_id)
    assert job["state"] == "succeeded", job
    assert job["progress"] == {"slices_done": 6, "slices_total": 6}
    result = job["result"]
    assert result["slice_count"] == 6
    z = [s["z_mm"] for s in result["slices"]]
    assert z == sorted(z) and z[0] == -50.0 and z[-1] == -37.5
    (lesion,) = result["lesions"]
    assert lesion["slice_range"] == [2, 3]
    assert lesion["bbox"] == {"row_min": 200, "col_min": 300, "row_max": 209, "col_max": 311,
                              "slice_min": 2, "slice_max": 3}
    # 10 x 12 pixels of 0.8 mm on 2 slices 2.5 mm apart.
    assert abs(lesion["volume_ml"] - 240 * 0.64 * 2.5 / 1000) < 1e-3
    assert abs(lesion["longest_axial_diameter_mm"] - 0.8 * np.hypot(9, 11)) < 1e-2
    assert lesion["probability_max"] == 1.0
    # Centre in patient mm: origin -200 + 0.8 * centre pixel; z midway between -45 and -42.5.
    assert np.allclose(lesion["centre_mm"], [-200 + 0.8 * 305.5, -200 + 0.8 * 204.5, -43.75])


def test_the_202_tells_the_slice_count_the_header_pass_found(
    client: TestClient, series: BuiltSeries
) -> None:
    response = client.post("/v1/studies", files=as_files(series.paths))
    assert response.status_code == 202
    assert response.json()["progress"] == {"slices_done": 0, "slices_total": 6}


def test_inference_wall_time_counts_overlapping_batches_once(tmp_path: Path,
                                                             series: BuiltSeries) -> None:
    settings = Settings(data_dir=tmp_path / "d", decode_workers=1, batch_size=1,
                        inflight_batches=3)
    app = create_app(settings, model_factory=lambda _: BrightBoneModel(delay_s=0.2))
    with CheckedClient(app) as client:
        job = client.post("/v1/studies?wait=60", files=as_files(series.paths)).json()
    timings = job["result"]["timings"]
    # Six batches of 0.2 s each at the model, up to three at once.
    assert timings["inference_s"] >= 6 * 0.2
    assert 0.4 <= timings["inference_wall_s"] < timings["inference_s"]
    assert timings["inference_wall_s"] <= timings["total_s"]


def test_masks_and_boxes_agree_with_the_components(client: TestClient, series: BuiltSeries) -> None:
    job = client.post("/v1/studies?wait=60", files=as_files(series.paths)).json()
    assert job["state"] == "succeeded"
    for entry in job["result"]["slices"]:
        mask = _png(client, entry["mask_url"]) > 0
        assert mask.shape == (entry["rows"], entry["columns"])
        assert np.array_equal(mask, series.lesion[entry["index"]])
        labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
        assert len(entry["boxes"]) == n
        for box, found in zip(entry["boxes"], ndimage.find_objects(labels), strict=True):
            assert (box["row_min"], box["row_max"] + 1) == (found[0].start, found[0].stop)
            assert (box["col_min"], box["col_max"] + 1) == (found[1].start, found[1].stop)
            assert box["lesion_id"] == 1
    overlay = _png(client, job["result"]["slices"][2]["overlay_url"])
    assert overlay.shape == (512, 512, 3)
    # Lesion outline drawn in colour; the body interior stays grey.
    assert (overlay[..., 0] > overlay[..., 1] + 100).any()
    assert overlay[256, 100, 0] == overlay[256, 100, 1] == overlay[256, 100, 2]


def test_zip_upload_gives_the_same_result_as_files(client: TestClient, series: BuiltSeries) -> None:
    as_parts = client.post("/v1/studies?wait=60", files=as_files(series.paths)).json()
    zipped = client.post("/v1/studies?wait=60", files=as_zip(series.paths)).json()
    assert zipped["state"] == "succeeded"
    assert zipped["result"]["lesions"] == as_parts["result"]["lesions"]
    assert [s["sop_instance_uid"] for s in zipped["result"]["slices"]] == [
        s["sop_instance_uid"] for s in as_parts["result"]["slices"]
    ]


def test_wait_answers_200_with_the_result(client: TestClient, series: BuiltSeries) -> None:
    response = client.post("/v1/studies?wait=60", files=as_files(series.paths))
    assert response.status_code == 200
    assert response.json()["result"]["series_instance_uid"]


def test_non_square_slices_come_back_at_their_own_size(settings: Settings, tmp_path: Path) -> None:
    small = build_series(tmp_path / "small", size=256, slices=3, lesion_slices=(1, 1))
    # Its lesion measures 4.6 mm: under the default reporting floor, which is not tested here.
    app = create_app(settings.model_copy(update={"reporting_floor_mm": 0.0}),
                     model_factory=lambda _: BrightBoneModel())
    with CheckedClient(app) as client:
        job = client.post("/v1/studies?wait=60", files=as_files(small.paths)).json()
        _check_at_own_size(client, job, small)


def _check_at_own_size(client: TestClient, job: dict, small: BuiltSeries) -> None:
    assert job["state"] == "succeeded", job
    entry = job["result"]["slices"][1]
    mask = _png(client, entry["mask_url"]) > 0
    assert mask.shape == (256, 256)
    # What the model saw: the slice fitted to 512 (linear), thresholded, mapped back.
    fitted, mapping = resize_to_model(small.hounsfield[1], 512)
    assert np.array_equal(mask, mapping.mask_to_original(fitted >= 1400))
    truth = small.lesion[1]
    assert (mask & truth).sum() / (mask | truth).sum() > 0.5
    (box,) = entry["boxes"]
    rows, cols = np.nonzero(mask)
    assert (box["row_min"], box["row_max"], box["col_min"], box["col_max"]) == (
        rows.min(), rows.max(), cols.min(), cols.max())


def test_not_dicom_is_415_and_nothing_is_kept(client: TestClient, settings: Settings,
                                              storage: StorageUnderTest) -> None:
    response = client.post("/v1/studies", files=[("files", ("report.pdf", b"%PDF-1.4 x", "a/b"))])
    assert response.status_code == 415
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["type"] == "urn:bonemets:problem:not-dicom"
    assert body["status"] == 415 and body["detail"]
    assert storage.leftovers(settings) == []


def test_an_upload_without_files_parts_is_a_400_problem(
    client: TestClient, settings: Settings, storage: StorageUnderTest
) -> None:
    form = client.post("/v1/studies", data={"x": "y"})
    assert form.status_code == 400
    assert form.headers["content-type"] == PROBLEM
    assert form.json()["type"] == "urn:bonemets:problem:invalid-upload"
    other_field = client.post("/v1/studies", files=[("file", ("a.dcm", b"x", "a/b"))])
    assert other_field.status_code == 400
    assert "'files'" in other_field.json()["detail"]
    broken = client.post("/v1/studies", content=b"--xyz\r\nnot a part",
                         headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert broken.status_code == 400
    assert storage.leftovers(settings) == []


def test_upload_over_the_limit_is_413(tmp_path: Path, series: BuiltSeries) -> None:
    settings = Settings(data_dir=tmp_path / "d", max_upload_mb=1, decode_workers=1)
    app = create_app(settings, model_factory=lambda _: BrightBoneModel())
    with CheckedClient(app, raise_server_exceptions=False) as client:
        response = client.post("/v1/studies", files=as_files(series.paths))
        assert response.status_code == 413
        assert response.json()["type"] == "urn:bonemets:problem:upload-too-large"
        assert client.get("/healthz").status_code == 200


def test_too_many_slices_is_413(tmp_path: Path, series: BuiltSeries,
                                storage: StorageUnderTest) -> None:
    settings = Settings(data_dir=tmp_path / "d", max_slices=4, decode_workers=1)
    app = create_app(settings, model_factory=lambda _: BrightBoneModel())
    with CheckedClient(app, raise_server_exceptions=False) as client:
        response = client.post("/v1/studies", files=as_files(series.paths))
        assert response.status_code == 413
        assert response.json()["type"] == "urn:bonemets:problem:too-many-slices"
        assert storage.leftovers(settings) == []  # refused after the parts were kept


def test_unknown_job_is_404_problem(client: TestClient) -> None:
    response = client.get("/v1/studies/0123456789abcdef0123456789abcdef")
    assert response.status_code == 404
    assert response.json()["type"] == "urn:bonemets:problem:job-not-found"
    assert client.get("/v1/studies/..%2F..%2Fetc").status_code == 404


def test_slice_out_of_range_is_404(client: TestClient, series: BuiltSeries) -> None:
    job = client.post("/v1/studies?wait=60", files=as_files(series.paths)).json()
    response = client.get(f"/v1/studies/{job['id']}/slices/6/mask.png")
    assert response.status_code == 404
    assert response.json()["type"] == "urn:bonemets:problem:slice-not-found"


def test_delete_removes_everything(client: TestClient, series: BuiltSeries,
                                   settings: Settings, storage: StorageUnderTest) -> None:
    job = client.post("/v1/studies?wait=60", files=as_files(series.paths)).json()
    assert client.get(job["result"]["slices"][2]["mask_url"]).status_code == 200
    folder = f"studies/{job['id']}/"
    kept = storage.keys(settings, job["id"])
    assert {folder + name for name in ("result.json", "series.pickle", "masks/2.bits",
                                       "masks/3.bits")} <= set(kept)
    assert len([k for k in kept if k.startswith(f"{folder}upload/")]) == len(series.paths)
    assert client.delete(f"/v1/studies/{job['id']}").status_code == 204
    assert storage.leftovers(settings) == []
    assert client.get(f"/v1/studies/{job['id']}").status_code == 404
    assert client.delete(f"/v1/studies/{job['id']}").status_code == 404


def test_a_transient_model_failure_is_retried(client: TestClient, fake_model: BrightBoneModel,
                                              series: BuiltSeries) -> None:
    fake_model.fail_next = 1
    job = client.post("/v1/studies?wait=60", files=as_files(series.paths)).json()
    assert job["state"] == "succeeded"
    assert fake_model.slices_seen == 6


def test_a_model_that_stays_down_fails_the_job_with_503(tmp_path: Path,
                                                        series: BuiltSeries) -> None:
    model = BrightBoneModel()
    model.fail_next = 10**6
    settings = Settings(data_dir=tmp_path / "d", decode_workers=1, inference_retries=1)
    app = create_app(settings, model_factory=lambda _: model)
    with CheckedClient(app, raise_server_exceptions=False) as client:
        response = client.post("/v1/studies?wait=60", files=as_files(series.paths))
        assert response.status_code == 503
        assert response.json()["type"] == "urn:bonemets:problem:inference-unavailable"
        job = client.get(response.headers["location"]).json()
        assert job["state"] == "failed"
        assert "unavailable" in job["error"]["detail"]


def test_an_interrupted_job_is_resumed_after_a_restart(tmp_path: Path,
                                                      series: BuiltSeries) -> None:
    settings = Settings(data_dir=tmp_path / "d", decode_workers=1, batch_size=1,
                        inflight_batches=1)
    slow = BrightBoneModel(delay_s=5.0)
    with CheckedClient(create_app(settings, model_factory=lambda _: slow)) as client:
        job_id = client.post("/v1/studies", files=as_files(series.paths)).json()["id"]
    # The app stopped mid-job; a new one picks the job up from SQLite and the disk.
    with CheckedClient(create_app(settings, model_factory=lambda _: BrightBoneModel())) as client:
        job = wait_finished(client, job_id)
        assert job["state"] == "succeeded"
        assert job["result"]["lesions"][0]["slice_range"] == [2, 3]


def test_masks_of_an_unfinished_job_are_409(tmp_path: Path, series: BuiltSeries) -> None:
    settings = Settings(data_dir=tmp_path / "d", decode_workers=1)
    app = create_app(settings, model_factory=lambda _: BrightBoneModel(delay_s=3))
    with CheckedClient(app) as c:
        job_id = c.post("/v1/studies", files=as_files(series.paths)).json()["id"]
        response = c.get(f"/v1/studies/{job_id}/slices/0/mask.png")
        assert response.status_code == 409
        assert response.json()["type"] == "urn:bonemets:problem:job-not-finished"


def _multipart(paths: list[Path], boundary: str, *, closed: bool) -> bytes:
    body = b""
    for path in paths:
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
                 f"filename=\"{path.name}\"\r\nContent-Type: application/dicom\r\n\r\n").encode()
        body += path.read_bytes() + b"\r\n"
    return body + (f"--{boundary}--\r\n".encode() if closed else b"")


def test_a_body_cut_short_is_a_400_not_a_smaller_study(
    client: TestClient, settings: Settings, series: BuiltSeries, storage: StorageUnderTest
) -> None:
    headers = {"content-type": "multipart/form-data; boundary=cut"}
    whole = _multipart(series.paths, "cut", closed=True)
    # Cut inside the last part, and cut right after a whole part: neither is the study sent.
    for body in (whole[: len(whole) - 300], _multipart(series.paths, "cut", closed=False)):
        response = client.post("/v1/studies", content=body, headers=headers)
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == PROBLEM
        assert "cut short" in response.json()["detail"]
    assert storage.leftovers(settings) == []
    accepted = client.post("/v1/studies", content=whole, headers=headers)
    assert accepted.status_code == 202, accepted.text


def test_a_small_zip_cannot_inflate_past_the_upload_limit(tmp_path: Path,
                                                          storage: StorageUnderTest) -> None:
    """A 1 MB server takes at most 8 MiB out of a zip, not the default 4 GiB."""
    settings = Settings(data_dir=tmp_path / "d", max_upload_mb=1, decode_workers=1)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for index in range(12):  # 12 MiB of zeros: about 12 KB compressed, 1 MiB per member
            zf.writestr(f"slice{index:02d}.dcm", bytes(1 << 20))
    app = create_app(settings, model_factory=lambda _: BrightBoneModel())
    with CheckedClient(app, raise_server_exceptions=False) as client:
        files = [("files", ("study.zip", buffer.getvalue(), "application/zip"))]
        response = client.post("/v1/studies", files=files)
        assert response.status_code == 413, response.text
        assert response.json()["type"] == "urn:bonemets:problem:upload-too-large"
        assert storage.leftovers(settings) == []


def _label_body_part(paths: list[Path], body_part: str) -> None:
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.BodyPartExamined = body_part
        ds.save_as(path)


def test_a_series_record_lost_after_intake_is_chosen_again_by_the_same_rule(
    tmp_path: Path, storage: StorageUnderTest
) -> None:
    """A head series with more slices beside a trunk one: the trunk, at intake and after."""
    head = build_series(tmp_path / "head", slices=8, seed=1)
    _label_body_part(head.paths, "HEAD")
    trunk = build_series(tmp_path / "trunk", slices=6, seed=2)
    trunk_uid = pydicom.dcmread(trunk.paths[0]).SeriesInstanceUID
    settings = Settings(data_dir=tmp_path / "d", decode_workers=1, batch_size=1,
                        inflight_batches=1)
    slow = BrightBoneModel(delay_s=5.0)
    with CheckedClient(create_app(settings, model_factory=lambda _: slow)) as client:
        job_id = client.post("/v1/studies", files=as_files(head.paths + trunk.paths)).json()["id"]
    record = f"studies/{job_id}/series.pickle"
    assert record in storage.keys(settings, job_id)
    storage.remove(settings, record)
    with CheckedClient(create_app(settings, model_factory=lambda _: BrightBoneModel())) as client:
        job = wait_finished(client, job_id)
    assert job["state"] == "succeeded", job
    result = job["result"]
    assert (result["series_instance_uid"], result["slice_count"]) == (trunk_uid, 6)
    assert any("left out: BodyPartExamined is HEAD" in w for w in result["warnings"])
    assert record in storage.keys(settings, job_id)
