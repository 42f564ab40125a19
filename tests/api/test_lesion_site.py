"""Each reported lesion says where it sits, read from its slice in the gateway: through the
app, on phantoms whose truth names the site, with a model that answers the truth masks."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from api.config import Settings
from api.dicom.geometry import AIR_HU
from api.http.app import create_app
from api.inference.protocol import Segmentation
from export.phantoms import make_phantom, sample_spec, write_study
from tests.api.conftest import as_files
from tests.api.contract import CheckedClient
from tests.api.fakes import BrightBoneModel


def _key(hounsfield: npt.NDArray[np.int16]) -> str:
    return hashlib.sha256(np.ascontiguousarray(hounsfield).tobytes()).hexdigest()


class TruthModel(BrightBoneModel):
    """Answers each slice it was given the truth of (by its HU), nothing elsewhere."""

    def __init__(self, truth: dict[str, npt.NDArray[np.bool_]]) -> None:
        super().__init__()
        self.truth = truth

    async def segment(self, hounsfield: npt.NDArray[np.int16]) -> Segmentation:
        answer = await super().segment(hounsfield)
        mask = np.stack([self.truth.get(_key(s), np.zeros(s.shape, bool)) for s in hounsfield])
        return Segmentation(mask, answer.probability)


@pytest.mark.parametrize(("seed", "site", "expected"), [(4, "vertebral_body", "vertebral_body"),
                                                        (3, "rib", "rib")])
def test_a_lesions_site_is_read_from_its_slice(tmp_path: Path, seed: int, site: str,
                                               expected: str) -> None:
    phantom = make_phantom(sample_spec(seed, slices=16, size=512, n_lesions=1,
                                       lesion_site=site, lesion_kind="blastic"))
    folder = write_study(phantom, tmp_path / "study")
    hounsfield = np.maximum(phantom.hounsfield, np.int16(AIR_HU))
    truth = {_key(s): lab > 0 for s, lab in zip(hounsfield, phantom.labels, strict=True)}
    assert any(mask.any() for mask in truth.values())
    settings = Settings(data_dir=tmp_path / "data", decode_workers=1, reporting_floor_mm=0)
    app = create_app(settings, model_factory=lambda _: TruthModel(truth))
    paths = sorted((folder / "dicom").glob("*.dcm"))
    with CheckedClient(app, raise_server_exceptions=False) as client:
        job = client.post("/v1/studies?wait=120", files=as_files(paths)).json()
    assert job["state"] == "succeeded", job
    sites = [lesion["site"] for lesion in job["result"]["lesions"]]
    assert sites and set(sites) == {expected}, sites
