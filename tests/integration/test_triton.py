"""The real tritonserver: same bytes as in process, dynamic batching, errors, clean exit."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from api.errors import InferenceTimeout, InferenceUnavailable
from api.inference.balancer import BalancedSegmenter
from api.inference.contract import INPUT_NAME, MASK_OUTPUT, MODEL_NAME, PROBABILITY_OUTPUT
from api.inference.onnx_local import OnnxSegmenter
from api.inference.triton import TritonSegmenter
from api.tritonserver.launcher import SHM_BYTES, LocalTriton, PortInUse
from tests.integration.conftest import (
    TEST_MODEL_VERSION,
    TEST_THRESHOLD,
    TEST_WINDOWS,
    TritonEndpoint,
    free_ports,
    process_groups,
    running_cli,
)

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


def ct_like_hounsfield(count: int, seed: int = 0) -> npt.NDArray[Any]:
    """Int16 HU slices: air, a soft-tissue body, bone blobs, noise; different per slice."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:512, :512]
    slices = np.full((count, 512, 512), -1000, dtype=np.int16)
    for index in range(count):
        body = (x - 256) ** 2 / 200**2 + (y - 256) ** 2 / 150**2 < 1
        slices[index][body] = 40
        for _ in range(6):
            cy, cx, radius = rng.integers(150, 360), rng.integers(120, 390), rng.integers(8, 40)
            blob = (x - cx) ** 2 + (y - cy) ** 2 < radius**2
            slices[index][blob] = rng.integers(-100, 1500)
        noise = rng.normal(0, 25, size=(512, 512)).astype(np.int16)
        slices[index] += noise
    return slices


@pytest.fixture(scope="module")
def in_process(triton_server: TritonEndpoint) -> OnnxSegmenter:
    return OnnxSegmenter.from_repository(triton_server.repository, triton_server.model_name)


def _metric(metrics_url: str, name: str, model: str = MODEL_NAME) -> float:
    with urllib.request.urlopen(metrics_url, timeout=5) as answer:
        text = answer.read().decode()
    pattern = rf'^{name}\{{model="{model}",version="1"\}} (\S+)$'
    match = re.search(pattern, text, flags=re.MULTILINE)
    assert match, f"{name} for {model} not in Triton's metrics"
    return float(match.group(1))


Array = npt.NDArray[Any]


async def _infer_raw(grpc_url: str, batches: list[Array]) -> list[tuple[Array, ...]]:
    """Send each batch as its own concurrent request with tritonclient; raw MASK/PROBABILITY."""
    from tritonclient.grpc import InferInput, InferRequestedOutput
    from tritonclient.grpc.aio import InferenceServerClient

    async def one(client: InferenceServerClient, batch: Array) -> tuple[Array, ...]:
        tensor = InferInput(INPUT_NAME, list(batch.shape), "INT16")
        tensor.set_data_from_numpy(batch)
        outputs = [InferRequestedOutput(MASK_OUTPUT), InferRequestedOutput(PROBABILITY_OUTPUT)]
        result = await client.infer(MODEL_NAME, [tensor], outputs=outputs, client_timeout=120)
        return result.as_numpy(MASK_OUTPUT), result.as_numpy(PROBABILITY_OUTPUT)

    async with InferenceServerClient(grpc_url) as client:
        return list(await asyncio.gather(*(one(client, batch) for batch in batches)))


def test_triton_answers_byte_identical_to_in_process(
    triton_server: TritonEndpoint, in_process: OnnxSegmenter
) -> None:
    hounsfield = ct_like_hounsfield(8, seed=1)
    ((mask, probability),) = asyncio.run(_infer_raw(triton_server.grpc_url, [hounsfield]))
    expected_mask, expected_probability = in_process.run_packed(hounsfield)
    assert mask.dtype == np.uint8 and mask.shape == (8, 512, 64)
    assert probability.dtype == np.uint8 and probability.shape == (8, 128, 128)
    assert mask.tobytes() == expected_mask.tobytes()
    assert probability.tobytes() == expected_probability.tobytes()
    assert np.abs(probability.astype(int) - expected_probability.astype(int)).max() == 0
    # Not trivially equal: the random-weight model marks part of each slice, not all of it.
    lesion_fraction = np.unpackbits(mask).mean()
    assert 0.0 < lesion_fraction < 0.9
    assert len(np.unique(probability)) > 10


