"""The reporting floor (BONEMETS_REPORTING_FLOOR_MM) against the real app, fake model."""

from __future__ import annotations

import io
from pathlib import Path

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

SPECK = (100, 100)  # a 2 x 1 px speck on slice 2 and a single pixel on slice 5


def _series(folder: Path) -> tuple[list[Path], np.ndarray]:
    """Six 512 x 512 slices (0.8 mm): a lesion on slices 1-4 whose end slices are 2 x 2 px
    and whose middle is 10 x 12 px, across the batch boundaries of batch_size=2; specks."""
    volume = np.full((6, 512, 512), 40, dtype=np.int16)
    volume[1, 204:206, 304:306] = 1500
    volume[2:4, 200:210, 300:312] = 1500
    volume[4, 204:206, 304:306] = 1500
    volume[2, SPECK[0], SPECK[1]:SPECK[1] + 2] = 1500
    volume[5, SPECK[0], SPECK[1]] = 1500
    series = ct_series(SeriesIdentity.random("TEST^FLOOR", "FLOOR-1"), rows=512, columns=512,
                       pixel_spacing=[0.8, 0.8], slice_thickness=2.5)
    paths = write_series(folder, ((f"s{k}.dcm", ct_slice(
        series, PixelFormat().stored(volume[k]), position=[-200.0, -200.0, 2.5 * k],
        instance_number=k + 1)) for k in range(6)))
    return paths, volume >= 1400


def _run(tmp_path: Path, **floor: float) -> tuple[dict, np.ndarray, list[np.ndarray]]:
    settings = Settings(data_dir=tmp_path / "data", decode_workers=1, batch_size=2,
                        inflight_batches=2, **floor)
    paths, lesion = _series(tmp_path / "series")
    app = create_app(settings, model_factory=lambda _: BrightBoneModel())
    with CheckedClient(app, raise_server_exceptions=False) as client:
        job = client.post("/v1/studies?wait=60", files=as_files(paths)).json()
        assert job["state"] == "succeeded", job
        masks = [_png(client, entry["mask_url"]) > 0 for entry in job["result"]["slices"]]
        overlay = _png(client, job["result"]["slices"][2]["overlay_url"])
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
    specks = np.zeros_like(truth)
    specks[2, SPECK[0], SPECK[1]:SPECK[1] + 2] = True
    specks[5, SPECK[0], SPECK[1]] = True
    for index, mask in enumerate(masks):
        assert np.array_equal(mask, truth[index] & ~specks[index]), index
    red = (overlay[..., 0] == 255) & (overlay[..., 1] == 0)
    assert red[200:210, 300:312].any()
    assert not red[SPECK[0] - 1:SPECK[0] + 2, SPECK[1] - 1:SPECK[1] + 3].any()


def test_a_floor_of_zero_reports_every_finding(tmp_path: Path) -> None:
    result, truth, pictures = _run(tmp_path, reporting_floor_mm=0.0)
    assert result["reporting_floor_mm"] == 0.0 and result["lesions_below_floor"] == 0
    assert [lesion["slice_range"] for lesion in result["lesions"]] == [[1, 4], [2, 2], [5, 5]]
    assert [len(s["boxes"]) for s in result["slices"]] == [0, 1, 2, 1, 1, 1]
    for index, mask in enumerate(pictures[:6]):
        assert np.array_equal(mask, truth[index]), index


@pytest.mark.parametrize("value", ["-1", "51", "five"])
def test_a_bad_floor_stops_the_settings_with_its_name(value: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BONEMETS_REPORTING_FLOOR_MM", value)
    with pytest.raises(ValidationError, match="reporting_floor_mm"):
        Settings()


def test_the_floor_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BONEMETS_REPORTING_FLOOR_MM", "7.5")
    assert Settings().reporting_floor_mm == 7.5
