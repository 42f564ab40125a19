"""Linking 2-D components across adjacent slices into 3-D lesions.

The rule, shared by :class:`api.lesions.lesions3d.LesionTracker` and the evaluation in
``export.evaluation.metrics``: two components on adjacent slices belong to the same lesion when they
share at least one (row, column) pixel. In-plane, pixels join by the components' own 4- or
8-connectivity. Together this is ``scipy.ndimage.label`` on the volume with the in-plane
3x3 neighbourhood plus the two through-plane neighbours at the same (row, column).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray


class DisjointSets:
    """Union-find over the integers 0..n-1, growing on demand."""

    def __init__(self) -> None:
        self._parent: list[int] = []

    def __len__(self) -> int:
        return len(self._parent)

    def add(self) -> int:
        """A new singleton set; returns its element."""
        self._parent.append(len(self._parent))
        return len(self._parent) - 1

    def find(self, item: int) -> int:
        """The representative of ``item``'s set."""
        root = item
        while self._parent[root] != root:
            root = self._parent[root]
        while self._parent[item] != root:  # path compression keeps later finds short
            self._parent[item], item = root, self._parent[item]
        return root

    def union(self, a: int, b: int) -> int:
        """Join the sets of ``a`` and ``b``; the smaller representative represents both."""
        root_a, root_b = self.find(a), self.find(b)
        keep, drop = min(root_a, root_b), max(root_a, root_b)
        self._parent[drop] = keep
        return keep

    def roots(self) -> NDArray[np.intp]:
        """The representative of every element, as an array indexed by element."""
        return np.asarray([self.find(i) for i in range(len(self._parent))], dtype=np.intp)


def overlapping_labels(
    previous: NDArray[np.integer[Any]], current: NDArray[np.integer[Any]]
) -> NDArray[np.int64]:
    """Distinct (previous label, current label) pairs, both non-zero, sharing a pixel.

    Shape (k, 2), sorted. Both label images are on the same grid.
    """
    if previous.shape != current.shape:
        raise ValueError(f"label images differ in shape: {previous.shape} != {current.shape}")
    both = (previous != 0) & (current != 0)
    if not both.any():
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.stack([previous[both], current[both]], axis=1).astype(np.int64)
    unique: NDArray[np.int64] = np.unique(pairs, axis=0)
    return unique
