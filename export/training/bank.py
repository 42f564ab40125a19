"""A bank of labelled slices at the model's size, held in memory for training and validation.

Generating a phantom volume costs seconds, a training step a fraction of one, so the slices
worth learning from are picked once per volume (every slice with metastasis up to a cap, a
few without) into a :class:`SliceBank`, and every batch is cut from the bank.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from export.sources.slices import LabelledVolume


@dataclass
class SliceBank:
    """Labelled slices at the model's size: int16 HU and uint8 labels (N, H, W)."""

    hounsfield: npt.NDArray[np.int16]
    labels: npt.NDArray[np.uint8]
    names: list[str]  # "<volume>:<slice index>" per slice, for logs and reports

    def __post_init__(self) -> None:
        if self.hounsfield.shape != self.labels.shape or self.hounsfield.ndim != 3:
            raise ValueError(
                f"hounsfield {self.hounsfield.shape} and labels {self.labels.shape} must be "
                "equal (N, H, W) shapes"
            )
        if len(self.names) != len(self.hounsfield):
            raise ValueError(f"{len(self.names)} names for {len(self.hounsfield)} slices")
        self.positive: npt.NDArray[np.bool_] = self.labels.any(axis=(1, 2))

    def __len__(self) -> int:
        return int(self.hounsfield.shape[0])

    @property
    def positive_count(self) -> int:
        """Slices that hold metastasis."""
        return int(self.positive.sum())

    @classmethod
    def concatenate(cls, parts: Iterable[SliceBank]) -> SliceBank:
        """One bank holding every slice of ``parts`` in order."""
        parts = [part for part in parts if len(part)]
        if not parts:
            raise ValueError("no slices to put in the bank")
        return cls(
            np.concatenate([p.hounsfield for p in parts]),
            np.concatenate([p.labels for p in parts]),
            [name for p in parts for name in p.names],
        )


def select_slices(
    labels: npt.NDArray[np.uint8],
    rng: np.random.Generator,
    max_positive: int,
    max_negative: int,
) -> npt.NDArray[np.intp]:
    """Sorted slice indices: up to ``max_positive`` with metastasis, ``max_negative`` without."""
    positive = labels.reshape(len(labels), -1).any(1)
    chosen = []
    for pool, cap in (
        (np.flatnonzero(positive), max_positive),
        (np.flatnonzero(~positive), max_negative),
    ):
        take = min(cap, len(pool))
        if take > 0:
            chosen.append(rng.choice(pool, size=take, replace=False))
    if not chosen:
        return np.empty(0, dtype=np.intp)
    return np.sort(np.concatenate(chosen)).astype(np.intp)


def bank_from_volume(
    volume: LabelledVolume, rng: np.random.Generator, max_positive: int, max_negative: int
) -> SliceBank:
    """The selected slices of one volume as a bank."""
    index = select_slices(volume.labels, rng, max_positive, max_negative)
    return SliceBank(
        np.ascontiguousarray(volume.hounsfield[index]),
        np.ascontiguousarray(volume.labels[index]),
        [f"{volume.name}:{int(i)}" for i in index],
    )
