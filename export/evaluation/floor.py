"""The gateway's reporting floor applied to one study's model answers before they are counted.

The gateway (:mod:`api.study.floor`) hides a lesion whose longest axial diameter is below the
floor; lesions and diameters come from its :class:`api.lesions.lesions3d.LesionTracker` on
the model grid. Here the same tracker sees the same components, and the components of hidden
lesions are taken out of the model's masks, so the counts are of what the gateway reports.
Memory, one study at a time: the packed masks of the slices with findings, and every slice's
probability map (16 KiB at 4 x 4 blocks), which the counting also reads for missed lesions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from api.dicom.geometry import PlaneGeometry, ResizeMapping
from api.inference.protocol import Segmentation
from api.lesions.components import Component2D, components_2d
from api.lesions.lesions3d import LesionTracker


@dataclass
class _Found:
    """One slice with findings: its packed model-grid mask and components."""

    packed: npt.NDArray[np.uint8]
    components: list[Component2D]
    keys: list[int]


class StudyFloor:
    """Collects one study's answers slice by slice; :meth:`finish`, then :meth:`answer`."""

    def __init__(self, floor_mm: float, pixel_spacing_mm: tuple[float, float]) -> None:
        if floor_mm < 0:
            raise ValueError(f"the reporting floor must be >= 0 mm, got {floor_mm}")
        self.floor_mm = floor_mm
        self.pixel_spacing_mm = pixel_spacing_mm
        # Volumes are not needed here, only diameters: the fallback thickness is never read.
        self._tracker = LesionTracker(slice_spacing_mm=1.0)
        self._found: dict[int, _Found] = {}
        self._probability: dict[int, npt.NDArray[np.uint8]] = {}
        self._size = 0
        self.hidden_lesions = 0

    def add(self, index: int, mask: npt.NDArray[np.bool_], probability: npt.NDArray[np.uint8],
            mapping: ResizeMapping) -> None:
        """Slice ``index``'s model answer (model grid), in slice order."""
        self._size = mapping.size
        components = components_2d(mask, probability) if mask.any() else []
        rows, columns = mapping.original_shape
        geometry = PlaneGeometry((0.0, 0.0, float(index)), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0),
                                 self.pixel_spacing_mm, rows, columns)
        keys = self._tracker.add_slice(index, components, geometry, mapping,
                                       position_mm=float(index))
        self._probability[index] = probability.copy()
        if components:
            self._found[index] = _Found(np.packbits(mask), components, keys)

    def finish(self) -> None:
        """Decide every lesion and take hidden ones out of the kept answers."""
        lesions = self._tracker.finish()
        hidden = {lesion.id for lesion in lesions if lesion.longest_diameter_mm < self.floor_mm}
        self.hidden_lesions = len(hidden)
        for found in self._found.values():
            gone = [part for part, key in zip(found.components, found.keys, strict=True)
                    if self._tracker.lesion_id(key) in hidden]
            if not gone:
                continue
            mask = self._mask(found)
            for part in gone:
                mask[part.box.slices] &= ~part.mask
            found.packed = np.packbits(mask)

    def answer(self, start: int, count: int) -> Segmentation:
        """The floored answer for slices ``start..start+count-1``."""
        mask = np.zeros((count, self._size, self._size), dtype=np.bool_)
        for offset in range(count):
            found = self._found.get(start + offset)
            if found is not None:
                mask[offset] = self._mask(found)
        probability = np.stack([self._probability[start + k] for k in range(count)])
        return Segmentation(mask, probability)

    def _mask(self, found: _Found) -> npt.NDArray[np.bool_]:
        bits = np.unpackbits(found.packed, count=self._size * self._size)
        return bits.reshape(self._size, self._size).astype(np.bool_)
