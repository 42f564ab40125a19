"""The live gateway (real uvicorn, real tritonserver) keeping its studies in a real S3 server
(SeaweedFS): the same masks as on disk, SEG and SR made from stored objects, nothing left
behind after DELETE, in the bucket or in the local scratch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest

from tests.api.conftest import as_zip
from tests.integration.conftest import TritonEndpoint
from tests.integration.test_gateway import (
    Gateway,
    _expected_masks,
    _png,
    phantom_study,  # noqa: F401 - the module's fixture, shared
    start_gateway,
    stop_gateway,
)
from tests.seaweedfs import SeaweedS3

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def on_s3(triton_server: TritonEndpoint, seaweedfs: SeaweedS3,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, str, Path]]:
    prefix = seaweedfs.new_prefix()
    data = tmp_path_factory.mktemp("gateway-s3")
    # The floor off, as for the disk gateway whose answers these must equal.
    process, live = start_gateway(triton_server.grpc_url, data, BONEMETS_REPORTING_FLOOR_MM="0",
                                  **seaweedfs.environment(prefix))
    yield live, prefix, data
    stop_gateway(process)


def test_a_study_kept_in_s3_reads_as_on_disk_and_leaves_nothing_after_delete(
    on_s3: tuple[Gateway, str, Path], seaweedfs: SeaweedS3, triton_server: TritonEndpoint,
    phantom_study: list[Path],  # noqa: F811
) -> None:
    gateway, prefix, data = on_s3
    with gateway.client(timeout=300) as client:
        response = client.post("/v1/studies", params={"wait": 240}, files=as_zip(phantom_study))
        assert response.status_code == 200, response.text
        job = response.json()
        expected = _expected_masks(phantom_study, triton_server)
        for entry, want in zip(job["result"]["slices"], expected, strict=True):
            assert np.array_equal(_png(client, entry["mask_url"]) > 0, want)
        sr = client.get(f"/v1/studies/{job['id']}/sr.dcm")
        assert sr.status_code == 200
        assert pydicom.dcmread(pydicom.filebase.DicomBytesIO(sr.content)).Modality == "SR"
        kept = seaweedfs.keys(prefix)
        assert f"{prefix}/studies/{job['id']}/result.json" in kept
        assert f"{prefix}/studies/{job['id']}/outputs/sr.dcm" in kept
        assert sum("/upload/" in key for key in kept) == len(phantom_study)
        # Nothing of the study on the gateway's disk: no studies, no scratch left.
        assert not (data / "studies").exists()
        assert [p for p in (data / "scratch").rglob("*") if p.is_file()] == []
        assert client.delete(f"/v1/studies/{job['id']}").status_code == 204
    assert seaweedfs.keys(prefix) == []
