"""The reporting floor (BONEMETS_REPORTING_FLOOR_MM) against the real app, fake model."""

from __future__ import annotations

import io
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import ValidationError

from api.config import DEFAULT_FLOOR_MM, Settings
from api.http.app import create_app
from export.phantoms.ct_dicom import PixelFormat, SeriesIdentity, ct_series, ct_slice, write_series
from tests.api.conftest import as_files
from tests.api.contract import CheckedClient
from tests.api.fakes import BrightBoneModel

SPECK = (100, 100)  # where the specks are: 2 x 3 px on slice 2, 2 x 2 px on slice 5


def _specks(size: int) -> np.ndarray:
    specks = np.zeros((6, size, size), dtype=bool)
    specks[2, SPECK[0]:SPECK[0] + 2, SPECK[1]:SPECK[1] + 3] = True
    specks[5, SPECK[0]:SPECK[0] + 2, SPECK[1]:SPECK[1] + 2] = True
    return specks


def _series(folder: Path, size: int = 512) -> tuple[list[Path], np.ndarray]:
    """Six slices of 0.8 mm pixels: a lesion on slices 1-4 whose end slices are 2 x 2 px
    and whose middle is 10 x 12 px, across the batch boundaries of batch_size=2; specks."""
    volume = np.full((6, size, size), 40, dtype=np.int16)
    volume[1, 204:206, 204:206] = 1500
    volume[2:4, 200:210, 200:212] = 1500
    volume[4, 204:206, 204:206] = 1500
    volume[_specks(size)] = 1500
    series = ct_series(SeriesIdentity.random("TEST^FLOOR", "FLOOR-1"), rows=size, columns=size,
                       pixel_spacing=[0.8, 0.8], slice_thickness=2.5)
    paths = write_series(folder, ((f"s{k}.dcm", ct_slice(
        series, PixelFormat().stored(volume[k]), position=[-200.0, -200.0, 2.5 * k],
        instance_number=k + 1)) for k in range(6)))
    return paths, volume >= 1400


def _run(tmp_path: Path, size: int = 512,
         **floor: float) -> tuple[dict, np.ndarray, list[np.ndarray]]:
    settings = Settings(data_dir=tmp_path / "data", decode_workers=1, batch_size=2,
                        inflight_batches=2, **floor)
    paths, lesion = _series(tmp_path / "series", size)
    app = create_app(settings, model_factory=lambda _: BrightBoneModel())
    with CheckedClient(app, raise_server_exceptions=False) as client:
        job = client.post("/v1/studies?wait=60", files=as_files(paths)).json()
        assert job["state"] == "succeeded", job
        masks = [_png(client, entry["mask_url"]) > 0 for entry in job["result"]["slices"]]
        overlay = _png(client, job["result"]["slices"][2]["overlay_url"])
        seg = client.get(f"/v1/studies/{job['id']}/seg.dcm")
        assert seg.status_code == 200, seg.text
        segments = hd.seg.segread(io.BytesIO(seg.content)).number_of_segments
        assert segments == len(job["result"]["lesions"])
    return job["result"], lesion, [masks[i] for i in range(6)] + [overlay]


def _png(client: TestClient, url: str) -> np.ndarray:
    response = client.get(url)
    assert response.status_code == 200
    return np.asarray(Image.open(io.BytesIO(response.content)))


def test_the_floor_hides_specks_and_keeps_a_lesion_with_its_small_end_slices(
    tmp_path: Path,
) -> None:
    result, truth, pictures = _run(tmp_path)
    masks, overlay = pictures[:6], pictures[6]
    assert result["reporting_floor_mm"] == DEFAULT_FLOOR_MM
    assert result["lesions_below_floor"] == 2
    (lesion,) = result["lesions"]
    assert lesion["id"] == 1 and lesion["slice_range"] == [1, 4]
    assert [b["slice"] for b in lesion["boxes"]] == [1, 2, 3, 4]
    assert [len(s["boxes"]) for s in result["slices"]] == [0, 1, 1, 1, 1, 0]
    assert result["slices"][1]["boxes"][0]["pixels"] == 4  # the 2 x 2 end slice stays
    specks = _specks(512)
    for index, mask in enumerate(masks):
        assert np.array_equal(mask, truth[index] & ~specks[index]), index
    red = (overlay[..., 0] == 255) & (overlay[..., 1] == 0)
    assert red[199:211, 199:213].any()
    assert not red[SPECK[0] - 1:SPECK[0] + 3, SPECK[1] - 1:SPECK[1] + 4].any()


def test_a_floor_of_zero_reports_every_finding(tmp_path: Path) -> None:
    result, truth, pictures = _run(tmp_path, reporting_floor_mm=0.0)
    assert result["reporting_floor_mm"] == 0.0 and result["lesions_below_floor"] == 0
    assert [lesion["slice_range"] for lesion in result["lesions"]] == [[1, 4], [2, 2], [5, 5]]
    assert [len(s["boxes"]) for s in result["slices"]] == [0, 1, 2, 1, 1, 1]
    for index, mask in enumerate(pictures[:6]):
        assert np.array_equal(mask, truth[index]), index


def test_specks_leave_the_masks_of_slices_resized_for_the_model(tmp_path: Path) -> None:
    """256 x 256 slices are doubled for the model: a hidden speck's pixels are erased on the
    stored grid through the same mapping as the mask."""
    result, truth, pictures = _run(tmp_path, size=256)
    assert result["lesions_below_floor"] == 2
    assert [lesion["slice_range"] for lesion in result["lesions"]] == [[1, 4]]
    assert not pictures[5].any()
    near_speck = (slice(SPECK[0] - 2, SPECK[0] + 4), slice(SPECK[1] - 2, SPECK[1] + 5))
    assert not pictures[2][near_speck].any()
    assert pictures[2].sum() > 0.5 * truth[2].sum()  # the lesion stays
    assert pictures[1][200:210, 200:210].any() and pictures[4][200:210, 200:210].any()


@pytest.mark.parametrize("value", ["-1", "51", "five"])
def test_a_bad_floor_stops_the_settings_with_its_name(value: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BONEMETS_REPORTING_FLOOR_MM", value)
    with pytest.raises(ValidationError, match="reporting_floor_mm"):
        Settings()


def test_the_floor_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BONEMETS_REPORTING_FLOOR_MM", "7.5")
    assert Settings().reporting_floor_mm == 7.5
