"""Write a Triton model repository: the CPU model the local Triton serves, and GPU variants.

Layout (Triton's own, ``<repository>/<model>/config.pbtxt`` and ``<model>/<version>/``)::

    bonemets/            backend "python", KIND_CPU: 1/model.py + 1/model.onnx
    bonemets_onnx_gpu/   backend "onnxruntime" + TensorRT FP16 accelerator, KIND_GPU:
                         1/model.onnx is the end-to-end serving graph (HU float16 in)
    bonemets_trt/        platform "tensorrt_plan", KIND_GPU: 1/model.plan, built on the GPU
                         host from the serving graph (see its README.md)

Every variant has the same tensor names and the same ``parameters`` (windows, threshold,
model_version, input_size, probability_stride; bone_gate when the model has one), so the
gateway reads any of them alike.
The GPU variants are written only when a serving ONNX is given; they load only in NVIDIA's
Triton container, so the local Triton is started with explicit model control.

The CPU model's ``model.py`` is :data:`PYTHON_MODEL_ENTRY`, a few lines that import
:class:`api.inference.triton_python_model.TritonPythonModel` from the bonemets installation
on the stub's PYTHONPATH: the served code has one source, and an edit to it reaches every
repository without reinstalling the model. An edit to this writer reaches an installed
repository through :mod:`export.packaging.reinstall`.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from api.inference.bone_gate import BoneGate
from api.inference.contract import (
    INPUT_NAME,
    INPUT_SIZE,
    MASK_OUTPUT,
    MODEL_NAME,
    PROBABILITY_OUTPUT,
    PROBABILITY_STRIDE,
    Window,
    format_windows,
)

__all__ = ["PYTHON_MODEL_ENTRY", "Batching", "install_model", "render_config"]

TRT_SUFFIX = "_trt"
ONNX_GPU_SUFFIX = "_onnx_gpu"

PYTHON_MODEL_ENTRY = '''\
"""bonemets in Triton's Python backend. Written by export/packaging/repository.py.

The served code is api/inference/triton_python_model.py: the stub imports it from the
bonemets installation on its PYTHONPATH, so this file never holds a copy to go stale.
"""

from api.inference.triton_python_model import TritonPythonModel

__all__ = ["TritonPythonModel"]
'''


@dataclass(frozen=True)
class _Variant:
    header: str  # backend or platform line(s)
    input_type: str
    instance_kind: str
    extra: str = ""


_PYTHON = _Variant('backend: "python"', "TYPE_INT16", "KIND_CPU")
_ONNX_GPU = _Variant(
    'backend: "onnxruntime"\ndefault_model_filename: "model.onnx"',
    "TYPE_FP16",
    "KIND_GPU",
    extra="""optimization {
  execution_accelerators {
    gpu_execution_accelerator: [
      {
        name: "tensorrt"
        parameters { key: "precision_mode" value: "FP16" }
        parameters { key: "max_workspace_size_bytes" value: "2147483648" }
        parameters { key: "trt_engine_cache_enable" value: "1" }
        parameters { key: "trt_engine_cache_path" value: "/tmp/bonemets_trt_cache" }
      }
    ]
  }
}
""",
)
_TRT = _Variant(
    'platform: "tensorrt_plan"\ndefault_model_filename: "model.plan"', "TYPE_FP16", "KIND_GPU"
)


def _parameters_block(parameters: dict[str, str]) -> str:
    lines = [
        f'parameters {{ key: "{key}" value: {{ string_value: "{value}" }} }}'
        for key, value in parameters.items()
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Batching:
    """How Triton batches and places one model: shared by every variant."""

    max_batch_size: int = 32
    instances: int = 1
    preferred_batch_sizes: tuple[int, ...] = (4, 8, 16, 32)
    max_queue_delay_us: int = 2000

    @property
    def preferred(self) -> tuple[int, ...]:
        """The preferred sizes that fit ``max_batch_size`` (Triton rejects larger ones)."""
        fitting = tuple(size for size in self.preferred_batch_sizes if size <= self.max_batch_size)
        return fitting or (self.max_batch_size,)


def render_config(
    name: str, variant: _Variant, *, parameters: dict[str, str], batching: Batching
) -> str:
    """The ``config.pbtxt`` text of one model variant."""
    preferred = ", ".join(str(size) for size in batching.preferred)
    packed = INPUT_SIZE // 8
    pooled = INPUT_SIZE // PROBABILITY_STRIDE
    return f"""# Written by export/packaging/repository.py; tensors: api/inference/contract.py.
