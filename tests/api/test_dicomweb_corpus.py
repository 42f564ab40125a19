"""Real DICOM from the shared corpus by STOW-RS: stored where an upload is accepted, failed
with the code of the upload's refusal where it is not; never a 500."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.dimse.instances import FAILURE_CODES, PROCESSING_FAILURE
from tests.api.conftest import as_files
from tests.api.test_dicomweb import STOW, related
from tests.conftest import _corpus_dir

CORPUS = _corpus_dir()
CODES = {error.type_uri: code for error, code in reversed(FAILURE_CODES)}


def _files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders if (CORPUS / folder).is_dir()
                  for p in (CORPUS / folder).iterdir() if p.is_file())


@pytest.mark.parametrize("path", _files("singles", "enhanced_multiframe", "edgecases",
                                        "malformed"), ids=lambda p: p.name)
def test_stow_answers_each_file_as_the_upload_route_does(client: TestClient,
                                                         path: Path) -> None:
    upload = client.post("/v1/studies", files=as_files([path]))
    body, headers = related([path.read_bytes()])
    stow = client.post(STOW, content=body, headers=headers)
    if upload.status_code == 202:
        assert stow.status_code == 200, stow.text
        assert len(stow.json()["00081199"]["Value"]) == 1
        return
    assert upload.status_code < 500 and stow.status_code == 409, stow.text
    [failed] = stow.json()["00081198"]["Value"]
    expected = CODES.get(upload.json()["type"], PROCESSING_FAILURE)
    assert failed["00081197"]["Value"] == [expected], upload.json()
