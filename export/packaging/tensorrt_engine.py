"""The TensorRT engine of the serving graph: build it (Python API or trtexec), run it, time it.

The serving ONNX (``HU`` float16 (N, 512, 512) -> ``MASK`` uint8 (N, 512, 64),
``PROBABILITY`` uint8 (N, 128, 128)) becomes an FP16 engine with one optimisation profile
over the batch axis. Needs the ``tensorrt`` Python package of TensorRT 10.x (the release
inside the Triton container that will load the plan: TensorRT 11 builds strongly typed
networks only and has no FP16 builder flag) and, to run the engine, a CUDA build of torch,
whose tensors hold the engine's buffers. Both are imported only when used.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from api.inference.contract import INPUT_NAME, MASK_OUTPUT, PROBABILITY_OUTPUT
from export.packaging.tensorrt_report import Profile, Throughput

__all__ = [
    "EngineRunner",
    "TensorrtUnavailable",
    "build_engine",
    "build_engine_trtexec",
    "tensorrt_version",
    "trtexec_command",
]

log = logging.getLogger(__name__)

# TorchScript export names the serving graph's own ops "/Op_k" and the wrapped network's
# "/network/..."; the ONNX parser names TensorRT layers after the ONNX nodes.
NETWORK_SCOPE = "/network/"
_PINNED_LAYER_TYPES = ("ELEMENTWISE", "UNARY", "ACTIVATION", "POOLING", "REDUCE")


class TensorrtUnavailable(RuntimeError):
    """TensorRT (or the GPU it needs) is missing, or is a release this code cannot drive."""


def _tensorrt() -> Any:
    try:
        import tensorrt as trt  # type: ignore[import-not-found, unused-ignore]
    except ImportError as exc:
        raise TensorrtUnavailable("the tensorrt Python package is not installed") from exc
    if not hasattr(trt.BuilderFlag, "FP16"):
        raise TensorrtUnavailable(
            f"TensorRT {trt.__version__} has no FP16 builder flag (TensorRT 11 builds strongly "
            "typed networks only); use TensorRT 10.x, the release of the serving Triton container"
        )
    return trt


def tensorrt_version() -> str | None:
    """The installed TensorRT Python package's version (whichever release), or None."""
    try:
        import tensorrt as trt  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    return str(trt.__version__)


def _pin_serving_layers(trt: Any, network: Any) -> int:
    """Ask for FP32 in the serving graph's own float layers (windowing, threshold, quantisation).

    None of them needs it for exactness of the packing: the bit sums are integers <= 255,
    exact in FP16 as in FP32 (FP16 holds every integer up to 2048), so no INT32 cast is
    needed. FP32 keeps the threshold test exact (``logit >= float32 cut``, as the CPU path
    decides it; the cut rounded to FP16 could move) and keeps ``floor(255 * sigmoid + 0.5)``
    from rounding across a level. These layers run on at most 512x512 values a slice: free.
    The network itself stays FP16. Returns how many layers were pinned.
    """
    pinnable = {getattr(trt.LayerType, name) for name in _PINNED_LAYER_TYPES}
    floats = (trt.DataType.FLOAT, trt.DataType.HALF)
    pinned = 0
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        if not layer.name.startswith("/") or layer.name.startswith(NETWORK_SCOPE):
            continue
        inputs = [layer.get_input(i) for i in range(layer.num_inputs)]
        # Boolean layers (the And/Or of a comparison) have no float precision to pin.
        float_inputs = all(t is None or t.dtype in floats for t in inputs)
        if layer.type not in pinnable or not float_inputs:
            continue
        layer.precision = trt.DataType.FLOAT
        for output in range(layer.num_outputs):
            if layer.get_output(output).dtype in floats:
                layer.set_output_type(output, trt.DataType.FLOAT)
        pinned += 1
    return pinned


def build_engine(onnx_path: Path, profile: Profile, *, workspace_gb: float) -> bytes:
    """Build the serialised FP16 engine of ``onnx_path`` with the Python API."""
    trt = _tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch: TensorRT 10's only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * 2**30))
    config.set_flag(trt.BuilderFlag.FP16)
    pinned = _pin_serving_layers(trt, network)
    log.info("%d layers of the serving graph's own asked to run in FP32", pinned)
    if pinned:
        # PREFER, not OBEY: a layer without an FP32 kernel warns instead of failing the build.
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
    shapes = builder.create_optimization_profile()
    shapes.set_shape(INPUT_NAME, *profile.shapes())
    config.add_optimization_profile(shapes)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError("TensorRT could not build the engine (its log above says why)")
    return bytes(memoryview(plan))


