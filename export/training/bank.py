"""A bank of labelled slices at the model's size, held in memory for training and validation.

Generating a phantom volume costs seconds, a training step a fraction of one, so the slices
worth learning from are picked once per volume (every slice with metastasis up to a cap, a
few without) into a :class:`SliceBank`, and every batch is cut from the bank. For a model
with slice context each slice comes with its neighbour planes, blended as serving blends
them; a bank of ``K`` planes takes ``K`` times the HU bytes of a 2D one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from export.model.planes import as_planes
from export.sources.planes import volume_planes
from export.sources.slices import LabelledVolume


@dataclass
class SliceBank:
    """Labelled slices at the model's size: int16 HU planes (N, K, H, W) and uint8 labels
    (N, H, W).

    ``K`` is the planes a model with slice context sees per slice (1 for a 2D model; the
    labelled slice is plane ``K // 2``, :func:`export.sources.planes.volume_planes`).
    Slices (N, H, W) given for ``planes`` are taken as one plane each.
    """

    planes: npt.NDArray[np.int16]
    labels: npt.NDArray[np.uint8]
    names: list[str]  # "<volume>:<slice index>" per slice, for logs and reports

    def __post_init__(self) -> None:
        self.planes = as_planes(self.planes)
        if self.planes.shape[2:] != self.labels.shape[1:] or self.labels.ndim != 3 or len(
            self.planes
        ) != len(self.labels) or self.planes.shape[1] % 2 == 0:
            raise ValueError(
                f"planes {self.planes.shape} must be (N, K odd, H, W) for labels "
                f"{self.labels.shape} (N, H, W)"
            )
        if len(self.names) != len(self.planes):
            raise ValueError(f"{len(self.names)} names for {len(self.planes)} slices")
        self.positive: npt.NDArray[np.bool_] = self.labels.any(axis=(1, 2))

    def __len__(self) -> int:
        return int(self.planes.shape[0])

    @property
    def hounsfield(self) -> npt.NDArray[np.int16]:
        """The labelled slices themselves (N, H, W): each slice's centre plane (a view)."""
        return self.planes[:, self.planes.shape[1] // 2]

    @property
    def positive_count(self) -> int:
        """Slices that hold metastasis."""
        return int(self.positive.sum())

    @classmethod
    def concatenate(cls, parts: Iterable[SliceBank]) -> SliceBank:
        """One bank holding every slice of ``parts`` in order.

        A list is emptied as its parts are copied, so each part is freed once it is in
        the bank: memory holds about one bank, not the parts and the bank at once (twice
        the bank, most of a demo run's peak). The bank's pages are only taken as filled.
        """
        queue = parts if isinstance(parts, list) else list(parts)
        queue.reverse()  # popped from the end: first part first
        kept = [part for part in queue if len(part)]
        if not kept:
            raise ValueError("no slices to put in the bank")
        count = sum(len(part) for part in kept)
        planes = np.empty((count, *kept[0].planes.shape[1:]), dtype=np.int16)
        labels = np.empty((count, *kept[0].labels.shape[1:]), dtype=np.uint8)
        names: list[str] = []
        del kept
        while queue:
            part = queue.pop()
            planes[len(names) : len(names) + len(part)] = part.planes
            labels[len(names) : len(names) + len(part)] = part.labels
            names.extend(part.names)
            del part
        return cls(planes, labels, names)


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
    volume: LabelledVolume,
    rng: np.random.Generator,
    max_positive: int,
    max_negative: int,
    context: int = 0,
    spacing_mm: float = 2.5,
) -> SliceBank:
    """The selected slices of one volume as a bank, each with its ``2 x context + 1`` planes
    ``spacing_mm`` apart (the slice alone for ``context`` 0)."""
    index = select_slices(volume.labels, rng, max_positive, max_negative)
    return SliceBank(
        volume_planes(volume, index, context, spacing_mm),
        np.ascontiguousarray(volume.labels[index]),
        [f"{volume.name}:{int(i)}" for i in index],
    )
