"""Training batches cut from a :class:`~export.training.bank.SliceBank`: balanced
sampling and bone-biased crops.

A batch holds ``positive_fraction`` crops around a lesion and the rest from slices without
one; the reference study had 5,991 slices with metastases against 88,799 without, so
unbalanced sampling would teach "never".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from api.inference.contract import Window
from export.model.planes import plane_channels
from export.training.augment import AugmentConfig, augmented_crop
from export.training.bank import SliceBank

if TYPE_CHECKING:
    from export.training.hard_negatives import HardNegatives

BONE_HU = 200  # crops "on bone" are centred on a pixel at least this dense


class BalancedSampler:
    """Draws slice indices so that a ``positive_fraction`` share hold metastasis."""

    def __init__(self, positive: npt.NDArray[np.bool_], positive_fraction: float):
        if not 0 <= positive_fraction <= 1:
            raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
        self.positive_pool = np.flatnonzero(positive)
        self.negative_pool = np.flatnonzero(~positive)
        if positive_fraction > 0 and not len(self.positive_pool):
            raise ValueError("positive_fraction > 0 but the bank holds no slice with metastasis")
        if positive_fraction < 1 and not len(self.negative_pool):
            raise ValueError("positive_fraction < 1 but the bank holds no slice without one")
        self.positive_fraction = positive_fraction

    def draw(
        self, count: int, rng: np.random.Generator
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
        """``count`` slice indices and whether each was drawn as a positive.

        The number of positives is exact in expectation and stochastic per batch (binomial),
        so small batches still see every mix rather than a fixed split.
        """
        is_positive = rng.random(count) < self.positive_fraction
        index = np.empty(count, dtype=np.intp)
        n_positive = int(is_positive.sum())
        if n_positive:
            index[is_positive] = rng.choice(self.positive_pool, size=n_positive)
        if count - n_positive:
            index[~is_positive] = rng.choice(self.negative_pool, size=count - n_positive)
        return index, is_positive


def lesion_center(labels: npt.NDArray[np.uint8], rng: np.random.Generator) -> tuple[float, float]:
    """A pixel of a lesion, the lesion chosen uniformly so small ones weigh as much as big."""
    components, count = ndimage.label(labels > 0)
    if count == 0:
        raise ValueError("slice holds no lesion")
    pixels = np.flatnonzero(components == rng.integers(1, count + 1))
    row, column = np.unravel_index(rng.choice(pixels), labels.shape)
    return float(row), float(column)


def background_center(
    hounsfield: npt.NDArray[np.int16],
    rng: np.random.Generator,
    bone_bias: float,
    bone_hu: int = BONE_HU,
) -> tuple[float, float]:
    """A crop centre on bone (>= ``bone_hu``) with probability ``bone_bias``, else anywhere.

    A high ``bone_hu`` (cortex, ~600) puts ribs and vertebral cortex in the crops, where a
    normal bright rim is easily mistaken for a sclerotic (blastic) lesion.
    """
    if rng.random() < bone_bias:
        bone = np.flatnonzero(hounsfield >= bone_hu)
        if len(bone):
            row, column = np.unravel_index(rng.choice(bone), hounsfield.shape)
            return float(row), float(column)
    rows, columns = hounsfield.shape
    return float(rng.uniform(0, rows - 1)), float(rng.uniform(0, columns - 1))


def crop_center(
    bank: SliceBank,
    index: int,
    on_lesion: bool,
    rng: np.random.Generator,
    crop: int,
    bone_bias: float,
    jitter: float,
    bone_hu: int = BONE_HU,
) -> tuple[float, float]:
    """Where to centre a crop of slice ``index``: near a lesion, or bone-biased background.

    The jitter (a fraction of the crop) moves the lesion off the crop centre, so the network
    cannot learn "the middle is the answer".
    """
    if on_lesion:
        row, column = lesion_center(bank.labels[index], rng)
        shift = rng.uniform(-jitter * crop, jitter * crop, size=2)
        return row + float(shift[0]), column + float(shift[1])
    return background_center(bank.hounsfield[index], rng, bone_bias, bone_hu)


@dataclass(frozen=True)
class BatchSpec:
    """How a training batch is cut from the bank."""

    batch_size: int = 8
    crop: int = 256
    positive_fraction: float = 0.5
    bone_bias: float = 0.7
    jitter: float = 0.3
    bone_hu: int = BONE_HU  # what counts as bone for the bone-biased background crops
    # Share of background crops centred on a mined false positive, once any are mined
    # (export.training.hard_negatives); their jitter is a third of the lesion crops' jitter.
    hard_negative_fraction: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.hard_negative_fraction <= 1:
            raise ValueError(
                f"hard_negative_fraction must be in [0, 1], got {self.hard_negative_fraction}"
            )


def training_batch(
    bank: SliceBank,
    sampler: BalancedSampler,
    rng: np.random.Generator,
    spec: BatchSpec,
    augment: AugmentConfig,
    windows: tuple[Window, ...],
    hard: HardNegatives | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Windowed images (B, K x windows, crop, crop) and float labels (B, 1, crop, crop).

    The window is :func:`api.inference.processing.window_channels`, the very function the
    served model applies, on int16 HU as served, on each of the bank's K planes
    (:func:`export.model.planes.plane_channels`). With ``hard`` mined false positives, a
    ``spec.hard_negative_fraction`` share of the background crops is centred on them (their
    label is the bank's, so a mined point beside a lesion still shows the lesion).
    """
    index, on_lesion = sampler.draw(spec.batch_size, rng)
    planes = bank.planes.shape[1]
    hounsfield = np.empty((spec.batch_size, planes, spec.crop, spec.crop), dtype=np.int16)
    labels = np.empty((spec.batch_size, 1, spec.crop, spec.crop), dtype=np.float32)
    use_hard = hard is not None and len(hard) > 0 and spec.hard_negative_fraction > 0
    for k, (i, lesion) in enumerate(zip(index, on_lesion, strict=True)):
        if use_hard and not lesion and rng.random() < spec.hard_negative_fraction:
            assert hard is not None
            i, row, column = hard.draw(rng)
            shift = rng.uniform(-spec.jitter / 3 * spec.crop, spec.jitter / 3 * spec.crop, 2)
            center = (row + float(shift[0]), column + float(shift[1]))
        else:
            center = crop_center(
                bank, int(i), bool(lesion), rng, spec.crop, spec.bone_bias, spec.jitter,
                spec.bone_hu,
            )
        hounsfield[k], label = augmented_crop(
            bank.planes[i], bank.labels[i], center, spec.crop, rng, augment
        )
        labels[k, 0] = label > 0
    return plane_channels(hounsfield, windows), labels
