"""The gateway end to end: a live uvicorn in front of a live tritonserver, over real sockets."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from api.auth.keys import open_key_store
from api.dicom.geometry import resize_to_model
from api.dicom.series import load_slice_hounsfield, select_ct_series
from api.inference.onnx_local import OnnxSegmenter
from api.tritonserver.launcher import LocalTriton
from tests.api.conftest import as_files, as_zip, build_series
from tests.conftest import corpus_series_files
from tests.integration.conftest import TritonEndpoint, free_ports, wait_http_ok

pytestmark = pytest.mark.integration


CLIENT_SCOPES = ("studies:write", "studies:read", "studies:delete")


@dataclass(frozen=True)
class Gateway:
    """A live gateway's URL and an API key it accepts."""

    base: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def client(self, timeout: float) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=timeout, headers=self.headers)


def new_key(data_dir: Path, scopes: tuple[str, ...] = CLIENT_SCOPES) -> str:
    """A key in the gateway's store, made as ``bonemets keys create`` makes it."""
    store = open_key_store(data_dir)
    try:
        return store.create("integration", scopes)[1]
    finally:
        store.close()


def start_gateway(
    triton_url: str, data_dir: Path, **env: str
) -> tuple[subprocess.Popen[bytes], Gateway]:
    key = new_key(data_dir)
    (port,) = free_ports(1)
    environment = {**os.environ, "BONEMETS_DECODE_WORKERS": "1", **env}
    process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--triton-url", triton_url,
         "--data-dir", str(data_dir)],
        env=environment, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{base}/healthz", process, timeout=60)
    except RuntimeError:
        process.kill()
        raise
    return process, Gateway(base, key)


