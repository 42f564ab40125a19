"""The tritonserver that the ``nvidia-pytriton`` wheel bundles: its files and what it needs.

What the server needs (:func:`server_environment`): ``LD_LIBRARY_PATH`` with the wheel's
``nvidia_pytriton.libs`` and the running Python's libpython folder (the Python-backend
stub embeds that interpreter), and ``PYTHONPATH`` with this project and our sys.path, so
the repository's ``model.py`` imports :mod:`api.inference`. The Python backend runs the
stub found next to its own library, so :func:`assemble_backends` lays out a backends
folder with the stub built for the running Python (``major.minor``), as pytriton does.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PortInUse",
    "TritonDistribution",
    "TritonStartError",
    "assemble_backends",
    "server_environment",
]

# The folder that holds the ``api`` package: the served model.py imports it from there.
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class TritonStartError(RuntimeError):
    """tritonserver could not be started, or exited before it was ready."""


class PortInUse(TritonStartError):
    """A port the local Triton needs is taken by another process."""


@dataclass(frozen=True)
class TritonDistribution:
    """Where the pieces of the tritonserver bundled with nvidia-pytriton live."""

    server: Path
    python_backend: Path
    stub: Path
    libs: Path
    caches: Path

    @classmethod
    def find(cls) -> TritonDistribution:
        """Locate the bundled server and the Python-backend stub for the running Python."""
        spec = importlib.util.find_spec("pytriton")  # not imported: only its files are needed
        if spec is None or spec.origin is None:
            raise TritonStartError("nvidia-pytriton is not installed; it bundles tritonserver")
        root = Path(spec.origin).parent / "tritonserver"
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        found = cls(
            server=root / "bin" / "tritonserver",
            python_backend=root / "backends" / "python",
            stub=root / "python_backend_stubs" / version / "triton_python_backend_stub",
            libs=root.parent.parent / "nvidia_pytriton.libs",
            caches=root / "caches",
        )
        missing = [str(path) for path in (found.server, found.python_backend, found.stub)
                   if not path.exists()]
        if missing:
            raise TritonStartError(f"incomplete tritonserver in nvidia-pytriton: {missing}")
        return found


def server_environment(distribution: TritonDistribution) -> dict[str, str]:
    """The server's environment: ours plus library and Python paths."""
    env = dict(os.environ)
    libpython = sysconfig.get_config_var("LIBDIR") or str(Path(sys.base_prefix) / "lib")
    library_path = [str(distribution.libs), libpython, env.get("LD_LIBRARY_PATH", "")]
    # Our whole sys.path (stdlib included): the stub's interpreter then sees what we see.
    python_path = [str(PROJECT_ROOT), *sys.path[1:], env.get("PYTHONPATH", "")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(part for part in library_path if part)
    env["PYTHONPATH"] = os.pathsep.join(part for part in python_path if part)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def assemble_backends(distribution: TritonDistribution, into: Path) -> Path:
    """Copy the Python backend and this Python's stub to ``into/backends``; return that."""
    python_dir = into / "backends" / "python"
    shutil.copytree(
        distribution.python_backend, python_dir, ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy2(distribution.stub, python_dir / "triton_python_backend_stub")
    return into / "backends"
