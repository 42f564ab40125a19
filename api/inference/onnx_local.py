"""The segmentation model in process: ONNX Runtime on the CPU plus :mod:`processing`.

Used by tools and tests directly, and by the Triton Python-backend model, which is a thin
adapter around :meth:`OnnxSegmenter.run_packed`; so a slice gets the same bytes in
process and over Triton.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from api.inference.bone_gate import BoneGate, gate_packed_mask
from api.inference.contract import (
    INPUT_SIZE,
    MAX_BATCH_SIZE,
    MODEL_NAME,
    ONNX_INPUT,
    ONNX_OUTPUT,
    PROBABILITY_STRIDE,
    Window,
    parse_windows,
)
from api.inference.processing import postprocess, unpack_mask, window_channels
from api.inference.protocol import ModelInfo, Segmentation

if TYPE_CHECKING:
    import onnxruntime

__all__ = ["LocalSegmenter", "OnnxSegmenter", "read_model_parameters"]

PLATFORM = "onnxruntime-cpu"


class LocalSegmenter:
    """A :class:`~api.inference.protocol.SegmentationModel` computed in this process.

    Windowing and post-processing are the served model's own (:mod:`processing`); a subclass
    only supplies the network's logits, so every in-process path gives the served bytes.
    """

    _windows: tuple[Window, ...]
    _threshold: float
    _info: ModelInfo
    _bone_gate: BoneGate | None = None

    def logits(self, image: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The network on windowed images (N, C, H, W); logits (N, 1, H, W)."""
        raise NotImplementedError

    def run_packed(
        self, hounsfield: npt.NDArray[np.int16]
    ) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
        """The wire outputs for int16 HU (N, H, W): packed MASK and PROBABILITY."""
        if hounsfield.ndim != 3 or hounsfield.shape[1:] != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(
                f"expected HU of shape (N, {INPUT_SIZE}, {INPUT_SIZE}), got {hounsfield.shape}"
            )
        hounsfield = hounsfield.astype(np.int16, copy=False)
        image = window_channels(hounsfield, self._windows)
        logits = np.asarray(self.logits(image), dtype=np.float32)
        packed, probability = postprocess(logits, self._threshold)
        return gate_packed_mask(packed, hounsfield, self._bone_gate), probability

    def segment_sync(self, hounsfield: npt.NDArray[np.int16]) -> Segmentation:
        """Segment int16 HU (N, H, W) now, in chunks of at most ``max_batch_size`` slices."""
        if len(hounsfield) == 0:
            pooled = INPUT_SIZE // PROBABILITY_STRIDE
            return Segmentation(
                mask=np.zeros((0, INPUT_SIZE, INPUT_SIZE), dtype=np.bool_),
                probability=np.zeros((0, pooled, pooled), dtype=np.uint8),
            )
        step = self._info.max_batch_size
        masks, probabilities = [], []
        for start in range(0, len(hounsfield), step):
            packed, probability = self.run_packed(hounsfield[start : start + step])
            masks.append(unpack_mask(packed, INPUT_SIZE))
            probabilities.append(probability)
        return Segmentation(mask=np.concatenate(masks), probability=np.concatenate(probabilities))

    async def segment(self, hounsfield: npt.NDArray[np.int16]) -> Segmentation:
        """Segment in a worker thread, so the event loop keeps serving."""
        return await asyncio.to_thread(self.segment_sync, hounsfield)

    async def info(self) -> ModelInfo:
        return self._info

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None


class OnnxSegmenter(LocalSegmenter):
    """ONNX Runtime on the CPU: the network of the served ``bonemets`` model."""

    def __init__(
        self,
        onnx_path: Path,
        windows: tuple[Window, ...],
        threshold: float,
        name: str = MODEL_NAME,
        version: str = "",
        *,
        intra_op_threads: int = 0,
        max_batch_size: int = MAX_BATCH_SIZE,
        bone_gate: BoneGate | None = None,
    ) -> None:
        self._session = _open_session(Path(onnx_path), intra_op_threads)
        _check_network(self._session, len(windows))
        self._windows = windows
        self._threshold = threshold
        self._bone_gate = bone_gate
        self._info = ModelInfo(
            name=name,
            version=version,
            input_size=INPUT_SIZE,
            windows=windows,
            threshold=threshold,
            max_batch_size=max_batch_size,
            platform=PLATFORM,
        )

    @classmethod
    def from_repository(
        cls, repository: Path, name: str = MODEL_NAME, *, intra_op_threads: int = 0
    ) -> OnnxSegmenter:
        """Open the network that ``export.packaging.repository.install_model`` installed."""
        model_dir = Path(repository) / name
        parameters = read_model_parameters(model_dir / "config.pbtxt")
        onnx_path = _latest_version_dir(model_dir) / "model.onnx"
        return cls(
            onnx_path,
            windows=parse_windows(parameters["windows"]),
            threshold=float(parameters["threshold"]),
            name=name,
            version=parameters.get("model_version", ""),
            intra_op_threads=intra_op_threads,
            max_batch_size=_max_batch_size(model_dir / "config.pbtxt"),
            bone_gate=BoneGate.parse(parameters.get("bone_gate", "")),
        )

    def logits(self, image: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        (logits,) = self._session.run([ONNX_OUTPUT], {ONNX_INPUT: image})
        return np.asarray(logits, dtype=np.float32)


def _open_session(onnx_path: Path, intra_op_threads: int) -> onnxruntime.InferenceSession:
    import onnxruntime  # heavy: imported only when a model is opened

    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {onnx_path}")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = intra_op_threads  # 0: one per core
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only; ORT's warnings repeat for every session
    return onnxruntime.InferenceSession(
        str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"]
    )


def _check_network(session: onnxruntime.InferenceSession, channels: int) -> None:
    inputs = {node.name: node.shape for node in session.get_inputs()}
    outputs = {node.name for node in session.get_outputs()}
    if ONNX_INPUT not in inputs or ONNX_OUTPUT not in outputs:
        raise ValueError(
            f"ONNX network must map {ONNX_INPUT!r} to {ONNX_OUTPUT!r}; "
            f"it has inputs {sorted(inputs)} and outputs {sorted(outputs)}"
        )
    declared = inputs[ONNX_INPUT][1] if len(inputs[ONNX_INPUT]) == 4 else None
    if isinstance(declared, int) and declared != channels:
        raise ValueError(f"network takes {declared} channels but {channels} windows are given")


# config.pbtxt is protobuf text; tritonclient ships its schema, so it is parsed exactly.
def _read_config(config_path: Path) -> object:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config = model_config_pb2.ModelConfig()
    text_format.Parse(config_path.read_text(encoding="utf-8"), config)
    return config


def read_model_parameters(config_path: Path) -> dict[str, str]:
    """The ``parameters`` map (key -> string_value) of a Triton ``config.pbtxt``."""
    config = _read_config(config_path)
    return {key: value.string_value for key, value in config.parameters.items()}  # type: ignore[attr-defined]


def _max_batch_size(config_path: Path) -> int:
    return int(_read_config(config_path).max_batch_size) or MAX_BATCH_SIZE  # type: ignore[attr-defined]


def _latest_version_dir(model_dir: Path) -> Path:
    versions = [p for p in model_dir.iterdir() if p.is_dir() and re.fullmatch(r"\d+", p.name)]
    if not versions:
        raise FileNotFoundError(f"no numbered version folder in {model_dir}")
    return max(versions, key=lambda p: int(p.name))
