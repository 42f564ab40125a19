"""Connected components of one slice's lesion mask, scored from the model's probability map.

Coordinates: (row, column) pixel indices of the mask the components come from (for the
service, the model's 512x512 grid); pixel centres sit at integer indices. Boxes are
half-open, ``[row0, row1) x [col0, col1)``, so ``mask[box.slices]`` crops a component and
``row1 - row0`` is its height in pixels.

Probability: the model's map is ``sigmoid x 255`` max-pooled over ``stride x stride`` blocks
(stride 4 for the service, see :mod:`api.inference.contract`). Mask pixel (r, c) reads the
block (r // stride, c // stride) that holds it; scores are those values / 255, in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from api.dicom.geometry import ResizeMapping

Connectivity = Literal[4, 8]
# 8-connectivity: a lesion's diagonal pixels belong together, so a thin oblique cortical
# break is one component, not a string of single pixels.
DEFAULT_CONNECTIVITY: Connectivity = 8


class HalfOpenBox:
    """The inclusive last row and column of a box whose ``row1`` and ``col1`` lie one past."""

    row1: int
    col1: int

    @property
    def row_max(self) -> int:
        """Last row inside (inclusive), ``row1 - 1``."""
        return self.row1 - 1

    @property
    def col_max(self) -> int:
        """Last column inside (inclusive), ``col1 - 1``."""
        return self.col1 - 1


@dataclass(frozen=True)
class PixelBox(HalfOpenBox):
    """A half-open pixel box, ``[row0, row1) x [col0, col1)``."""

    row0: int
    col0: int
    row1: int
    col1: int

    @property
    def slices(self) -> tuple[slice, slice]:
        """The box as numpy index slices."""
        return slice(self.row0, self.row1), slice(self.col0, self.col1)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return self.row1 - self.row0, self.col1 - self.col0

    def union(self, other: PixelBox) -> PixelBox:
        """The smallest box holding both."""
        return PixelBox(
            min(self.row0, other.row0),
            min(self.col0, other.col0),
            max(self.row1, other.row1),
            max(self.col1, other.col1),
        )

    def to_original(self, mapping: ResizeMapping) -> PixelBox:
        """This model-grid box on the stored slice's grid, as ``mapping.mask_to_original`` maps.

        An original pixel is inside when the model pixel nearest its centre is, so the box of
        ``mapping.mask_to_original(mask)`` is the mapped box of ``mask``. When a box is thinner
        than one original pixel it becomes the original pixel holding its centre.
        """
        if mapping.is_identity:
            return self
        rows, columns = mapping.original_shape
        grid_r, grid_c = mapping.to_model(
            np.arange(rows, dtype=np.float64), np.arange(columns, dtype=np.float64)
        )
        nearest_r = np.clip(np.rint(grid_r), 0, mapping.size - 1)
        nearest_c = np.clip(np.rint(grid_c), 0, mapping.size - 1)
        row0, row1 = _index_range(nearest_r, self.row0, self.row1)
        col0, col1 = _index_range(nearest_c, self.col0, self.col1)
        if row1 <= row0 or col1 <= col0:
            centre_r, centre_c = mapping.to_original(
                (self.row0 + self.row1 - 1) / 2, (self.col0 + self.col1 - 1) / 2
            )
            r = int(np.clip(round(centre_r), 0, rows - 1))
            c = int(np.clip(round(centre_c), 0, columns - 1))
            return PixelBox(r, c, r + 1, c + 1)
        return PixelBox(row0, col0, row1, col1)


def _index_range(nearest: NDArray[np.float64], start: int, stop: int) -> tuple[int, int]:
    """Original indices whose nearest model index is in [start, stop) (``nearest`` ascends)."""
    low = int(np.searchsorted(nearest, start, side="left"))
    high = int(np.searchsorted(nearest, stop, side="left"))
    return low, high


@dataclass(frozen=True, eq=False)
class Component2D:
    """One connected component of a slice mask, in that mask's pixel grid."""

    label: int  # 1..n, in raster order of each component's first pixel
    pixel_count: int
    box: PixelBox  # half-open bounding box
    max_probability: float  # in [0, 1]
    mean_probability: float  # pixel-weighted mean over the component, in [0, 1]
    centroid: tuple[float, float]  # (row, column) mean of pixel centres
    mask: NDArray[np.bool_]  # the component's pixels, cropped to ``box``


