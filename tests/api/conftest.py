"""API-tier fixtures: the app with a fake model, and small CT series built here.

The job database is SQLite in each test's data folder, or, with
``BONEMETS_TEST_DATABASE=postgres``, a fresh database of a real PostgreSQL cluster
(tests/postgres.py) for each test: ``BONEMETS_DATABASE_URL`` is set for the test, so every
``Settings`` a test builds uses it. CI runs the tier both ways (.ci/run).

The app keeps its objects on disk, or with ``BONEMETS_TEST_STORAGE=s3`` in a real S3 server
(SeaweedFS, a fresh prefix per test): the autouse ``storage`` fixture sets
``BONEMETS_STORAGE_URL`` and the AWS variables, which every ``Settings()`` of the tier reads.

Every route but the open ones needs credentials: ``client`` (a :class:`CheckedClient`)
sends an API key it makes in the app's key store at start, for the client ``tests`` with
studies:write, studies:read and studies:delete; ``client.api_key`` is that key.
"""

from __future__ import annotations

import io
import os
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.dataset import Dataset

from api.config import Settings
from api.http.app import create_app
from export.phantoms.ct_dicom import PixelFormat, SeriesIdentity, ct_series, ct_slice, write_series
from tests.api.contract import CheckedClient
from tests.api.fakes import BrightBoneModel
from tests.api.stored import StorageUnderTest
from tests.conftest import storage_under_test


@dataclass
class BuiltSeries:
    paths: list[Path]
    hounsfield: np.ndarray  # (Z, rows, cols), ascending z
    lesion: np.ndarray  # bool, where HU >= 1400


def build_series(folder: Path, *, slices: int = 6, size: int = 512, seed: int = 0,
                 lesion_slices: tuple[int, int] = (2, 3)) -> BuiltSeries:
    """A small axial CT series with one bright (1500 HU) block on ``lesion_slices``.

    Files are written in shuffled order, with instance numbers that count down as z goes
    up, so that only ImagePositionPatient tells the order.
    """
    rng = np.random.default_rng(seed)
    volume = np.full((slices, size, size), -1000, dtype=np.int16)
    yy, xx = np.mgrid[:size, :size]
    body = ((yy - size / 2) / (0.4 * size)) ** 2 + ((xx - size / 2) / (0.45 * size)) ** 2 <= 1
    volume[:, body] = 40
    r0, c0 = size * 200 // 512, size * 300 // 512
    h, w = max(2, size * 10 // 512), max(2, size * 12 // 512)
    first, last = lesion_slices
    volume[first:last + 1, r0:r0 + h, c0:c0 + w] = 1500
    series = ct_series(SeriesIdentity.random("TEST^API", "API-0001"), rows=size, columns=size,
                       pixel_spacing=[0.8, 0.8], slice_thickness=2.5)
    order = rng.permutation(slices)
    paths = write_series(folder, ((f"img{int(k) * 7 % 13:03d}_{k}.dcm",
                                   _slice_dataset(series, volume[k], k)) for k in order))
    return BuiltSeries(paths, volume, volume >= 1400)


def _slice_dataset(series: Dataset, hu: np.ndarray, k: int) -> Dataset:
    """Slice ``k``, 2.5 mm above slice k - 1; instance numbers count down from 100."""
    return ct_slice(series, PixelFormat().stored(hu), position=[-200.0, -200.0, -50.0 + 2.5 * k],
                    instance_number=100 - k)


def as_files(paths: list[Path]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (p.name, p.read_bytes(), "application/dicom")) for p in paths]


def as_zip(paths: list[Path], name: str = "study.zip") -> list[tuple[str, tuple[str, bytes, str]]]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for p in paths:
            archive.write(p, f"study/series 1/{p.name}")
    return [("files", (name, buffer.getvalue(), "application/zip"))]


def wait_finished(client: TestClient, job_id: str, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/v1/studies/{job_id}").json()
        if job["state"] in ("succeeded", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s} s: {job}")


@pytest.fixture(autouse=True)
def job_database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """The PostgreSQL URL this test's app uses, under BONEMETS_TEST_DATABASE=postgres;
    None: SQLite in the data folder."""
    if os.environ.get("BONEMETS_TEST_DATABASE", "sqlite") != "postgres":
        monkeypatch.delenv("BONEMETS_DATABASE_URL", raising=False)
        return None
    url: str = request.getfixturevalue("postgres_url")
    monkeypatch.setenv("BONEMETS_DATABASE_URL", url)
    monkeypatch.setenv("BONEMETS_KEY_PEPPER", "7a" * 32)  # the API keys are there too
    return url


@pytest.fixture(autouse=True)
def storage(request: pytest.FixtureRequest,
            monkeypatch: pytest.MonkeyPatch) -> StorageUnderTest:
    """Where the test's app keeps its objects: the data directory, or a prefix of its own in
    the session's SeaweedFS when ``BONEMETS_TEST_STORAGE=s3``."""
    monkeypatch.delenv("BONEMETS_STORAGE_URL", raising=False)
    if storage_under_test() == "local":
        return StorageUnderTest()
    s3 = request.getfixturevalue("seaweedfs")
    prefix = s3.new_prefix()
    for name, value in s3.environment(prefix).items():
        monkeypatch.setenv(name, value)
    return StorageUnderTest(s3, prefix)


@pytest.fixture
def settings(tmp_path: Path, storage: StorageUnderTest) -> Settings:
    return Settings(data_dir=tmp_path / "data", decode_workers=1, batch_size=2,
                    inflight_batches=2)


@pytest.fixture
def fake_model() -> BrightBoneModel:
    return BrightBoneModel()


@pytest.fixture
def client(settings: Settings, fake_model: BrightBoneModel) -> Iterator[TestClient]:
    app = create_app(settings, model_factory=lambda _: fake_model)
    with CheckedClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def series(tmp_path: Path) -> BuiltSeries:
    return build_series(tmp_path / "series")


def read_dicom_hu(path: Path) -> np.ndarray:
    ds = pydicom.dcmread(path)
    return pydicom.pixels.apply_modality_lut(ds.pixel_array, ds)
