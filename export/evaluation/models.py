"""The three kinds of model ``bonemets evaluate`` takes, all behind the SegmentationModel seam.

* a PyTorch checkpoint (``*.pt``): :class:`TorchSegmenter` runs the network with the same
  :func:`~api.inference.processing.window_channels` and
  :func:`~api.inference.processing.postprocess` as the served model, so its answers have
  the same types and the same thresholding rule;
* an ONNX model: a Triton model repository folder, one model's folder in it, or a
  ``model.onnx`` file, run in process by :class:`~api.inference.onnx_local.OnnxSegmenter`;
* a Triton URL ``grpc://host:port/model``: the deployed model through
  :class:`~api.inference.triton.TritonSegmenter`.
"""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt

from api.inference.contract import (
    BONE_WINDOW,
    DEFAULT_THRESHOLD,
    INPUT_SIZE,
    MAX_BATCH_SIZE,
    MODEL_NAME,
    Window,
    parse_windows,
)
from api.inference.onnx_local import LocalSegmenter
from api.inference.protocol import ModelInfo, SegmentationModel

if TYPE_CHECKING:
    from export.model.checkpoint import Checkpoint

__all__ = [
    "ModelKind",
    "ModelSource",
    "TorchSegmenter",
    "open_model",
    "parse_model_source",
]

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".pt", ".pth")
TRITON_SCHEME = "grpc"


class ModelKind(enum.Enum):
    """Where the model's answers come from."""

    CHECKPOINT = "checkpoint"
    ONNX = "onnx"
    TRITON = "triton"


@dataclass(frozen=True)
class ModelSource:
    """A parsed MODEL argument: a checkpoint or ONNX path, or a Triton address and model name."""

    kind: ModelKind
    path: Path | None = None
    address: str | None = None  # Triton gRPC host:port
    model_name: str = MODEL_NAME

    def __str__(self) -> str:
        if self.kind is ModelKind.TRITON:
            return f"{TRITON_SCHEME}://{self.address}/{self.model_name}"
        return str(self.path)


def parse_model_source(spec: str) -> ModelSource:
    """Recognise a MODEL argument: ``*.pt``, an ONNX file or folder, or ``grpc://host:port/model``."""
    if "://" in spec:
        return _parse_triton_url(spec)
    path = Path(spec)
    if path.suffix.lower() in CHECKPOINT_SUFFIXES:
        return ModelSource(ModelKind.CHECKPOINT, path=path)
    if path.suffix.lower() == ".onnx" or path.is_dir():
        return ModelSource(ModelKind.ONNX, path=path)
    raise ValueError(
        f"cannot tell what model {spec!r} is: expected a checkpoint (*.pt), an ONNX model "
        "(model.onnx or a model repository folder) or a Triton URL grpc://host:port/model"
    )


def _parse_triton_url(spec: str) -> ModelSource:
    parts = urlsplit(spec)
    if parts.scheme != TRITON_SCHEME:
        raise ValueError(f"Triton URL must start with {TRITON_SCHEME}://, got {spec!r}")
    if not parts.hostname or parts.port is None:
        raise ValueError(f"Triton URL needs a host and a port (grpc://host:port/model): {spec!r}")
    name = parts.path.strip("/") or MODEL_NAME
    if "/" in name:
        raise ValueError(f"Triton URL path must be one model name, got {parts.path!r}")
    return ModelSource(ModelKind.TRITON, address=parts.netloc, model_name=name)


def open_model(
    source: ModelSource,
    *,
    threshold: float | None = None,
    windows: tuple[Window, ...] | None = None,
    timeout_s: float = 120.0,
) -> SegmentationModel:
    """Open ``source`` as a SegmentationModel; ``threshold``/``windows`` override the model's."""
    if source.kind is ModelKind.CHECKPOINT:
        assert source.path is not None
        return TorchSegmenter.from_checkpoint(source.path, threshold=threshold, windows=windows)
    if source.kind is ModelKind.ONNX:
        assert source.path is not None
        return _open_onnx(source.path, threshold=threshold, windows=windows)
    if windows is not None:
        raise ValueError("a model served by Triton has its own windows; --windows cannot change")
    from api.inference.triton import TritonSegmenter

    assert source.address is not None
    return TritonSegmenter(source.address, source.model_name, timeout_s=timeout_s)


