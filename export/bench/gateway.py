"""The gateway as a user meets it: ``bonemets serve`` in a subprocess, a study POSTed with ?wait.

:class:`Gateway` starts uvicorn against a running Triton (``--triton-url``), or with the
local Triton ``serve`` starts itself (``--repository``: the soak's default service), on a free
port, with the model and batch size given through ``BONEMETS_*`` variables. :func:`submit`
sends one study and times it from the first byte of the upload to the result; around it,
the gateway's process tree is metered for CPU seconds and sampled for peak memory.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from export.bench.checkouts import Checkout, current_checkout
from export.bench.procfs import CpuMeter, MemorySampler

log = logging.getLogger(__name__)


def free_port() -> int:
    """A port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class Measured:
    """Slices through the gateway in some wall time, and the CPU its processes spent on them."""

    slices: int
    wall_s: float
    cpu_s: float

    @property
    def slices_per_s(self) -> float:
        return self.slices / self.wall_s

    @property
    def cpu_ms_per_slice(self) -> float:
        return self.cpu_s * 1000.0 / self.slices


@dataclass(frozen=True)
class StudyRun(Measured):
    """One study through the gateway: wall time, the gateway's CPU and memory while it ran."""

    upload_bytes: int
    cpu_gateway_process_s: float  # of cpu_s, the uvicorn process's own (not its workers')
    intake_cpu_s: float | None  # of cpu_s, until the upload was accepted (when measured)
    start_rss_bytes: int
    peak_rss_bytes: int
    peak_pss_bytes: int | None
    peak_rss_by_role: dict[str, int]
    timings: dict[str, float]