def trtexec_command(
    trtexec: str, onnx_path: Path, plan_path: Path, profile: Profile, *, workspace_gb: float
) -> list[str]:
    """The ``trtexec`` (TensorRT 10) command line that builds the same engine, sans FP32 pins."""
    minimum, optimum, maximum = (
        f"{INPUT_NAME}:{'x'.join(str(d) for d in shape)}" for shape in profile.shapes()
    )
    return [
        trtexec,
        f"--onnx={onnx_path}",
        "--fp16",
        f"--minShapes={minimum}",
        f"--optShapes={optimum}",
        f"--maxShapes={maximum}",
        f"--memPoolSize=workspace:{round(workspace_gb * 1024)}",  # MiB
        f"--saveEngine={plan_path}",
        "--skipInference",
    ]


def build_engine_trtexec(
    onnx_path: Path, plan_path: Path, profile: Profile, *, workspace_gb: float
) -> None:
    """Build the engine with ``trtexec`` from PATH (when the Python package is absent)."""
    trtexec = shutil.which("trtexec")
    if trtexec is None:
        raise TensorrtUnavailable("neither the tensorrt Python package nor trtexec is available")
    command = trtexec_command(trtexec, onnx_path, plan_path, profile, workspace_gb=workspace_gb)
    log.warning("no tensorrt Python package: building with %s", " ".join(command))
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not plan_path.is_file():
        raise RuntimeError(f"trtexec failed ({done.returncode}): {done.stdout[-2000:]}")


class EngineRunner:
    """A deserialised engine and one execution context; torch CUDA tensors hold its buffers."""

    def __init__(self, plan: bytes) -> None:
        import torch

        trt = _tensorrt()
        if not torch.cuda.is_available():
            raise TensorrtUnavailable("no CUDA device visible to torch")
        self._torch = torch
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self._runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise RuntimeError("TensorRT could not deserialise the engine")
        self._check_io(trt)
        self.context = self.engine.create_execution_context()
        # A stream of our own: TensorRT syncs extra on the legacy default stream.
        self._stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]
        self.max_batch = int(self.engine.get_tensor_profile_shape(INPUT_NAME, 0)[2][0])

    def _check_io(self, trt: Any) -> None:
        """The engine must take float16 HU and give uint8 outputs: the buffers assume so."""
        half, byte = trt.DataType.HALF, trt.DataType.UINT8
        expected = {INPUT_NAME: half, MASK_OUTPUT: byte, PROBABILITY_OUTPUT: byte}
        found = {name: self.engine.get_tensor_dtype(name) for name in expected}
        if found != expected:
            raise RuntimeError(f"engine tensor types {found} are not the contract's {expected}")

    def _bind(self, hounsfield: Any) -> dict[str, Any]:
        """Point the context at ``hounsfield`` (CUDA float16) and fresh output tensors."""
        if not self.context.set_input_shape(INPUT_NAME, tuple(hounsfield.shape)):
            raise ValueError(f"batch of {hounsfield.shape[0]} is outside the engine's profile")
        self.context.set_tensor_address(INPUT_NAME, hounsfield.data_ptr())
        outputs = {}
        for name in (MASK_OUTPUT, PROBABILITY_OUTPUT):
            shape = tuple(self.context.get_tensor_shape(name))
            outputs[name] = self._torch.empty(shape, dtype=self._torch.uint8, device="cuda")
            self.context.set_tensor_address(name, outputs[name].data_ptr())
        return outputs

    def _execute(self) -> None:
        if not self.context.execute_async_v3(self._stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")

    def _device_hounsfield(self, hounsfield: npt.NDArray[np.int16]) -> Any:
        # float16 holds every integer HU up to 2048, beyond any window's top (see contract).
        return self._torch.from_numpy(hounsfield.astype(np.float16)).to("cuda")

    def run(
        self, hounsfield: npt.NDArray[np.int16]
    ) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
        """Packed MASK and PROBABILITY for int16 HU (N, 512, 512), in engine-sized chunks."""
        masks, probabilities = [], []
        with self._torch.cuda.stream(self._stream):
            for start in range(0, len(hounsfield), self.max_batch):
                device = self._device_hounsfield(hounsfield[start : start + self.max_batch])
                outputs = self._bind(device)
                self._execute()
                masks.append(outputs[MASK_OUTPUT].cpu().numpy())
                probabilities.append(outputs[PROBABILITY_OUTPUT].cpu().numpy())
            self._stream.synchronize()
        return np.concatenate(masks), np.concatenate(probabilities)

    def throughput(
        self, hounsfield: npt.NDArray[np.int16], batch: int, *, warmup: int, iterations: int
    ) -> Throughput:
        """Engine time for ``batch`` slices (tiled from ``hounsfield``), buffers on the GPU."""
        tiled = hounsfield[np.arange(batch) % len(hounsfield)]
        with self._torch.cuda.stream(self._stream):
            device = self._device_hounsfield(tiled)
            outputs = self._bind(device)  # kept alive while the engine writes into them
            for _ in range(warmup):
                self._execute()
            self._stream.synchronize()
            start = time.perf_counter()
            for _ in range(iterations):
                self._execute()
            self._stream.synchronize()
            seconds = time.perf_counter() - start
        del outputs
        return Throughput(batch=batch, iterations=iterations, seconds=seconds)