def test_triton_segmenter_matches_in_process(
    triton_server: TritonEndpoint, in_process: OnnxSegmenter
) -> None:
    hounsfield = ct_like_hounsfield(3, seed=2)

    async def segment() -> tuple[object, object]:
        model = TritonSegmenter(triton_server.grpc_url, triton_server.model_name, timeout_s=120)
        try:
            return await model.segment(hounsfield), await model.info()
        finally:
            await model.close()

    remote, info = asyncio.run(segment())
    local = in_process.segment_sync(hounsfield)
    np.testing.assert_array_equal(remote.mask, local.mask)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(remote.probability, local.probability)  # type: ignore[attr-defined]
    assert info.version == TEST_MODEL_VERSION  # type: ignore[attr-defined]
    assert info.windows == TEST_WINDOWS  # type: ignore[attr-defined]
    assert info.threshold == TEST_THRESHOLD  # type: ignore[attr-defined]
    assert (info.max_batch_size, info.input_size, info.platform) == (32, 512, "python")  # type: ignore[attr-defined]


def test_a_balanced_model_passes_over_a_dead_endpoint_to_a_real_triton(
    triton_server: TritonEndpoint, in_process: OnnxSegmenter
) -> None:
    """BONEMETS_TRITON_URL with a dead endpoint first: the real one answers every batch, the
    dead one is tried once and then left out for its cooldown."""
    hounsfield = ct_like_hounsfield(2, seed=3)
    (dead,) = free_ports(1)
    calls: dict[str, int] = {}

    class Counted(TritonSegmenter):
        async def segment(self, hounsfield: npt.NDArray[np.int16]) -> Any:
            calls[self.url] = calls.get(self.url, 0) + 1
            return await super().segment(hounsfield)

    def connect(url: str) -> TritonSegmenter:
        return Counted(url, triton_server.model_name, timeout_s=120)

    async def segment() -> list[object]:
        model = BalancedSegmenter(f"127.0.0.1:{dead},{triton_server.grpc_url}", connect,
                                  cooldown_s=60)
        try:
            return [await model.segment(hounsfield) for _ in range(3)]
        finally:
            await model.close()

    answers = asyncio.run(segment())
    local = in_process.segment_sync(hounsfield)
    for answer in answers:
        np.testing.assert_array_equal(answer.mask, local.mask)  # type: ignore[attr-defined]
    assert calls == {f"127.0.0.1:{dead}": 1, triton_server.grpc_url: 3}


def test_concurrent_requests_are_batched(
    triton_server: TritonEndpoint, in_process: OnnxSegmenter
) -> None:
    slices = ct_like_hounsfield(16, seed=3)
    requests_before = _metric(triton_server.metrics_url, "nv_inference_request_success")
    executions_before = _metric(triton_server.metrics_url, "nv_inference_exec_count")
    results = asyncio.run(_infer_raw(triton_server.grpc_url, [s[None] for s in slices]))
    requests = _metric(triton_server.metrics_url, "nv_inference_request_success") - requests_before
    executions = _metric(triton_server.metrics_url, "nv_inference_exec_count") - executions_before
    assert requests == 16
    assert 1 <= executions < requests, f"{executions:.0f} executions for {requests:.0f} requests"
    # Batched with strangers, each slice still gets exactly its in-process answer.
    expected_mask, expected_probability = in_process.run_packed(slices)
    np.testing.assert_array_equal(np.concatenate([mask for mask, _ in results]), expected_mask)
    np.testing.assert_array_equal(
        np.concatenate([probability for _, probability in results]), expected_probability
    )


def test_errors_map_to_the_error_tree(triton_server: TritonEndpoint) -> None:
    (closed_port,) = free_ports(1)
    hounsfield = ct_like_hounsfield(1)

    async def scenarios() -> None:
        nobody = TritonSegmenter(f"127.0.0.1:{closed_port}", timeout_s=5)
        assert await nobody.ready() is False
        with pytest.raises(InferenceUnavailable):
            await nobody.segment(hounsfield)
        await nobody.close()
        unknown = TritonSegmenter(triton_server.grpc_url, "no_such_model", timeout_s=5)
        assert await unknown.ready() is False
        with pytest.raises(InferenceUnavailable):
            await unknown.info()
        await unknown.close()
        hurried = TritonSegmenter(triton_server.grpc_url, timeout_s=30)
        assert await hurried.ready() is True
        await hurried.info()
        hurried.timeout_s = 0.001  # less than one slice takes
        with pytest.raises(InferenceTimeout):
            await hurried.segment(hounsfield)
        await hurried.close()

    asyncio.run(scenarios())