async def check_threshold(model: SegmentationModel, threshold: float | None) -> ModelInfo:
    """The model's info; a Triton model cannot take another threshold, so that is refused."""
    info = await model.info()
    if threshold is not None and not np.isclose(info.threshold, threshold):
        raise ValueError(
            f"the model thresholds at {info.threshold:g} and cannot be asked for {threshold:g} "
            "(a served model's threshold is part of its configuration)"
        )
    return info


class TorchSegmenter(LocalSegmenter):
    """A PyTorch checkpoint on the CPU (or ``device``), windowed and post-processed as served."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        *,
        threshold: float | None = None,
        windows: tuple[Window, ...] | None = None,
        device: str = "cpu",
        max_batch_size: int = MAX_BATCH_SIZE,
    ) -> None:
        self._network = checkpoint.model.to(device).eval()
        self._device = device
        self._windows = windows or checkpoint.windows
        if len(self._windows) != checkpoint.config.in_channels:
            raise ValueError(
                f"{len(self._windows)} window(s) for a network with "
                f"{checkpoint.config.in_channels} input channel(s)"
            )
        self._threshold = checkpoint.threshold if threshold is None else threshold
        self._bone_gate = checkpoint.bone_gate
        self._info = ModelInfo(
            name=MODEL_NAME,
            version=checkpoint.version,
            input_size=INPUT_SIZE,
            windows=self._windows,
            threshold=self._threshold,
            max_batch_size=max_batch_size,
            platform=f"pytorch-{device}",
        )

    @classmethod
    def from_checkpoint(
        cls,
        path: Path,
        *,
        threshold: float | None = None,
        windows: tuple[Window, ...] | None = None,
    ) -> TorchSegmenter:
        """Load ``path`` (written by ``export.model.checkpoint.save_checkpoint``)."""
        from export.model.checkpoint import load_checkpoint

        return cls(load_checkpoint(path), threshold=threshold, windows=windows)

    def logits(self, image: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        import torch

        with torch.inference_mode():
            logits = self._network(torch.from_numpy(image).to(self._device))
        return logits.detach().to("cpu", torch.float32).numpy()  # type: ignore[no-any-return]


def _open_onnx(
    path: Path, *, threshold: float | None, windows: tuple[Window, ...] | None
) -> SegmentationModel:
    """An OnnxSegmenter from a repository, a model folder in one, or a bare model.onnx."""
    from api.inference.bone_gate import BoneGate
    from api.inference.onnx_local import OnnxSegmenter, read_model_parameters

    onnx_path, config_path, name = _locate_onnx(path)
    parameters = read_model_parameters(config_path) if config_path else {}
    if windows is None:
        if "windows" in parameters:
            windows = parse_windows(parameters["windows"])
        else:
            log.warning("%s has no config.pbtxt: using the bone window %s", onnx_path, BONE_WINDOW)
            windows = (BONE_WINDOW,)
    if threshold is None:
        threshold = float(parameters.get("threshold", DEFAULT_THRESHOLD))
    return OnnxSegmenter(
        onnx_path,
        windows=windows,
        threshold=threshold,
        name=name,
        version=parameters.get("model_version", ""),
        bone_gate=BoneGate.parse(parameters.get("bone_gate", "")),
    )


def _locate_onnx(path: Path) -> tuple[Path, Path | None, str]:
    """(model.onnx, its config.pbtxt or None, model name) for any of the accepted layouts."""
    if path.is_file():
        # <repository>/<model>/<version>/model.onnx keeps its config two levels up.
        config = path.parent.parent / "config.pbtxt"
        if config.is_file():
            return path, config, path.parent.parent.name
        return path, None, MODEL_NAME
    if not path.is_dir():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    model_dir = path / MODEL_NAME if (path / MODEL_NAME / "config.pbtxt").is_file() else path
    config = model_dir / "config.pbtxt"
    if not config.is_file():
        raise FileNotFoundError(
            f"{path} is neither a model repository (with {MODEL_NAME}/config.pbtxt) "
            "nor a model folder (with config.pbtxt)"
        )
    versions = [p for p in model_dir.iterdir() if p.is_dir() and re.fullmatch(r"\d+", p.name)]
    if not versions:
        raise FileNotFoundError(f"no numbered version folder in {model_dir}")
    onnx_path = max(versions, key=lambda p: int(p.name)) / "model.onnx"
    return onnx_path, config, model_dir.name
