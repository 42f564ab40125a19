"""Write an installed model's repository files again, from what its config.pbtxt recorded.

The committed ``model_repository/`` ships the demo network but not its checkpoint. When
:mod:`export.packaging.repository` changes how it writes a model (a config line, the
``model.py`` entry, the TensorRT README), :func:`reinstall` runs
:func:`~export.packaging.repository.install_model` again with the installed ONNX files and the
windows, threshold, bone gate, version and batching recorded in the CPU model's config.pbtxt, so the
committed files follow the writer without retraining or re-exporting::

    python -m export.packaging.reinstall model_repository
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from api.inference.bone_gate import BoneGate
from api.inference.contract import MODEL_NAME, parse_windows
from export.packaging.repository import ONNX_GPU_SUFFIX, install_model

__all__ = ["recorded_install", "reinstall"]


def recorded_install(repository: Path, name: str = MODEL_NAME) -> dict[str, Any]:
    """The keyword arguments of :func:`install_model` that ``repository/name`` was written with
    (all but the ONNX files), read back from its config.pbtxt."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config = model_config_pb2.ModelConfig()
    text_format.Parse((repository / name / "config.pbtxt").read_text(encoding="utf-8"), config)
    parameters = {key: value.string_value for key, value in config.parameters.items()}
    windows = parse_windows(parameters["windows"])
    return {
        "name": name,
        "windows": windows,
        "threshold": float(parameters["threshold"]),
        "model_version": parameters["model_version"],
        "in_channels": len(windows),
        "max_batch_size": int(config.max_batch_size),
        "instances": int(config.instance_group[0].count),
        "preferred_batch_sizes": tuple(config.dynamic_batching.preferred_batch_size),
        "max_queue_delay_us": int(config.dynamic_batching.max_queue_delay_microseconds),
        "intra_op_threads": int(parameters.get("intra_op_threads", "0")),
        "bone_gate": BoneGate.parse(parameters.get("bone_gate", "")),
    }


def reinstall(repository: Path, name: str = MODEL_NAME, version: int = 1) -> Path:
    """Write ``repository/name`` (and its GPU variants, where a serving ONNX is installed)
    again with the installed networks and the recorded parameters; returns the model folder."""
    recorded = recorded_install(repository, name)
    network = repository / name / str(version) / "model.onnx"
    serving = repository / (name + ONNX_GPU_SUFFIX) / str(version) / "model.onnx"
    with tempfile.TemporaryDirectory(prefix="bonemets-reinstall-") as tmp:
        # install_model copies the networks into place: copy them out first, not onto themselves.
        network_copy = Path(tmp) / "network.onnx"
        shutil.copyfile(network, network_copy)
        serving_copy = None
        if serving.is_file():
            serving_copy = Path(tmp) / "serving.onnx"
            shutil.copyfile(serving, serving_copy)
        return install_model(
            repository,
            network_onnx=network_copy,
            serving_onnx=serving_copy,
            version=version,
            **recorded,
        )


if __name__ == "__main__":
    import sys

    for folder in sys.argv[1:] or ["model_repository"]:
        print(f"rewrote {reinstall(Path(folder))}")