def test_taken_port_is_refused_clearly(triton_server: TritonEndpoint) -> None:
    grpc_port = int(triton_server.grpc_url.rsplit(":", 1)[1])
    spare_http, spare_metrics = free_ports(2)
    clash = LocalTriton(
        triton_server.repository,
        grpc_port=grpc_port,
        http_port=spare_http,
        metrics_port=spare_metrics,
    )
    with pytest.raises(PortInUse, match=f"grpc {grpc_port}"):
        clash.start()
    assert clash.pid is None


def test_cli_stops_on_sigterm_without_orphans(model_repository: Path, tmp_path: Path) -> None:
    grpc_port, http_port, metrics_port = free_ports(3)
    command = [
        "triton", "--repository", str(model_repository), "--grpc-port", str(grpc_port),
        "--http-port", str(http_port), "--metrics-port", str(metrics_port),
    ]
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    environment = {**os.environ, "TMPDIR": str(temporary)}
    with running_cli(command, environment, REPO_ROOT) as (cli, output):
        log = output.until("Triton ready", timeout=120)
        started = next(line for line in log if "tritonserver started (pid" in line)
        server_pid = int(re.search(r"pid (\d+)", started).group(1))  # type: ignore[union-attr]
        family = {pid for pid, group in process_groups().items() if group == server_pid}
        assert server_pid in family and len(family) >= 2  # the server and its model's stub
        assert list(temporary.glob("bonemets-triton-*"))  # what the stop must remove
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(timeout=60) == 0
    assert f"tritonserver stopped (pid {server_pid})" in output.rest()
    survivors = {pid for pid, group in process_groups().items() if group == server_pid}
    assert not survivors, f"processes of the stopped server remain: {sorted(survivors)}"
    assert not family & set(process_groups())
    assert sorted(path.name for path in temporary.iterdir()) == []


def test_python_backend_runs_with_the_settings_given(triton_server: TritonEndpoint) -> None:
    """Each setting in its own flag: the stub's region has our prefix and our size."""
    prefix = triton_server.server.shm_prefix
    regions = [path for path in Path("/dev/shm").iterdir() if path.name.startswith(prefix)]
    assert regions, f"no Python-backend region named {prefix}* in /dev/shm"
    for region in regions:
        assert "=" not in region.name and "," not in region.name, region.name
        size = region.stat().st_size
        assert size >= SHM_BYTES and size % SHM_BYTES == 0, f"{region.name}: {size} bytes"


def test_shared_memory_under_concurrency_matches_in_process(
    triton_server: TritonEndpoint, in_process: OnnxSegmenter
) -> None:
    """More requests in flight than regions: each answer is its own slices', byte for byte."""
    batches = [ct_like_hounsfield(2, seed=10 + i) for i in range(10)]

    async def segment_all() -> tuple[list[Any], bool, int]:
        model = TritonSegmenter(triton_server.grpc_url, triton_server.model_name, timeout_s=120,
                                shared_memory=True, shared_memory_slices=4,
                                shared_memory_slots=3)
        try:
            answers = await asyncio.gather(*(model.segment(b) for b in batches))
            regions = await model._connection().get_system_shared_memory_status(as_json=True)
            mine = f"bonemets-{os.getpid()}-"
            ours = [n for n in regions.get("regions", {}) if n.startswith(mine)]
            return answers, model.shared_memory, len(ours)
        finally:
            await model.close()

    answers, still_shared, registered = asyncio.run(segment_all())
    assert still_shared and registered == 3
    for batch, remote in zip(batches, answers, strict=True):
        local = in_process.segment_sync(batch)
        np.testing.assert_array_equal(remote.mask, local.mask)
        np.testing.assert_array_equal(remote.probability, local.probability)
