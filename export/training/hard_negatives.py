"""Hard-negative mining: crops centred on the network's own false positives.

Random background crops rarely land where a segmentation network goes wrong (normal rib and
vertebral cortex mistaken for a sclerotic lesion, a vessel beside a vertebra taken for a
lytic one), so the loss hardly ever sees those places. Every few hundred steps the network
segments a random sample of whole bank slices; the peak of each component it marks outside
the reference (and beyond a margin around it) becomes a mined point, and a share of the
next background crops is centred on those points.

Mining depends on the model at the step it runs. A run resumed from a checkpoint mines again
at once, so it reproduces the uninterrupted run exactly when the checkpoint's step is a
multiple of ``mining.every`` past ``mining.start`` (periodic checkpoints are, when
``checkpoint_every`` is such a multiple).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from api.inference.contract import Window
from api.lesions.components import structure
from export.training.bank import SliceBank
from export.training.prediction import predict_logits

if TYPE_CHECKING:
    from torch import nn

__all__ = ["MINING_CHUNK", "HardNegatives", "MiningConfig", "mine_false_positives"]

MINING_CHUNK = 32  # slices segmented at once (bounds the logits held in memory)
_EIGHT_CONNECTED = structure(8)  # diagonal steps count as one pixel


@dataclass(frozen=True)
class MiningConfig:
    """When and how widely to mine (``every`` 0: never)."""

    every: int = 0  # steps between mining rounds
    start: int = 0  # first step that mines (the network must first find lesions at all)
    slices: int = 256  # bank slices segmented per round
    margin_px: int = 4  # a marked component this close to the reference is not false
    per_slice: int = 8  # most confident false components kept per slice

    def __post_init__(self) -> None:
        if self.every < 0 or self.start < 0 or self.slices < 1:
            raise ValueError("mining every/start must be >= 0 and slices >= 1")
        if self.margin_px < 0 or self.per_slice < 1:
            raise ValueError("mining margin_px must be >= 0 and per_slice >= 1")

    def due(self, step: int, mined: bool) -> bool:
        """Whether the loop mines before ``step``: on schedule, or at once when none are held."""
        if self.every == 0 or step < self.start:
            return False
        return not mined or (step - self.start) % self.every == 0


@dataclass(frozen=True)
class HardNegatives:
    """Mined false-positive points: rows of (bank slice index, row, column)."""

    points: npt.NDArray[np.intp]
    step: int  # the training step whose model found them
    slices_searched: int

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def draw(self, rng: np.random.Generator) -> tuple[int, float, float]:
        """One mined point, uniformly: (slice index, row, column)."""
        if not len(self):
            raise ValueError("no mined false positives to draw from")
        index, row, column = self.points[int(rng.integers(len(self)))]
        return int(index), float(row), float(column)


def mine_false_positives(
    model: nn.Module,
    bank: SliceBank,
    windows: tuple[Window, ...],
    rng: np.random.Generator,
    config: MiningConfig,
    step: int,
    precision: str = "fp32",
) -> HardNegatives:
    """Segment ``config.slices`` random bank slices; return their false components' peaks.

    A component is false when none of it lies within ``config.margin_px`` of the reference
    (an overgrown true lesion is not a false positive worth a crop). At most
    ``config.per_slice`` of the most confident false components are kept per slice, so one
    bad slice cannot fill the list.
    """
    margin_px, per_slice = config.margin_px, config.per_slice
    chosen = np.sort(rng.choice(len(bank), size=min(config.slices, len(bank)), replace=False))
    points: list[tuple[int, int, int]] = []
    for start in range(0, len(chosen), MINING_CHUNK):
        part = chosen[start : start + MINING_CHUNK]
        logits = predict_logits(model, bank.planes[part], windows, precision)[:, 0]
        for index, logit in zip(part, logits, strict=True):
            points.extend(
                (int(index), row, column)
                for row, column in _false_peaks(logit, bank.labels[index] > 0, margin_px, per_slice)
            )
    array = np.asarray(points, dtype=np.intp).reshape(-1, 3)
    return HardNegatives(array, step=step, slices_searched=len(chosen))


def _false_peaks(
    logit: npt.NDArray[np.float32],
    truth: npt.NDArray[np.bool_],
    margin_px: int,
    per_slice: int,
) -> list[tuple[int, int]]:
    """(row, column) of the strongest pixel of each false component, most confident first."""
    marked = logit > 0.0
    if not marked.any():
        return []
    if truth.any() and margin_px > 0:
        near = ndimage.binary_dilation(truth, structure=_EIGHT_CONNECTED, iterations=margin_px)
    else:
        near = truth
    components, count = ndimage.label(marked, structure=_EIGHT_CONNECTED)
    touching = np.unique(components[near & marked])
    false_ids = np.setdiff1d(np.arange(1, count + 1), touching)
    if not len(false_ids):
        return []
    peaks = ndimage.maximum_position(logit, components, false_ids)
    strength = ndimage.maximum(logit, components, false_ids)
    order = np.argsort(-np.asarray(strength, dtype=np.float64), kind="stable")[:per_slice]
    return [(int(peaks[k][0]), int(peaks[k][1])) for k in order]