name: "{name}"
{variant.header}
max_batch_size: {batching.max_batch_size}
input [
  {{ name: "{INPUT_NAME}" data_type: {variant.input_type} dims: [ {INPUT_SIZE}, {INPUT_SIZE} ] }}
]
output [
  {{ name: "{MASK_OUTPUT}" data_type: TYPE_UINT8 dims: [ {INPUT_SIZE}, {packed} ] }},
  {{ name: "{PROBABILITY_OUTPUT}" data_type: TYPE_UINT8 dims: [ {pooled}, {pooled} ] }}
]
dynamic_batching {{
  preferred_batch_size: [ {preferred} ]
  max_queue_delay_microseconds: {batching.max_queue_delay_us}
}}
instance_group [ {{ count: {batching.instances} kind: {variant.instance_kind} }} ]
{variant.extra}{_parameters_block(parameters)}"""


def _write_model(
    repository: Path, name: str, version: int, config: str, files: dict[str, Path]
) -> Path:
    model_dir = repository / name
    version_dir = model_dir / str(version)
    version_dir.mkdir(parents=True, exist_ok=True)
    for target, source in files.items():
        shutil.copyfile(source, version_dir / target)
    (model_dir / "config.pbtxt").write_text(config, encoding="utf-8")
    return model_dir


def _trt_readme(name: str, version: int, batching: Batching) -> str:
    optimal = max(batching.preferred)
    shapes = f"{INPUT_SIZE}x{INPUT_SIZE}"
    return f"""# {name}{TRT_SUFFIX}: TensorRT engine

`{version}/model.plan` is not shipped: a TensorRT engine is specific to the GPU model and the
TensorRT version, so build it on the serving host, inside the same NVIDIA container release as
the Triton that will load it, from the end-to-end serving graph of `{name}{ONNX_GPU_SUFFIX}`:

    trtexec --onnx={name}{ONNX_GPU_SUFFIX}/{version}/model.onnx --fp16 \\
        --minShapes={INPUT_NAME}:1x{shapes} \\
        --optShapes={INPUT_NAME}:{optimal}x{shapes} \\
        --maxShapes={INPUT_NAME}:{batching.max_batch_size}x{shapes} \\
        --saveEngine={name}{TRT_SUFFIX}/{version}/model.plan

Then load it with `--model-control-mode=explicit --load-model={name}{TRT_SUFFIX}`. The
`parameters` of config.pbtxt (windows, threshold, model_version) describe the graph the
engine was built from; rebuild the engine whenever the serving ONNX changes.
"""


def install_model(
    repository: Path,
    *,
    network_onnx: Path,
    serving_onnx: Path | None,
    windows: tuple[Window, ...],
    threshold: float,
    model_version: str,
    name: str = MODEL_NAME,
    version: int = 1,
    in_channels: int = 1,
    max_batch_size: int = 32,
    instances: int = 1,
    preferred_batch_sizes: Sequence[int] = (4, 8, 16, 32),
    max_queue_delay_us: int = 2000,
    intra_op_threads: int = 0,
    bone_gate: BoneGate | None = None,
) -> Path:
    """Install the network (and, if given, the GPU serving graph) into ``repository``.

    Returns the CPU model's folder, ``repository/name``. Existing files of the same
    version are overwritten; other versions and other models are left alone.
    """
    if len(windows) != in_channels:
        raise ValueError(f"{len(windows)} windows given for a {in_channels}-channel network")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    if '"' in model_version or "\\" in model_version:
        raise ValueError(f"model_version must not contain quotes or backslashes: {model_version!r}")
    parameters = {
        "windows": format_windows(windows),
        "threshold": repr(float(threshold)),
        "model_version": model_version,
        "input_size": str(INPUT_SIZE),
        "probability_stride": str(PROBABILITY_STRIDE),
    }
    if bone_gate is not None:
        parameters["bone_gate"] = str(bone_gate)
    batching = Batching(max_batch_size, instances, tuple(preferred_batch_sizes), max_queue_delay_us)
    cpu_parameters = {**parameters, "intra_op_threads": str(intra_op_threads)}
    cpu_config = render_config(name, _PYTHON, parameters=cpu_parameters, batching=batching)
    model_dir = _write_model(repository, name, version, cpu_config, {"model.onnx": network_onnx})
    (model_dir / str(version) / "model.py").write_text(PYTHON_MODEL_ENTRY, encoding="utf-8")
    if serving_onnx is not None:
        _install_gpu_variants(repository, name, version, serving_onnx, parameters, batching)
    return model_dir


def _install_gpu_variants(
    repository: Path,
    name: str,
    version: int,
    serving_onnx: Path,
    parameters: dict[str, str],
    batching: Batching,
) -> None:
    onnx_name, trt_name = name + ONNX_GPU_SUFFIX, name + TRT_SUFFIX
    onnx_config = render_config(onnx_name, _ONNX_GPU, parameters=parameters, batching=batching)
    _write_model(repository, onnx_name, version, onnx_config, {"model.onnx": serving_onnx})
    trt_config = render_config(trt_name, _TRT, parameters=parameters, batching=batching)
    trt_dir = _write_model(repository, trt_name, version, trt_config, {})
    (trt_dir / "README.md").write_text(_trt_readme(name, version, batching), encoding="utf-8")