class Gateway:
    """``bonemets serve`` in a subprocess of its own session (a context manager)."""

    def __init__(self, triton_url: str | None, model_name: str, data_dir: Path, *, batch: int,
                 extra_env: dict[str, str] | None = None, repository: Path | None = None,
                 checkout: Checkout | None = None) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.triton_url = triton_url
        self.repository = repository  # without triton_url: serve starts its own Triton on it
        self.data_dir = data_dir
        self.checkout = checkout  # None: this tree, probed when started
        # A benchmark is one client sending far more than a hospital system would: the
        # per-client limits would measure themselves instead of the gateway.
        self.wanted_env = {"BONEMETS_MODEL_NAME": model_name,
                    "BONEMETS_BATCH_SIZE": str(batch),
                    "BONEMETS_CLIENT_MAX_INFLIGHT": "1000",
                    "BONEMETS_CLIENT_UPLOADS_PER_MINUTE": "100000", **(extra_env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.headers: dict[str, str] = {}

    @property
    def pid(self) -> int:
        assert self.process is not None, "gateway not started"
        return self.process.pid

    def start(self, timeout_s: float = 120.0) -> None:
        """Start the gateway and wait until /readyz says the model is there."""
        import httpx

        model = (["--triton-url", self.triton_url] if self.triton_url is not None
                 else ["--repository", str(self.repository)])
        if self.checkout is None:
            self.checkout = current_checkout()
        checkout = self.checkout
        command = [checkout.python, "-m", "api.cli", "serve", "--port", str(self.port),
                   *model, "--data-dir", str(self.data_dir)]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = checkout.api_key(self.data_dir)  # its own code, its own key store schema
        self.headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        with open(self.log_path, "wb") as log_file:  # the child keeps its own copy open
            self.process = subprocess.Popen(  # noqa: S603 - our own fixed command line
                command, env=checkout.env(self.wanted_env), cwd=checkout.root,
                start_new_session=True,
                stdout=subprocess.DEVNULL, stderr=log_file,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with status {self.process.returncode}:\n"
                                   + self.log_tail())
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"gateway not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    @property
    def log_path(self) -> Path:
        return self.data_dir / "gateway.log"

    def log_tail(self, lines: int = 15) -> str:
        """The last lines the gateway wrote to its stderr (its log)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM to the gateway's session (workers included), SIGKILL if it lingers."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log.warning("gateway did not stop in 30 s; killing it")
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()

    def __enter__(self) -> Gateway:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


def _post_study(gateway: Gateway, files: tuple[Path, ...], wait_s: float,
                on_accepted: Callable[[], None] | None = None) -> dict[str, Any]:
    """POST the files as one multipart upload with ?wait; poll on if the wait ran out.

    With ``on_accepted``, the POST does not wait: the 202 comes once the upload is stored
    and checked, ``on_accepted`` is called then, and the job is polled to its end.
    """
    import httpx

    with ExitStack() as stack, httpx.Client(base_url=gateway.base_url, timeout=wait_s + 120,
                                            headers=gateway.headers) as client:
        parts = [("files", (path.name, stack.enter_context(open(path, "rb")), "application/dicom"))
                 for path in files]
        wait = 0.0 if on_accepted is not None else wait_s
        response = client.post("/v1/studies", params={"wait": wait}, files=parts)
        job: dict[str, Any] = response.json()
        if response.status_code not in (200, 202):
            raise RuntimeError(f"gateway answered {response.status_code}: {job}")
        if on_accepted is not None:
            on_accepted()
        deadline = time.monotonic() + wait_s
        while job.get("state") not in ("succeeded", "failed") and time.monotonic() < deadline:
            time.sleep(0.25)  # each poll costs the gateway CPU too: not too often
            job = client.get(f"/v1/studies/{job['id']}").json()
        if job.get("state") != "succeeded":
            raise RuntimeError(f"study did not succeed: {job.get('state')} {job.get('error')}")
        return job


def submit(gateway: Gateway, files: tuple[Path, ...], *, wait_s: float = 600.0,
           sample_memory: bool = False, split_intake: bool = False) -> StudyRun:
    """Send one study and measure it: wall time, tree CPU time, and (optionally) peak memory.

    ``split_intake`` also measures the CPU spent until the upload is accepted (receiving,
    storing and checking it), at the price of polling for the result instead of ?wait.
    """
    meter = CpuMeter(gateway.pid)
    sampler = MemorySampler(gateway.pid) if sample_memory else None
    intake: list[float] = []
    with ExitStack() as stack:
        if sampler is not None:
            stack.enter_context(sampler)
        meter.start()
        began = time.perf_counter()
        accepted = (lambda: intake.append(meter.read())) if split_intake else None
        job = _post_study(gateway, files, wait_s, accepted)
        wall = time.perf_counter() - began
        cpu = meter.stop()
    # The job stays until the benchmark's data folder goes (a few GB in all): deleting it
    # here made ext4 charge the gateway's next upload for it. An inode freed within the last
    # 5 s (300 s while its inode table block is unwritten) is skipped when a new file is
    # made (fs/ext4/ialloc.c, recently_deleted), and each skip reads that block: with the
    # last study's files just deleted, making a file cost ~0.4 ms of the gateway's CPU
    # (perf: ext4_create -> find_inode_bit -> recently_deleted), more than all else it did
    # per slice. A service deletes studies days later, by retention, not seconds later.
    result = job["result"]
    if result["slice_count"] != len(files):
        raise RuntimeError(f"gateway found {result['slice_count']} slices of {len(files)}")
    return StudyRun(
        slices=len(files),
        upload_bytes=sum(path.stat().st_size for path in files),
        wall_s=wall,
        cpu_s=cpu,
        cpu_gateway_process_s=meter.root_cpu_s,
        intake_cpu_s=intake[0] if intake else None,
        start_rss_bytes=sampler.start_rss if sampler is not None else 0,
        peak_rss_bytes=sampler.peak_rss if sampler is not None else 0,
        peak_pss_bytes=sampler.peak_pss if sampler is not None else None,
        peak_rss_by_role=dict(sampler.peak_by_role) if sampler is not None else {},
        timings={key: float(value) for key, value in result.get("timings", {}).items()},
    )
