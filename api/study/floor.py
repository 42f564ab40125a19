"""The reporting floor: lesions whose longest axial diameter is below it are not reported.

Decided per 3-D lesion once every slice is in, so a kept lesion keeps all its cross-sections,
its small end slices included; a hidden one leaves the result, the stored masks and what is
built from them (overlays, SEG, SR, FHIR). Why the default is what it is: docs/MODEL_CARD.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from api.lesions.components import PixelBox
from api.lesions.lesions3d import Lesion3D
from api.study.storage import StudyStore


@dataclass(frozen=True)
class FoundBox:
    """One 2D component on a slice, in the slice's own pixels (half-open box).

    ``pixels_mask``: the component's own pixels cropped to ``box``, kept only where the
    component is small enough that its lesion may fall under the floor (:func:`may_be_hidden`).
    """

    box: PixelBox
    pixels: int
    probability_max: float
    lesion_key: int  # the tracker's, see LesionTracker.lesion_id
    pixels_mask: npt.NDArray[np.bool_] | None = None


def may_be_hidden(box: PixelBox, spacing_mm: tuple[float, float], floor_mm: float) -> bool:
    """Whether a component in ``box`` (model grid) could belong to a lesion under the floor.

    A Feret diameter is at least the box's longer side between pixel centres, so a component
    whose box reaches the floor keeps its lesion, and its pixels need not be remembered.
    """
    height, width = box.shape
    return max((height - 1) * spacing_mm[0], (width - 1) * spacing_mm[1]) < floor_mm


def split_by_floor(lesions: list[Lesion3D], floor_mm: float) -> tuple[list[Lesion3D],
                                                                      list[Lesion3D]]:
    """(kept, hidden): kept are renumbered 1..n in their order; a floor of 0 hides none."""
    kept = [lesion for lesion in lesions if lesion.longest_diameter_mm >= floor_mm]
    hidden = [lesion for lesion in lesions if lesion.longest_diameter_mm < floor_mm]
    renumbered = [dataclasses.replace(lesion, id=number)
                  for number, lesion in enumerate(kept, start=1)]
    return renumbered, hidden


def erase_hidden(store: StudyStore, job_id: str, index: int, shape: tuple[int, int],
                 hidden: list[FoundBox]) -> None:
    """Take ``hidden`` components' pixels out of slice ``index``'s stored mask."""
    mask = store.read_mask(job_id, index, shape)
    for found in hidden:
        if found.pixels_mask is None:
            raise ValueError(f"slice {index}: a hidden component's pixels were not kept")
        mask[found.box.slices] &= ~found.pixels_mask
    if mask.any():
        store.write_mask(job_id, index, mask)
    else:
        store.delete_mask(job_id, index)
