"""The model seam: what the pipeline needs from a segmentation model, and nothing more.

Two implementations: :class:`api.inference.triton.TritonSegmenter` (the service's way, over
gRPC) and :class:`api.inference.onnx_local.OnnxSegmenter` (in process, for tools and tests).
API tests inject fakes here; nothing patches internals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from api.inference.contract import Window


@dataclass(frozen=True)
class ModelInfo:
    """What a served model says of itself (from its Triton config parameters)."""

    name: str
    version: str
    input_size: int
    windows: tuple[Window, ...]
    threshold: float
    max_batch_size: int
    platform: str


@dataclass(frozen=True)
class Segmentation:
    """A batch of model answers.

    ``mask``: bool (N, H, W) at the model's input size.
    ``probability``: uint8 (N, H/4, W/4), sigmoid x 255 max-pooled over 4x4 blocks.
    """

    mask: npt.NDArray[np.bool_]
    probability: npt.NDArray[np.uint8]


class SegmentationModel(Protocol):
    async def info(self) -> ModelInfo:
        """The model's name, version, window and threshold."""
        ...

    async def ready(self) -> bool:
        """True when the model can take requests now."""
        ...

    async def segment(self, hounsfield: npt.NDArray[np.int16]) -> Segmentation:
        """Segment a batch of int16 HU slices, shape (N, size, size), N <= max_batch_size."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
