"""The local Triton's environment: its Python stub must import this project's ``api``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from api.tritonserver.bundle import TritonDistribution, server_environment


def test_the_stub_imports_api_from_its_pythonpath_alone(tmp_path: Path) -> None:
    """The stub runs no site hooks (so no editable-install finder): PYTHONPATH must do.

    (triton_python_model itself imports the stub's own utilities, so its neighbour stands in.)
    """
    distribution = TritonDistribution(
        server=tmp_path / "tritonserver", python_backend=tmp_path,
        stub=tmp_path / "stub", libs=tmp_path, caches=tmp_path,
    )
    env = server_environment(distribution)
    env.pop("PYTHONHOME", None)
    check = "import api.inference.onnx_local as m; print(m.__file__)"
    found = subprocess.run([sys.executable, "-S", "-c", check], env=env, cwd=tmp_path,
                           capture_output=True, text=True, check=True).stdout.strip()
    first = Path(env["PYTHONPATH"].split(os.pathsep)[0])
    assert (first / "api" / "__init__.py").is_file()
    assert Path(found).resolve() == (first / "api/inference/onnx_local.py").resolve()
