"""Real DICOM from the shared corpus through the API: accepted, or refused with a 4xx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.config import Settings
from api.http.app import create_app
from tests.api.conftest import as_files
from tests.api.contract import CheckedClient
from tests.api.fakes import BrightBoneModel
from tests.conftest import _corpus_dir, corpus_series_files

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


@pytest.fixture
def any_body_part_client(
    settings: Settings, fake_model: BrightBoneModel
) -> Iterator[TestClient]:
    """A gateway configured to read every body part (BONEMETS_REFUSED_BODY_PARTS="")."""
    app = create_app(
        settings.model_copy(update={"refused_body_parts": ""}),
        model_factory=lambda _: fake_model,
    )
    with CheckedClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("name", "body_part"), [("S02_", "HEAD"), ("S03_", "BRAIN")]
)
def test_head_series_are_refused_as_unsupported_body_part(
    client: TestClient, ct_corpus: Path, name: str, body_part: str
) -> None:
    paths = corpus_series_files(ct_corpus, name)
    response = client.post("/v1/studies?wait=30", files=as_files(paths))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "urn:bonemets:problem:unsupported-body-part"
    assert f"BodyPartExamined is {body_part}" in body["detail"]
    assert client.get("/healthz").status_code == 200


def test_a_head_series_beside_a_trunk_series_is_left_out(
    client: TestClient, ct_corpus: Path
) -> None:
    trunk = corpus_series_files(ct_corpus, "S01b_")
    response = client.post(
        "/v1/studies?wait=120", files=as_files([*corpus_series_files(ct_corpus, "S02_"), *trunk])
    )
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["slice_count"] == len(trunk)
    (warning,) = [w for w in result["warnings"] if "left out" in w]
    assert warning.startswith("series 2 (28 files) left out: BodyPartExamined is HEAD")


@pytest.mark.parametrize("name", ["S01_", "S01b_", "S02_", "S03_", "S04_"])
def test_real_series_are_accepted(
    any_body_part_client: TestClient, ct_corpus: Path, name: str
) -> None:
    client = any_body_part_client
    paths = corpus_series_files(ct_corpus, name)
    response = client.post("/v1/studies?wait=120", files=as_files(paths))
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["slice_count"] == len(paths)
    z = [s["z_mm"] for s in result["slices"]]
    assert z == sorted(z)
    assert len({s["sop_instance_uid"] for s in result["slices"]}) == len(paths)
