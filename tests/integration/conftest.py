"""Session fixtures for the integration tier: a small model repository and a real tritonserver.

``triton_server`` starts the bundled tritonserver once per session, on free ports, serving
a repository built in a temporary folder from a small DeepLabV3+ (ResNet-18, width 0.125,
random weights). Other integration tests (the gateway's) reuse it: it yields a
:class:`TritonEndpoint` with the URLs, the repository and the model name.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from api.inference.contract import BONE_WINDOW, MODEL_NAME, Window
from api.tritonserver.launcher import LocalTriton, TritonDistribution, TritonStartError, free_ports

TEST_WINDOWS: tuple[Window, ...] = (BONE_WINDOW,)
TEST_THRESHOLD = 0.5
TEST_MODEL_VERSION = "test-r18w0.125"


@dataclass(frozen=True)
class TritonEndpoint:
    """A running local Triton, as tests see it."""

    grpc_url: str  # host:port, as tritonclient takes it
    http_url: str
    metrics_url: str
    repository: Path
    model_name: str
    server: LocalTriton


def _export_small_network(path: Path) -> Path:
    torch = pytest.importorskip("torch", reason="building the test network needs torch")
    from export.model import ModelConfig, build_model
    from export.packaging.onnx_export import export_network_onnx

    torch.manual_seed(0)
    # No head prior: a fresh model then says "lesion" for part of a slice, so masks
    # compared between paths are not trivially empty.
    config = ModelConfig(depth=18, width=0.125, in_channels=len(TEST_WINDOWS), head_prior=None)
    return export_network_onnx(build_model(config), path, in_channels=config.in_channels)


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository with the CPU ``bonemets`` model, built once per session."""
    from export.packaging.repository import install_model

    workdir = tmp_path_factory.mktemp("triton-model")
    network = _export_small_network(workdir / "network.onnx")
    repository = workdir / "repository"
    install_model(
        repository,
        network_onnx=network,
        serving_onnx=None,
        windows=TEST_WINDOWS,
        threshold=TEST_THRESHOLD,
        model_version=TEST_MODEL_VERSION,
        in_channels=len(TEST_WINDOWS),
    )
    return repository


@pytest.fixture(scope="session")
def triton_server(model_repository: Path) -> Iterator[TritonEndpoint]:
    """The bundled tritonserver serving ``model_repository``, once per session."""
    try:
        TritonDistribution.find()
    except TritonStartError as exc:
        pytest.skip(str(exc))
    grpc_port, http_port, metrics_port = free_ports(3)
    server = LocalTriton(
        model_repository,
        grpc_port=grpc_port,
        http_port=http_port,
        metrics_port=metrics_port,
        models=[MODEL_NAME],
    )
    with server:
        yield TritonEndpoint(
            grpc_url=server.grpc_url,
            http_url=server.http_url,
            metrics_url=server.metrics_url,
            repository=model_repository,
            model_name=MODEL_NAME,
            server=server,
        )


def process_groups() -> dict[int, int]:
    """pid -> process group id of every live process (from /proc)."""
    groups = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":  # zombies are dead already
            groups[int(entry.name)] = int(fields[2])
    return groups


class OutputLines:
    """A child's merged stdout/stderr, read in a thread, so tests can wait for a line."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)

    def until(self, marker: str, timeout: float) -> list[str]:
        """Every line up to the first with ``marker``; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.5)
            except queue.Empty:
                continue
            self.seen.append(line)
            if marker in line:
                return self.seen
        raise AssertionError(
            f"{marker!r} not seen in {timeout:.0f} s:\n" + "".join(self.seen[-20:])
        )

    def rest(self) -> str:
        """Everything the child wrote (call once it has exited)."""
        self._thread.join(timeout=5)
        while not self._lines.empty():
            self.seen.append(self._lines.get())
        return "".join(self.seen)


@contextmanager
def running_cli(
    argv: list[str], env: Mapping[str, str], cwd: Path
) -> Iterator[tuple[subprocess.Popen[str], OutputLines]]:
    """``python -m api.cli ARGV`` with its output readable line by line; killed if a test
    leaves it running."""
    process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", *argv], cwd=cwd, env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert process.stdout is not None
    try:
        yield process, OutputLines(process.stdout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def wait_http_ok(url: str, process: subprocess.Popen[Any], timeout: float) -> None:
    """Poll ``url`` until it answers 200; fail at once if ``process`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} was up")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not 200 in {timeout:.0f} s")
