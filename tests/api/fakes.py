"""Fakes at the model protocol seam, for API tests."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import numpy.typing as npt

from api.errors import InferenceUnavailable
from api.inference.contract import BONE_WINDOW, INPUT_SIZE, MAX_BATCH_SIZE, PROBABILITY_STRIDE
from api.inference.protocol import ModelInfo, Segmentation


class BrightBoneModel:
    """Calls every pixel at or above ``hu_threshold`` a lesion, with probability 1.

    Deterministic, so a test can compute the expected mask from the HU it uploaded.
    """

    def __init__(self, hu_threshold: int = 1400, delay_s: float = 0.0) -> None:
        self.hu_threshold = hu_threshold
        self.delay_s = delay_s
        self.calls = 0
        self.slices_seen = 0
        self.fail_next = 0

    async def info(self) -> ModelInfo:
        return ModelInfo("fake-bright-bone", "test-1", INPUT_SIZE, (BONE_WINDOW,), 0.5,
                         MAX_BATCH_SIZE, "fake")

    async def ready(self) -> bool:
        return True

    async def segment(self, hounsfield: npt.NDArray[np.int16]) -> Segmentation:
        self.calls += 1
        if self.fail_next > 0:
            self.fail_next -= 1
            raise InferenceUnavailable("fake model: unavailable on purpose")
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        self.slices_seen += len(hounsfield)
        mask = hounsfield >= self.hu_threshold
        n, rows, cols = mask.shape
        s = PROBABILITY_STRIDE
        pooled = mask.reshape(n, rows // s, s, cols // s, s).max(axis=(2, 4))
        return Segmentation(mask, (pooled * 255).astype(np.uint8))

    async def close(self) -> None:
        return None


class GatedModel(BrightBoneModel):
    """The bright-bone fake, holding every request until ``gate`` is set (it starts closed):
    a test queues what it needs while the first study waits at the model."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    async def segment(self, hounsfield: npt.NDArray[np.int16]) -> Segmentation:
        await asyncio.to_thread(self.gate.wait, 60)
        return await super().segment(hounsfield)


class DownModel(BrightBoneModel):
    """An inference server that never answers."""

    async def ready(self) -> bool:
        raise InferenceUnavailable("fake model: server down")

    async def info(self) -> ModelInfo:
        raise InferenceUnavailable("fake model: server down")

    async def segment(self, hounsfield: npt.NDArray[np.int16]) -> Segmentation:
        raise InferenceUnavailable("fake model: server down")
