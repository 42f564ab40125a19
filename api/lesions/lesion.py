"""A 3-D lesion: its record, and the running sums that build it one slice at a time.

Boxes are half-open, in the stored slice's pixels; slice indices are the caller's;
``centre_mm`` is in the patient frame (PS3.3 C.7.6.2, LPS, mm). How slices are linked into
lesions is :mod:`api.lesions.lesions3d`'s business.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from api.dicom.geometry import PlaneGeometry, ResizeMapping, Vector
from api.lesions.components import Component2D, HalfOpenBox, PixelBox
from api.lesions.measures import feret_diameter_mm, model_pixel_spacing
from api.lesions.site import BoneSite, site_in_box


@dataclass(frozen=True)
class SliceBox:
    """A lesion's extent on one slice: the union box of its components there."""

    index: int
    box: PixelBox  # original-slice pixels, half-open
    voxels: int  # model-grid pixels of the lesion on this slice
    max_probability: float  # in [0, 1]


@dataclass(frozen=True)
class Box3D(HalfOpenBox):
    """Half-open box in original pixels and slice indices."""

    row0: int
    col0: int
    slice0: int
    row1: int
    col1: int
    slice1: int  # last slice index + 1

    @property
    def slice_max(self) -> int:
        """Last slice index inside (inclusive)."""
        return self.slice1 - 1


@dataclass(frozen=True)
class Lesion3D:
    """One 3-D lesion and its measurements."""

    id: int  # 1..n by first slice, then row0, then col0 of the box on that slice
    first_slice: int  # inclusive
    last_slice: int  # inclusive
    box: Box3D
    slice_boxes: tuple[SliceBox, ...]  # ascending index
    centre_mm: Vector  # voxel-weighted centroid, patient frame
    volume_ml: float
    longest_diameter_mm: float  # largest in-plane Feret diameter over its cross-sections
    max_probability: float
    mean_probability: float  # voxel-weighted
    voxel_count: int
    site: BoneSite = BoneSite.UNKNOWN  # set once the lesion is whole: see site_in_box

    @property
    def largest_cross_section(self) -> SliceBox:
        """The slice box with the most voxels (the first of equals): where its site is read."""
        return max(self.slice_boxes, key=lambda box: box.voxels)


def _merged(mine: SliceBox | None, other: SliceBox) -> SliceBox:
    """Two parts of one lesion on one slice as one."""
    if mine is None:
        return other
    return SliceBox(
        mine.index,
        mine.box.union(other.box),
        mine.voxels + other.voxels,
        max(mine.max_probability, other.max_probability),
    )


@dataclass
class GrowingLesion:
    """A lesion under construction: running sums only, no masks."""

    key: int  # creation order, the last tie-break of ids
    first: int
    last: int
    slice_boxes: dict[int, SliceBox] = field(default_factory=dict)
    voxels: int = 0
    point_sum: NDArray[np.float64] = field(default_factory=lambda: np.zeros(3))
    probability_sum: float = 0.0
    probability_max: float = 0.0
    diameter_mm: float = 0.0
    volume_mm3: float = 0.0
    pending_mm2: float = 0.0  # area on slice ``last``, whose thickness is not known yet

    def absorb(self, other: GrowingLesion) -> None:
        """Take in a lesion that turned out to be part of this one."""
        self.first = min(self.first, other.first)
        self.last = max(self.last, other.last)
        for index, box in other.slice_boxes.items():
            self.slice_boxes[index] = _merged(self.slice_boxes.get(index), box)
        self.voxels += other.voxels
        self.point_sum += other.point_sum
        self.probability_sum += other.probability_sum
        self.probability_max = max(self.probability_max, other.probability_max)
        self.diameter_mm = max(self.diameter_mm, other.diameter_mm)
        self.volume_mm3 += other.volume_mm3
        self.pending_mm2 += other.pending_mm2

    def add(
        self, index: int, part: Component2D, geometry: PlaneGeometry, mapping: ResizeMapping
    ) -> None:
        """Add one component on slice ``index`` (the newest slice)."""
        spacing = model_pixel_spacing(geometry, mapping)
        box = SliceBox(index, part.box.to_original(mapping), part.pixel_count, part.max_probability)
        self.slice_boxes[index] = _merged(self.slice_boxes.get(index), box)
        self.last = index
        self.voxels += part.pixel_count
        self.pending_mm2 += part.pixel_count * spacing[0] * spacing[1]
        # patient_point is affine in (row, column): the mean of points is the point of the mean.
        row, column = mapping.to_original(*part.centroid)
        self.point_sum += part.pixel_count * np.asarray(geometry.patient_point(row, column))
        self.probability_sum += part.pixel_count * part.mean_probability
        self.probability_max = max(self.probability_max, part.max_probability)
        self.diameter_mm = max(self.diameter_mm, feret_diameter_mm(part.mask, spacing))

    def settle(self, thickness_mm: float) -> None:
        """Turn the newest slice's area into volume once its thickness is known."""
        self.volume_mm3 += self.pending_mm2 * thickness_mm
        self.pending_mm2 = 0.0

    def order(self) -> tuple[int, int, int, int]:
        """How ids are given: first slice, then row0 and col0 of its box there, then age."""
        first_box = self.slice_boxes[self.first].box
        return self.first, first_box.row0, first_box.col0, self.key

    def freeze(self, lesion_id: int) -> Lesion3D:
        """The finished lesion, numbered ``lesion_id``."""
        boxes = tuple(self.slice_boxes[i] for i in sorted(self.slice_boxes))
        centre = self.point_sum / self.voxels
        return Lesion3D(
            id=lesion_id,
            first_slice=self.first,
            last_slice=self.last,
            box=Box3D(
                row0=min(b.box.row0 for b in boxes),
                col0=min(b.box.col0 for b in boxes),
                slice0=self.first,
                row1=max(b.box.row1 for b in boxes),
                col1=max(b.box.col1 for b in boxes),
                slice1=self.last + 1,
            ),
            slice_boxes=boxes,
            centre_mm=(float(centre[0]), float(centre[1]), float(centre[2])),
            volume_ml=self.volume_mm3 / 1000.0,
            longest_diameter_mm=self.diameter_mm,
            max_probability=self.probability_max,
            mean_probability=self.probability_sum / self.voxels,
            voxel_count=self.voxels,
        )


def with_site(lesion: Lesion3D,
              slice_at: Callable[[int], tuple[NDArray[np.int16], tuple[float, float]]]
              ) -> Lesion3D:
    """``lesion`` with its :class:`BoneSite`, read on its largest cross-section.

    ``slice_at(index)`` gives that slice's HU in the stored slice's pixels (the grid of the
    lesion's boxes) and its (row, column) pixel spacing in mm; it is called once.
    """
    largest = lesion.largest_cross_section
    hounsfield, spacing = slice_at(largest.index)
    return replace(lesion, site=site_in_box(hounsfield, largest.box, spacing))
