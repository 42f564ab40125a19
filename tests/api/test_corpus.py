"""Real DICOM from the shared corpus through the API: accepted, or refused with a 4xx."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import as_files
from tests.conftest import _corpus_dir

CORPUS = _corpus_dir()


def _files(folder: str) -> list[Path]:
    root = CORPUS / folder
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


@pytest.mark.parametrize("path", _files("malformed"), ids=lambda p: p.name)
def test_every_malformed_file_gets_a_4xx_problem(client: TestClient, path: Path) -> None:
    response = client.post("/v1/studies?wait=30", files=as_files([path]))
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"].startswith("urn:bonemets:problem:") and body["detail"]
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("name", ["S01_", "S01b_", "S02_", "S03_", "S04_"])
def test_real_series_are_accepted(client: TestClient, ct_corpus: Path, name: str) -> None:
    (folder,) = [p for p in (ct_corpus / "series").iterdir() if p.name.startswith(name)]
    paths = sorted(p for p in folder.iterdir() if p.is_file())
    response = client.post("/v1/studies?wait=120", files=as_files(paths))
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["slice_count"] == len(paths)
    z = [s["z_mm"] for s in result["slices"]]
    assert z == sorted(z)
    assert len({s["sop_instance_uid"] for s in result["slices"]}) == len(paths)
