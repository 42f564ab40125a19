"""In-plane measurements of one lesion cross-section: Feret diameter and pixel size in mm."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist

from api.dicom.geometry import PlaneGeometry, ResizeMapping

# Above this many candidate points a convex hull pays for itself before the pairwise pass.
_HULL_FROM = 64


def model_pixel_spacing(geometry: PlaneGeometry, mapping: ResizeMapping) -> tuple[float, float]:
    """(row, column) size in mm of one model-grid pixel: the stored spacing / resize scale."""
    between_rows, between_columns = geometry.pixel_spacing
    return between_rows / mapping.scale, between_columns / mapping.scale


def feret_diameter_mm(mask: NDArray[np.bool_], spacing: tuple[float, float]) -> float:
    """Largest distance (mm) between the centres of two pixels of ``mask``.

    ``spacing`` is the (row, column) pixel size in mm. Pixel centres, not pixel edges: a
    single pixel measures 0, two side by side measure one spacing. Only each row's first and
    last pixel can lie on the convex hull, so only those are compared.
    """
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return 0.0
    occupied = mask[rows]
    first = occupied.argmax(axis=1)
    last = mask.shape[1] - 1 - occupied[:, ::-1].argmax(axis=1)
    points = np.concatenate(
        [np.stack([rows, first], axis=1), np.stack([rows, last], axis=1)]
    ).astype(np.float64)
    points *= np.asarray(spacing, dtype=np.float64)
    points = np.unique(points, axis=0)
    if len(points) < 2:
        return 0.0
    if len(points) > _HULL_FROM:
        try:
            points = points[ConvexHull(points).vertices]
        except QhullError:  # all points on one line: every point is a candidate
            pass
    return float(pdist(points).max())


def slice_thickness_mm(gaps: list[float], fallback_mm: float) -> float:
    """A slice's extent along the normal: the mean distance to its neighbours (mm).

    An inner slice spans half way to each neighbour, ``(z[i+1] - z[i-1]) / 2``; an end slice
    the distance to its one neighbour; a slice without neighbours ``fallback_mm``.
    """
    return float(np.mean(gaps)) if gaps else fallback_mm