def structure(connectivity: Connectivity) -> NDArray[np.bool_]:
    """The 3x3 in-plane neighbourhood for 4- or 8-connectivity."""
    if connectivity == 8:
        return np.ones((3, 3), dtype=np.bool_)
    if connectivity == 4:
        return np.asarray(ndimage.generate_binary_structure(2, 1), dtype=np.bool_)
    raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")


def label_components(
    mask: NDArray[np.bool_],
    *,
    connectivity: Connectivity = DEFAULT_CONNECTIVITY,
    min_pixels: int = 1,
) -> tuple[NDArray[np.int32], int]:
    """Label image (0 = background, 1..n) and n; components under ``min_pixels`` are dropped."""
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    if not mask.any():
        return np.zeros(mask.shape, dtype=np.int32), 0
    labels = np.zeros(mask.shape, dtype=np.int32)
    count = int(ndimage.label(mask, structure=structure(connectivity), output=labels))
    if min_pixels > 1:
        sizes = np.bincount(labels.ravel(), minlength=count + 1)
        keep = sizes >= min_pixels
        keep[0] = False
        renumber = np.zeros(count + 1, dtype=np.int32)
        renumber[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
        labels = renumber[labels]
        count = int(keep.sum())
    return labels, count


def probability_stride(mask_shape: tuple[int, ...], probability_shape: tuple[int, ...]) -> int:
    """The block size of the probability map relative to the mask; both axes must agree."""
    if len(probability_shape) != 2 or min(probability_shape) <= 0:
        raise ValueError(f"expected a 2-D probability map, got shape {probability_shape}")
    stride = mask_shape[0] // probability_shape[0]
    if stride < 1 or (probability_shape[0] * stride, probability_shape[1] * stride) != tuple(
        mask_shape
    ):
        raise ValueError(
            f"probability map {probability_shape} is not the mask {mask_shape} / an integer"
        )
    return stride


def components_from_labels(
    labels: NDArray[np.int32], count: int, probability: NDArray[np.uint8]
) -> list[Component2D]:
    """Describe labels 1..count of a label image, scored from a block probability map."""
    if count == 0:
        return []
    stride = probability_stride(labels.shape, probability.shape)
    rows, cols = np.nonzero(labels)
    which = labels[rows, cols]
    scores = probability[rows // stride, cols // stride].astype(np.float64) / 255.0
    sizes = np.bincount(which, minlength=count + 1)
    score_sums = np.bincount(which, weights=scores, minlength=count + 1)
    row_sums = np.bincount(which, weights=rows, minlength=count + 1)
    col_sums = np.bincount(which, weights=cols, minlength=count + 1)
    score_max = np.zeros(count + 1, dtype=np.float64)
    np.maximum.at(score_max, which, scores)
    components = []
    for label, found in enumerate(ndimage.find_objects(labels, max_label=count), start=1):
        if found is None:
            continue
        row_slice, col_slice = found
        size = int(sizes[label])
        components.append(
            Component2D(
                label=label,
                pixel_count=size,
                box=PixelBox(row_slice.start, col_slice.start, row_slice.stop, col_slice.stop),
                max_probability=float(score_max[label]),
                mean_probability=float(score_sums[label] / size),
                centroid=(float(row_sums[label] / size), float(col_sums[label] / size)),
                mask=labels[found] == label,
            )
        )
    return components


def components_2d(
    mask: NDArray[np.bool_],
    probability: NDArray[np.uint8],
    *,
    min_pixels: int = 1,
    connectivity: Connectivity = DEFAULT_CONNECTIVITY,
) -> list[Component2D]:
    """The connected components of one slice mask, in label (raster) order.

    ``mask``: bool (H, W). ``probability``: uint8 (H/s, W/s), sigmoid x 255 max-pooled over
    s x s blocks. Components smaller than ``min_pixels`` are dropped. An empty mask returns
    ``[]`` without a labelling pass.
    """
    if not mask.any():
        return []
    labels, count = label_components(mask, connectivity=connectivity, min_pixels=min_pixels)
    return components_from_labels(labels, count, probability)
