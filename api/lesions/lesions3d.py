"""3-D lesions built slice by slice from 2-D components, holding one slice of masks at a time.

Rules (see also :mod:`api.lesions.linking`):

- Slices come in ascending position along the normal, one :meth:`LesionTracker.add_slice` call
  each, empty ones included (``components=[]``). Indices must ascend; a gap (index not the
  previous one + 1) ends every open lesion.
- A component joins an open lesion when it shares at least one model-grid pixel with that
  lesion's components on the previous slice. A component touching several open lesions merges
  them; several components touching one lesion all join it.
- A lesion closes at the first slice where none of its pixels continue.

Units and frames: pixel boxes are half-open, ``[row0, row1) x [col0, col1)``, in the stored
(original) slice's pixels (mapped with :meth:`PixelBox.to_original`); slice indices are the
caller's indices; ``centre_mm`` is in the patient frame (PS3.3 C.7.6.2, LPS, mm);
``voxel_count`` counts model-grid voxels.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from api.dicom.geometry import PlaneGeometry, ResizeMapping
from api.lesions.components import Component2D
from api.lesions.lesion import Box3D, GrowingLesion, Lesion3D, SliceBox
from api.lesions.linking import DisjointSets
from api.lesions.measures import slice_thickness_mm

# Where the study flow and the tests import them from.
__all__ = ["Box3D", "Lesion3D", "LesionTracker", "SliceBox"]


class LesionTracker:
    """Builds :class:`Lesion3D` from a stream of slices; memory holds only the open lesions.

    ``slice_spacing_mm`` is the thickness given to a slice with no neighbour to measure from
    (a one-slice series, or either side of a gap). Otherwise each slice spans half way to each
    adjacent slice: volume = sum over slices of voxels x model-pixel area (mm^2, the stored
    PixelSpacing / resize scale, squared) x that thickness (mm) / 1000, in mL.
    """

    def __init__(self, slice_spacing_mm: float) -> None:
        if slice_spacing_mm <= 0:
            raise ValueError(f"slice spacing must be positive, got {slice_spacing_mm}")
        self._fallback_mm = slice_spacing_mm
        self._open: dict[int, GrowingLesion] = {}  # by key; key + 1 is painted in _previous
        self._previous: NDArray[np.int32] | None = None  # open lesions' pixels, last slice
        self._closed: list[GrowingLesion] = []
        # Keys only, one int per lesion: merged lesion -> the one it joined; key -> final id.
        self._absorbed: dict[int, int] = {}
        self._ids: dict[int, int] = {}
        self._next_key = 0
        self._last_index: int | None = None
        self._last_position: float = 0.0
        self._gap_before_last: float | None = None  # to the last slice's predecessor, mm

    @property
    def open_lesions(self) -> int:
        """How many lesions may still grow."""
        return len(self._open)

    def add_slice(
        self,
        index: int,
        components: list[Component2D],
        geometry: PlaneGeometry,
        mapping: ResizeMapping,
        *,
        position_mm: float | None = None,
    ) -> list[int]:
        """Add the next slice's components (model grid); ``position_mm`` along the normal.

        ``position_mm`` defaults to ``geometry.projection(geometry.origin)``. Returns each
        component's lesion key, which :meth:`lesion_id` turns into its id after :meth:`finish`.
        """
        if self._last_index is not None and index <= self._last_index:
            raise ValueError(f"slice {index} does not follow slice {self._last_index}")
        if any(p.box.row1 > mapping.size or p.box.col1 > mapping.size for p in components):
            raise ValueError(f"components must lie on the {mapping.size}-pixel model grid")
        position = geometry.projection(geometry.origin) if position_mm is None else position_mm
        adjacent = self._last_index is not None and index == self._last_index + 1
        gap = abs(position - self._last_position) if adjacent else None
        self._settle_last(gap)
        if not adjacent:
            self._close(list(self._open))
            self._previous = None
        touched = self._touched(components, mapping.size)
        owners = self._grow(index, components, touched, geometry, mapping)
        self._paint(components, owners, mapping.size)
        self._last_index, self._last_position, self._gap_before_last = index, position, gap
        return owners

    def lesion_id(self, key: int) -> int:
        """The id :meth:`finish` gave the lesion that a key from :meth:`add_slice` ended in."""
        while key in self._absorbed:
            key = self._absorbed[key]
        return self._ids[key]

    def finish(self) -> list[Lesion3D]:
        """Close every lesion and number them all; the tracker then holds no lesion, only
        what :meth:`lesion_id` needs."""
        self._settle_last(None)
        self._close(list(self._open))
        ordered = sorted(self._closed, key=GrowingLesion.order)
        self._ids = {growing.key: number for number, growing in enumerate(ordered, start=1)}
        self._closed, self._previous, self._last_index = [], None, None
        self._gap_before_last = None
        return [growing.freeze(number) for number, growing in enumerate(ordered, start=1)]

    def _settle_last(self, gap_after: float | None) -> None:
        if not self._open:
            return  # most slices of a study: nothing to settle
        gaps = [g for g in (self._gap_before_last, gap_after) if g is not None]
        thickness = slice_thickness_mm(gaps, self._fallback_mm)
        for growing in self._open.values():
            growing.settle(thickness)

    def _close(self, keys: list[int]) -> None:
        for key in keys:
            self._closed.append(self._open.pop(key))

    def _touched(self, components: list[Component2D], size: int) -> list[list[int]]:
        """For each component, the keys of the open lesions it overlaps."""
        if self._previous is None or not self._open:
            return [[] for _ in components]
        if self._previous.shape != (size, size):
            raise ValueError(f"model grid changed from {self._previous.shape} to {size}")
        touched = []
        for part in components:
            under = self._previous[part.box.slices][part.mask]
            touched.append([int(v) - 1 for v in np.unique(under) if v != 0])
        return touched

    def _grow(
        self,
        index: int,
        components: list[Component2D],
        touched: list[list[int]],
        geometry: PlaneGeometry,
        mapping: ResizeMapping,
    ) -> list[int]:
        """Join components and the lesions they touch into groups; returns each one's lesion."""
        sets = DisjointSets()
        node = {key: sets.add() for key in self._open}
        parts = [sets.add() for _ in components]
        for part_node, keys in zip(parts, touched, strict=True):
            for key in keys:
                sets.union(part_node, node[key])
        owner: dict[int, int] = {}  # set root -> key of the lesion that survives (the oldest)
        for key in sorted({k for keys in touched for k in keys}):
            root = sets.find(node[key])
            if root not in owner:
                owner[root] = key
            else:
                self._open[owner[root]].absorb(self._open.pop(key))
                self._absorbed[key] = owner[root]
        owners = []
        for part, part_node in zip(components, parts, strict=True):
            root = sets.find(part_node)
            if root not in owner:
                owner[root] = self._new(index)
            self._open[owner[root]].add(index, part, geometry, mapping)
            owners.append(owner[root])
        continuing = set(owners)
        self._close([key for key in self._open if key not in continuing])
        return owners

    def _new(self, index: int) -> int:
        key, self._next_key = self._next_key, self._next_key + 1
        self._open[key] = GrowingLesion(key=key, first=index, last=index)
        return key

    def _paint(self, components: list[Component2D], owners: list[int], size: int) -> None:
        """Remember which lesion owns each pixel of this slice, for the next one."""
        if not components:
            self._previous = None
            return
        painted = np.zeros((size, size), dtype=np.int32)
        for part, key in zip(components, owners, strict=True):
            painted[part.box.slices][part.mask] = key + 1
        self._previous = painted
