"""The serving install stays free of torch, and the CLI stays cheap to start."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from tests.conftest import REPO_ROOT

IMPORT_EVERY_API_MODULE = """
import importlib, pkgutil, sys
import api
for module in pkgutil.walk_packages(api.__path__, "api."):
    if module.name != "api.inference.triton_python_model":  # runs inside Triton's stub
        importlib.import_module(module.name)
from api.http.app import create_app
create_app()
print(",".join(sorted(name for name in ("torch", "torchvision") if name in sys.modules)))
"""


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=120, check=True)
    return done.stdout.strip()


def test_the_serving_path_never_imports_torch() -> None:
    assert _run(IMPORT_EVERY_API_MODULE) == ""


def test_the_cli_help_imports_neither_torch_nor_onnxruntime() -> None:
    code = ("import sys; from api.cli import build_parser; build_parser(); "
            "print(','.join(m for m in ('torch', 'onnxruntime', 'tritonclient') "
            "if m in sys.modules))")
    assert _run(code) == ""


def test_dependencies_keep_torch_optional_and_numpy_below_2() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    serving = project["dependencies"]
    assert not any(dep.startswith("torch") for dep in serving)
    assert any(dep.replace(" ", "").startswith("numpy") and "<2" in dep for dep in serving)
    assert "torch==2.13.0" in project["optional-dependencies"]["train"]
