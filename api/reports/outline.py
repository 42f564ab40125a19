"""A region's outer outline as a closed polygon along pixel edges, for an SR's SCOORD.

Coordinates are DICOM image coordinates (PS3.3 C.18.6.1.2): (column, row), (0, 0) the top
left corner of the top left pixel, so a one-pixel region is its pixel's square.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

Point = tuple[int, int]  # (x = column, y = row) of a pixel corner


@dataclass(frozen=True)
class Outline:
    """A lesion's closed outline (column, row) on slice ``index`` of the series."""

    index: int
    points: NDArray[np.float32]


def largest_region(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """The largest 8-connected region of ``mask``, holes filled."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        raise ValueError("the mask is empty")
    sizes = np.bincount(labels.ravel())[1:]
    return np.asarray(ndimage.binary_fill_holes(labels == int(np.argmax(sizes)) + 1), dtype=bool)


def outline(region: NDArray[np.bool_]) -> NDArray[np.float32]:
    """The closed outline (first point repeated last) of an 8-connected region without holes.

    Walks the pixel edges with the region on the right, turning left first where two
    pixels touch only at a corner, so that diagonal neighbours stay inside one outline.
    """
    padded = np.pad(region, 1)
    edges = _edges(padded)
    rows, cols = np.nonzero(region)
    start = (int(cols[0]), int(rows[0]))  # top left corner of the first pixel in raster order
    points = [start]
    here, heading = (start[0] + 1, start[1]), (1, 0)
    while True:
        turned = _next_heading(edges, here, heading)
        if here == start:
            break
        if turned != heading:
            points.append(here)
        heading = turned
        here = (here[0] + heading[0], here[1] + heading[1])
    points.append(start)
    return np.asarray(points, dtype=np.float32)


def _edges(padded: NDArray[np.bool_]) -> set[tuple[Point, Point]]:
    """Directed boundary edges, clockwise on screen (rows down), of the padded mask's region."""
    found: set[tuple[Point, Point]] = set()
    for r, c in zip(*np.nonzero(padded), strict=True):
        x, y = int(c) - 1, int(r) - 1  # back to the unpadded grid
        if not padded[r - 1, c]:
            found.add(((x, y), (x + 1, y)))
        if not padded[r, c + 1]:
            found.add(((x + 1, y), (x + 1, y + 1)))
        if not padded[r + 1, c]:
            found.add(((x + 1, y + 1), (x, y + 1)))
        if not padded[r, c - 1]:
            found.add(((x, y + 1), (x, y)))
    return found


def _next_heading(edges: set[tuple[Point, Point]], here: Point,
                  heading: tuple[int, int]) -> tuple[int, int]:
    dx, dy = heading
    for turn in ((dy, -dx), (dx, dy), (-dy, dx)):  # left, straight, right (rows down)
        if (here, (here[0] + turn[0], here[1] + turn[1])) in edges:
            return turn
    raise ValueError("the outline is not closed")