def stop_gateway(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def gateway(triton_server: TritonEndpoint, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Gateway]:
    # The floor off: the masks are compared pixel for pixel with ONNX Runtime's own answers
    # (the floor has tests of its own, tests/api/test_reporting_floor.py).
    process, live = start_gateway(triton_server.grpc_url, tmp_path_factory.mktemp("gateway"),
                                  BONEMETS_REPORTING_FLOOR_MM="0")
    yield live
    stop_gateway(process)


@pytest.fixture(scope="module")
def phantom_study(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A small phantom CT study (with a lesion), as files on disk."""
    from export.phantoms import make_phantom, sample_spec, write_study

    spec = sample_spec(7, slices=12, size=512, encoding="none", n_lesions=2)
    study = write_study(make_phantom(spec), tmp_path_factory.mktemp("phantom"))
    return sorted((study / "dicom").glob("*.dcm"))


def _png(client: httpx.Client, url: str) -> np.ndarray:
    response = client.get(url)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)))


def _expected_masks(paths: list[Path], triton_server: TritonEndpoint) -> list[np.ndarray]:
    """What ONNX Runtime, run here directly, says of the same preprocessed slices."""
    segmenter = OnnxSegmenter.from_repository(triton_server.repository, triton_server.model_name)
    masks = []
    for ref in select_ct_series(paths).slices:
        fitted, mapping = resize_to_model(load_slice_hounsfield(ref), 512)
        segmentation = segmenter.segment_sync(fitted[None])
        masks.append(mapping.mask_to_original(segmentation.mask[0]))
    return masks


@pytest.mark.parametrize("packing", ["files", "zip"])
def test_masks_equal_onnx_runtime_and_boxes_match_components(
    gateway: Gateway, triton_server: TritonEndpoint, phantom_study: list[Path], packing: str
) -> None:
    parts = as_files(phantom_study) if packing == "files" else as_zip(phantom_study)
    with gateway.client(timeout=300) as client:
        response = client.post("/v1/studies", params={"wait": 240}, files=parts)
        assert response.status_code == 200, response.text
        result = response.json()["result"]
        expected = _expected_masks(phantom_study, triton_server)
        assert result["slice_count"] == len(expected)
        assert any(m.any() for m in expected), "the test model should mark something"
        for entry, want in zip(result["slices"], expected, strict=True):
            mask = _png(client, entry["mask_url"]) > 0
            assert mask.shape == (entry["rows"], entry["columns"])
            assert np.array_equal(mask, want), f"slice {entry['index']}"
            labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
            assert len(entry["boxes"]) == n
            objects = ndimage.find_objects(labels)
            for box, found in zip(entry["boxes"], objects, strict=True):
                assert (box["row_min"], box["row_max"] + 1) == (found[0].start, found[0].stop)
                assert (box["col_min"], box["col_max"] + 1) == (found[1].start, found[1].stop)


def test_real_series_with_blank_uids_is_accepted(gateway: Gateway, ct_corpus: Path) -> None:
    paths = corpus_series_files(ct_corpus, "S01_")
    with gateway.client(timeout=300) as client:
        response = client.post("/v1/studies", params={"wait": 240}, files=as_files(paths))
        assert response.status_code == 200, response.text
        result = response.json()["result"]
        assert result["slice_count"] == len(paths)
        assert any("UID" in w or "uid" in w for w in result["warnings"])


def test_bad_inputs_get_their_4xx(gateway: Gateway, ct_corpus: Path) -> None:
    with gateway.client(timeout=60) as client:
        not_dicom = client.post("/v1/studies", files=[("files", ("x.txt", b"hello", "text/plain"))])
        assert not_dicom.status_code == 415
        assert not_dicom.headers["content-type"] == "application/problem+json"
        mr = client.post("/v1/studies", files=as_files([ct_corpus / "edgecases" /
                                                          "wrong_modality_MR_small.dcm"]))
        assert mr.status_code == 422
        assert client.get("/readyz").status_code == 200


def test_the_live_gateway_asks_for_credentials(gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.base, timeout=30) as anonymous:
        assert anonymous.get("/healthz").status_code == 200
        refused = anonymous.get("/v1/models")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert anonymous.get("/v1/models", headers={"X-API-Key": gateway.key}).status_code == 200
        last = "A" if gateway.key[-1] != "A" else "B"
        wrong = {"Authorization": f"Bearer {gateway.key[:-1]}{last}"}
        assert anonymous.get("/v1/models", headers=wrong).status_code == 401
    with gateway.client(timeout=30) as client:
        assert client.get("/v1/models").status_code == 200


def test_killing_triton_mid_study_fails_the_job_never_leaves_it_running(
    model_repository: Path, tmp_path: Path
) -> None:
    grpc_port, http_port, metrics_port = free_ports(3)
    triton = LocalTriton(model_repository, grpc_port=grpc_port, http_port=http_port,
                         metrics_port=metrics_port, models=["bonemets"])
    triton.start()
    triton.wait_ready(timeout_s=120)
    series = build_series(tmp_path / "series", slices=48, size=512)
    process, live = start_gateway(
        triton.grpc_url, tmp_path / "data", BONEMETS_BATCH_SIZE="1",
        BONEMETS_INFLIGHT_BATCHES="1", BONEMETS_INFERENCE_RETRIES="1",
        BONEMETS_INFERENCE_TIMEOUT_S="10",
    )
    try:
        with live.client(timeout=60) as client:
            job_id = client.post("/v1/studies", files=as_files(series.paths)).json()["id"]
            deadline = time.monotonic() + 120
            while client.get(f"/v1/studies/{job_id}").json()["progress"]["slices_done"] < 2:
                assert time.monotonic() < deadline, "no progress before the kill"
                time.sleep(0.1)
            assert triton.pid is not None
            os.killpg(triton.pid, signal.SIGKILL)  # a crash, not a shutdown
            deadline = time.monotonic() + 120
            job = client.get(f"/v1/studies/{job_id}").json()
            while job["state"] in ("queued", "running"):
                assert time.monotonic() < deadline, f"job stuck in {job['state']}"
                time.sleep(0.5)
                job = client.get(f"/v1/studies/{job_id}").json()
            assert job["state"] == "failed", job
            assert job["error"]["status"] in (503, 504)
            assert job["error"]["type"].startswith("urn:bonemets:problem:inference-")
            assert client.get("/readyz").status_code == 503
            assert client.get("/healthz").status_code == 200
    finally:
        stop_gateway(process)
        triton.stop()


def test_a_local_triton_gets_tensors_through_shared_memory(
    gateway: Gateway, triton_server: TritonEndpoint, phantom_study: list[Path]
) -> None:
    import tritonclient.grpc as grpcclient

    with gateway.client(timeout=300) as client:
        response = client.post("/v1/studies", params={"wait": 240},
                               files=as_files(phantom_study[:4]))
        assert response.status_code == 200, response.text
    status = grpcclient.InferenceServerClient(triton_server.grpc_url)
    regions = status.get_system_shared_memory_status(as_json=True).get("regions", {})
    ours = [name for name in regions if name.startswith("bonemets-")]
    assert ours, f"no bonemets region registered with Triton: {sorted(regions)}"
