"""The two model repositories the benchmark serves: the demo model's and the null model's.

The demo model is taken from ``--model-repository`` when it is installed there. When it
is not (a fresh checkout, before ``bonemets export onnx``), a stand-in with the demo's
architecture and random weights is built once into the cache: throughput depends on the
architecture, not on the weights, so the figures stay comparable; the report says which.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from api.inference.contract import BONE_WINDOW, DEFAULT_THRESHOLD, MODEL_NAME
from export.bench.null_model import NULL_MODEL_NAME, install_null_model

log = logging.getLogger(__name__)

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo.json"


@dataclass(frozen=True)
class ServedModel:
    """A model repository, the model to load from it, and what that model is."""

    repository: Path
    name: str
    description: str


def _installed_version(repository: Path, name: str) -> str | None:
    config = repository / name / "config.pbtxt"
    if not config.is_file():
        return None
    for line in config.read_text(encoding="utf-8").splitlines():
        if '"model_version"' in line and "string_value:" in line:
            return line.split("string_value:")[1].split('"')[1]
    return "unknown"


def _demo_architecture() -> dict[str, object]:
    model: dict[str, object] = json.loads(DEMO_CONFIG.read_text(encoding="utf-8"))["model"]
    return model


def _build_stand_in(repository: Path, name: str) -> str:
    """Install a random-weight model of the demo's architecture; returns its version string."""
    import tempfile

    import torch

    from export.model import ModelConfig, build_model
    from export.packaging.onnx_export import export_network_onnx
    from export.packaging.repository import install_model

    architecture = _demo_architecture()
    names = ("depth", "width", "norm", "output_stride")  # what decides the compute per slice
    config = ModelConfig(**{key: architecture[key] for key in names if key in architecture})  # type: ignore[arg-type]
    torch.manual_seed(0)
    version = f"bench-random-r{config.depth}-w{config.width:g}"
    with tempfile.TemporaryDirectory(prefix="bonemets-bench-") as tmp:
        network = export_network_onnx(build_model(config), Path(tmp) / "model.onnx",
                                      in_channels=config.in_channels)
        install_model(repository, network_onnx=network, serving_onnx=None,
                      windows=(BONE_WINDOW,), threshold=DEFAULT_THRESHOLD,
                      model_version=version, name=name)
    return version


def demo_model(repository: Path, cache: Path, name: str = MODEL_NAME) -> ServedModel:
    """The demo model in ``repository``, or the cached random-weight stand-in of its shape."""
    version = _installed_version(repository, name)
    if version is not None:
        return ServedModel(repository.resolve(), name, f"{name} {version} from {repository}")
    stand_in = cache / "demo-stand-in"
    version = _installed_version(stand_in, name)
    if version is None:
        log.warning("no %s model in %s; building a random-weight stand-in of the demo "
                    "architecture in %s", name, repository, stand_in)
        version = _build_stand_in(stand_in, name)
    return ServedModel(stand_in.resolve(), name,
                       f"{name} {version}: random weights, demo architecture "
                       f"(no model in {repository})")


def null_model(cache: Path) -> ServedModel:
    """The zero-cost ``bonemets_null`` model, in a repository of its own under ``cache``."""
    repository = cache / "null-repository"
    install_null_model(repository)
    return ServedModel(repository.resolve(), NULL_MODEL_NAME,
                       f"{NULL_MODEL_NAME}: returns zeros at once")
