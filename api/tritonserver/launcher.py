"""A local tritonserver, from the binary that the ``nvidia-pytriton`` wheel bundles.

:class:`LocalTriton` starts it on the bonemets model repository with explicit model
control (the GPU variants of the repository cannot load on a CPU host), streams its log
into ours, waits for readiness, and stops it without leaving a process behind: Triton
and its Python-backend stubs run in a process group of their own, which gets SIGTERM,
then SIGKILL after a grace period.

The bundled server's files and environment are :mod:`api.tritonserver.bundle`'s business.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path

from api.inference.contract import MODEL_NAME
from api.tritonserver.bundle import (
    PortInUse,
    TritonDistribution,
    TritonStartError,
    assemble_backends,
    server_environment,
)
from api.tritonserver.process import die_with_parent, free_ports, kill_group, port_free

__all__ = ["LocalTriton", "PortInUse", "TritonDistribution", "TritonStartError", "free_ports"]

logger = logging.getLogger("bonemets.triton")

# Python-backend shared memory per model instance; one int16 batch of 32 slices is 16 MiB.
SHM_BYTES = 16 * 1024 * 1024
# Said by Triton on every host without a GPU; nothing to act on.
_CPU_HOST_NOISE = ("CUDA", "CudaDriverHelper", "pinned memory")


def _log_level(line: str) -> int:
    if any(noise in line for noise in _CPU_HOST_NOISE):
        return logging.DEBUG
    levels = {"I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR}
    if len(line) > 1 and line[0] in levels and line[1].isdigit() and not line.endswith("]"):
        return levels[line[0]]
    return logging.DEBUG  # start-up tables: a bare header line, then continuation lines


class LocalTriton:
    """A tritonserver child process serving ``models`` from ``repository``."""

    def __init__(
        self,
        repository: Path,
        *,
        grpc_port: int = 8101,
        http_port: int = 8100,
        metrics_port: int = 8102,
        models: Sequence[str] = (MODEL_NAME,),
        address: str = "127.0.0.1",
        log_verbose: int = 0,
        grace_s: float = 15.0,
        startup_timeout_s: float = 120.0,
    ) -> None:
        if len({grpc_port, http_port, metrics_port}) != 3:
            raise ValueError("gRPC, HTTP and metrics ports must differ")
        self.repository = Path(repository).resolve()
        self.ports = {"grpc": grpc_port, "http": http_port, "metrics": metrics_port}
        self.models = tuple(models)
        self.address = address
        self.log_verbose = log_verbose
        self.grace_s = grace_s
        self.startup_timeout_s = startup_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._runtime: Path | None = None
        self._shm_prefix = ""
        self._log_thread: threading.Thread | None = None
        self._log_tail: collections.deque[str] = collections.deque(maxlen=60)

    @property
    def grpc_url(self) -> str:
        """``host:port`` of the gRPC endpoint, as tritonclient wants it."""
        return f"{self.address}:{self.ports['grpc']}"

    @property
    def http_url(self) -> str:
        return f"http://{self.address}:{self.ports['http']}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.address}:{self.ports['metrics']}/metrics"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self) -> list[str]:
        """The last lines Triton wrote (for error messages and tests)."""
        return list(self._log_tail)

    @property
    def shm_prefix(self) -> str:
        """The name every Python-backend shared-memory region in /dev/shm starts with."""
        return self._shm_prefix

    def python_backend_settings(self) -> dict[str, str]:
        """The Python backend's settings; Triton takes one per ``--backend-config`` flag
        (in one flag, the sizes would become part of the region name)."""
        return {
            "shm-region-prefix-name": self._shm_prefix,
            "shm-default-byte-size": str(SHM_BYTES),
            "shm-growth-byte-size": str(SHM_BYTES),
        }

    def command(self, distribution: TritonDistribution, backends: Path) -> list[str]:
        """The tritonserver command line."""
        command = [
            str(distribution.server),
            f"--model-repository={self.repository}",
            "--model-control-mode=explicit",
            *(f"--load-model={model}" for model in self.models),
            f"--backend-directory={backends}",
            f"--cache-directory={distribution.caches}",
            *(f"--backend-config=python,{key}={value}"
              for key, value in self.python_backend_settings().items()),
            f"--grpc-address={self.address}",
            f"--http-address={self.address}",
            f"--metrics-address={self.address}",
            *(f"--{kind}-port={port}" for kind, port in self.ports.items()),
            "--allow-gpu-metrics=false",
            "--pinned-memory-pool-byte-size=0",
            f"--exit-timeout-secs={max(1, int(self.grace_s) - 1)}",
            "--strict-readiness=true",
            f"--log-verbose={self.log_verbose}",
        ]
        return command

    def _check_before_start(self) -> None:
        for model in self.models:
            if not (self.repository / model / "config.pbtxt").is_file():
                raise TritonStartError(
                    f"model {model!r} not found in {self.repository} (no {model}/config.pbtxt); "
                    "install one with 'bonemets export onnx ... --repository'"
                )
        taken = [f"{kind} {port}" for kind, port in self.ports.items()
                 if not port_free(self.address, port)]
        if taken:
            raise PortInUse(
                f"port(s) in use on {self.address}: {', '.join(taken)}; stop what holds them "
                "or choose others (--grpc-port/--http-port/--metrics-port or BONEMETS_TRITON_*)"
            )

    def start(self) -> None:
        """Start tritonserver; returns at once (see :meth:`wait_ready`)."""
        if self.running:
            raise TritonStartError(f"tritonserver already running (pid {self.pid})")
        self._check_before_start()
        distribution = TritonDistribution.find()
        self._shm_prefix = f"bonemets{os.getpid()}-{uuid.uuid4().hex[:8]}-"
        self._runtime = Path(tempfile.mkdtemp(prefix="bonemets-triton-"))
        backends = assemble_backends(distribution, self._runtime)
        command = self.command(distribution, backends)
        logger.debug("starting %s", " ".join(command))
        on_main_thread = threading.current_thread() is threading.main_thread()
        self._log_tail.clear()
        environment = server_environment(distribution)
        # Triton's and its stubs' temporary files (onnxruntime's session file among them)
        # go in the runtime folder, which stop() removes.
        environment["TMPDIR"] = str(self._runtime / "tmp")
        (self._runtime / "tmp").mkdir()
        self._process = subprocess.Popen(  # noqa: S603 - our own fixed command line
            command,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stubs included, none escapes stop()
            # PDEATHSIG fires when the *thread* that forked exits; only the main thread lives
            # as long as the process.
            preexec_fn=die_with_parent if on_main_thread else None,  # noqa: PLW1509
        )
        self._log_thread = threading.Thread(
            target=self._pump_log, name="triton-log", daemon=True
        )
        self._log_thread.start()
        atexit.register(self.stop)
        logger.info("tritonserver started (pid %d) on %s", self._process.pid, self.repository)

    def _pump_log(self) -> None:
        process = self._process
        assert process is not None and process.stdout is not None
        for raw in process.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip()
            if line:
                self._log_tail.append(line)
                logger.log(_log_level(line), "%s", line)

    def _ready(self) -> bool:
        paths = ["/v2/health/ready", *(f"/v2/models/{model}/ready" for model in self.models)]
        for path in paths:
            try:
                with urllib.request.urlopen(self.http_url + path, timeout=2.0) as answer:
                    if answer.status != 200:
                        return False
            except (urllib.error.URLError, OSError):
                return False
        return True

    def wait_ready(self, timeout_s: float | None = None) -> float:
        """Block until the server and every model are ready; returns the seconds waited.

        ``timeout_s`` defaults to the ``startup_timeout_s`` given to the constructor.
        """
        timeout = self.startup_timeout_s if timeout_s is None else timeout_s
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self._process is None:
                raise TritonStartError("tritonserver was not started")
            if self._process.poll() is not None:
                raise self._exit_error()
            if self._ready():
                waited = time.monotonic() - started
                logger.info("Triton ready in %.1f s: gRPC %s, HTTP %s, metrics %s",
                            waited, self.grpc_url, self.http_url, self.metrics_url)
                return waited
            time.sleep(0.1)
        raise TritonStartError(f"tritonserver not ready after {timeout:.0f} s: {self._tail_text()}")

    def _tail_text(self, lines: int = 12) -> str:
        return "\n".join(self.log_tail()[-lines:]) or "(no output)"

    def _exit_error(self) -> TritonStartError:
        if self._log_thread is not None:
            self._log_thread.join(timeout=2.0)  # let the last lines arrive
        assert self._process is not None
        message = f"tritonserver exited with status {self._process.returncode}:\n"
        message += self._tail_text()
        if any("already in use" in line.lower() for line in self.log_tail()):
            return PortInUse(message)
        return TritonStartError(message)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after ``grace_s``, to Triton and its whole process group."""
        process, self._process = self._process, None
        atexit.unregister(self.stop)
        if process is not None:
            if process.poll() is None:
                logger.info("stopping tritonserver (pid %d)", process.pid)
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=self.grace_s)
                except subprocess.TimeoutExpired:
                    logger.warning("tritonserver did not stop in %.0f s; killing it", self.grace_s)
            kill_group(process.pid)
            process.wait()
            logger.info("tritonserver stopped (pid %d)", process.pid)
        if self._log_thread is not None:
            self._log_thread.join(timeout=5.0)
            self._log_thread = None
        self._cleanup_files()

    def _cleanup_files(self) -> None:
        if self._runtime is not None:
            shutil.rmtree(self._runtime, ignore_errors=True)
            self._runtime = None
        shm = Path("/dev/shm")
        if self._shm_prefix and shm.is_dir():
            for region in shm.glob(self._shm_prefix + "*"):
                region.unlink(missing_ok=True)

    def __enter__(self) -> LocalTriton:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
