"""Export the DeepLabV3+ to ONNX: the bare network, and the end-to-end serving graph.

``export_network_onnx`` writes ``image`` float32 (N, C, 512, 512) -> ``logits`` float32
(N, 1, 512, 512). ``export_serving_onnx`` wraps the network in windowing, sigmoid,
thresholding, bit packing and 4x4 max pooling (:class:`export.model.serving.ServingGraph`):
``HU`` (N, 512, 512) -> ``MASK`` uint8 (N, 512, 64), ``PROBABILITY`` uint8 (N, 128, 128).
Both use the TorchScript exporter (``dynamo=False``): the dynamo one needs onnxscript.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import onnx
import torch
from torch import nn

from api.inference.bone_gate import BoneGate, gate_packed_mask
from api.inference.contract import (
    INPUT_NAME,
    INPUT_SIZE,
    MASK_OUTPUT,
    ONNX_INPUT,
    ONNX_OUTPUT,
    PROBABILITY_OUTPUT,
    Window,
)
from api.inference.processing import postprocess, window_channels
from export.model.serving import ServingGraph

MIN_OPSET = 17
BATCH_AXIS = "batch"
InputDtype = Literal["float16", "int16"]
_TORCH_DTYPES: dict[str, torch.dtype] = {"float16": torch.float16, "int16": torch.int16}


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the duration, then the caller's mode back."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _export(
    module: nn.Module,
    example: torch.Tensor,
    path: Path,
    input_name: str,
    output_names: Sequence[str],
    opset: int,
) -> Path:
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET}, got {opset}")
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic_axes = {name: {0: BATCH_AXIS} for name in (input_name, *output_names)}
    with _eval_mode(module), torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo, which needs onnxscript.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            input_names=[input_name],
            output_names=list(output_names),
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
        )
    _pin_output_dims(path)
    onnx.checker.check_model(str(path), full_check=True)
    return path


def _pin_output_dims(path: Path) -> None:
    """Replace the exporter's symbolic non-batch output dims with the static ones they are.

    The TorchScript exporter names them (``CastMASK_dim_1``); TensorRT and Triton's
    config check are happier with 512, 64; ONNX shape inference recovers the numbers.
    """
    model = onnx.load(str(path))
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for output in probe.graph.output:
        output.type.tensor_type.ClearField("shape")
    del probe.graph.value_info[:]
    inferred = onnx.shape_inference.infer_shapes(probe, strict_mode=True)
    for output, known in zip(model.graph.output, inferred.graph.output, strict=True):
        dims = output.type.tensor_type.shape.dim
        for dim, known_dim in zip(dims[1:], known.type.tensor_type.shape.dim[1:], strict=True):
            if known_dim.HasField("dim_value"):
                dim.dim_value = known_dim.dim_value  # clears dim_param: a oneof
    onnx.save(model, str(path))


def export_network_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    in_channels: int,
    opset: int = MIN_OPSET,
    input_size: int = INPUT_SIZE,
) -> Path:
    """Write the bare network: ``image`` (N, C, size, size) in [0, 1] -> ``logits``."""
    # A batch of two when tracing, so nothing gets specialised to batch 1.
    example = torch.zeros(2, in_channels, input_size, input_size)
    return _export(model, example, Path(path), ONNX_INPUT, [ONNX_OUTPUT], opset)


def export_serving_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    windows: tuple[Window, ...],
    threshold: float,
    input_dtype: InputDtype = "float16",
    opset: int = MIN_OPSET,
    input_size: int = INPUT_SIZE,
    bone_gate: BoneGate | None = None,
) -> Path:
    """Write the end-to-end graph: ``HU`` (N, size, size) -> ``MASK``, ``PROBABILITY``.

    ``input_dtype`` "float16" suits TensorRT (no int16 inputs there; float16 holds every
    integer HU up to 2048 exactly, beyond any window's top); "int16" suits ONNX Runtime.
    """
    if input_dtype not in _TORCH_DTYPES:
        raise ValueError(f"input_dtype must be one of {sorted(_TORCH_DTYPES)}, got {input_dtype}")
    graph = ServingGraph(model, windows, threshold, input_size, bone_gate)
    example = torch.zeros(2, input_size, input_size, dtype=_TORCH_DTYPES[input_dtype])
    outputs = [MASK_OUTPUT, PROBABILITY_OUTPUT]
    return _export(graph, example, Path(path), INPUT_NAME, outputs, opset)


# --- verification -------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkParity:
    """PyTorch versus ONNX Runtime logits on the same images."""

    max_difference: float
    max_logit: float

    @property
    def tolerance(self) -> float:
        """1e-4 for logits within +-10; float32 error grows with magnitude beyond that."""
        return 1e-4 * max(1.0, self.max_logit / 10.0)

    @property
    def ok(self) -> bool:
        return self.max_difference <= self.tolerance


@dataclass(frozen=True)
class ServingParity:
    """How far the serving graph's outputs are from the CPU path's on the same slices."""

    mask_bits_differing: int
    probability_max_difference: int


def run_onnx(path: str | Path, feeds: dict[str, npt.NDArray[np.generic]]) -> list[npt.NDArray[Any]]:
    """Run an ONNX file on ONNX Runtime's CPU provider; outputs in graph order."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs: list[npt.NDArray[Any]] = session.run(None, feeds)
    return outputs


def network_parity(
    model: nn.Module, onnx_path: str | Path, images: npt.NDArray[np.float32]
) -> NetworkParity:
    """Max |logits difference| between PyTorch (eval) and ONNX Runtime on ``images``."""
    with _eval_mode(model), torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
    (actual,) = run_onnx(onnx_path, {ONNX_INPUT: images})
    return NetworkParity(
        max_difference=float(np.max(np.abs(actual - expected))),
        max_logit=float(np.max(np.abs(expected))),
    )


def serving_parity(
    network_onnx: str | Path,
    serving_onnx: str | Path,
    hounsfield: npt.NDArray[np.generic],
    *,
    windows: tuple[Window, ...],
    threshold: float,
    bone_gate: BoneGate | None = None,
) -> ServingParity:
    """Compare the serving graph with the CPU path: numpy windowing, the network ONNX, numpy
    post-processing (:mod:`api.inference.processing`) and bone gate.

    ``hounsfield`` must already have the serving graph's input dtype.
    """
    images = window_channels(hounsfield.astype(np.int16), windows)
    (logits,) = run_onnx(network_onnx, {ONNX_INPUT: images})
    mask, probability = postprocess(logits, threshold)
    mask = gate_packed_mask(mask, hounsfield.astype(np.float32), bone_gate)
    served_mask, served_probability = run_onnx(serving_onnx, {INPUT_NAME: hounsfield})
    differing = int(np.unpackbits(np.bitwise_xor(mask, served_mask)).sum())
    gap = np.abs(probability.astype(np.int16) - served_probability.astype(np.int16))
    return ServingParity(differing, int(gap.max()))


def ct_like_slices(count: int, *, seed: int = 0, size: int = INPUT_SIZE) -> npt.NDArray[np.int16]:
    """Synthetic axial CT-like slices in HU (air, soft-tissue body, bone ring, lesions)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    slices = np.full((count, size, size), -1000.0, dtype=np.float32)
    for index in range(count):
        a, b = rng.uniform(0.35, 0.45), rng.uniform(0.25, 0.35)
        body = (xx / a) ** 2 + (yy / b) ** 2 <= 1
        cx, cy, r = rng.uniform(-0.05, 0.05), rng.uniform(0.05, 0.15), rng.uniform(0.06, 0.09)
        radius = np.hypot(xx - cx, yy - cy)
        slices[index][body] = 40.0
        slices[index][radius <= r] = 250.0  # trabecular bone
        slices[index][(radius > r) & (radius <= r * 1.25)] = 1000.0  # cortical ring
        lytic = np.hypot(xx - cx - r / 3, yy - cy) <= r / 4
        blastic = np.hypot(xx - cx + r / 3, yy - cy) <= r / 5
        slices[index][lytic] = 30.0
        slices[index][blastic] = 1100.0
        slices[index] += rng.normal(0.0, 15.0, (size, size)).astype(np.float32)
    return np.clip(np.rint(slices), -1024, 3071).astype(np.int16)
