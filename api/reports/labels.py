"""Stored slice masks to per-lesion labels, from the boxes the result gives each lesion.

The result gives each 3D lesion its box on each of its slices: the box of its 2D components
there. Each component of the stored mask (8-connected, as the pipeline labels) goes to the
lesion whose box on that slice is exactly its own box, else to the smallest lesion box that
holds it (a small lesion can lie inside a large one's box; and where a slice was resized to
the model's grid, the grids can split or join components), else to the nearest box. A
lesion left without pixels on a slice then takes the masked pixels of its box there.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from api.lesions.components import label_components
from api.schemas import StudyResult

Box = tuple[int, int, int, int]  # row_min, col_min, row_max, col_max, inclusive


def lesion_boxes(result: StudyResult) -> dict[int, list[tuple[int, Box]]]:
    """Slice index -> [(lesion id, inclusive box)] of every lesion on that slice."""
    boxes: dict[int, list[tuple[int, Box]]] = {}
    for lesion in result.lesions:
        for box in lesion.boxes:
            boxes.setdefault(box.slice, []).append(
                (lesion.id, (box.row_min, box.col_min, box.row_max, box.col_max)))
    return boxes


def lesion_labels(mask: NDArray[np.bool_], owners: list[tuple[int, Box]]) -> NDArray[np.uint16]:
    """Each pixel of ``mask`` labelled with its lesion's id (0: background); every masked
    pixel is in a lesion when ``owners`` (the lesions' boxes on this slice) is not empty."""
    labels = np.zeros(mask.shape, dtype=np.uint16)
    if not owners or not mask.any():
        return labels
    components, _ = label_components(mask)
    for number, found in enumerate(ndimage.find_objects(components), start=1):
        if found is None:
            continue
        rows, cols = found
        box = (rows.start, cols.start, rows.stop - 1, cols.stop - 1)
        labels[found][components[found] == number] = _owner(box, owners)
    for lesion_id, (r0, c0, r1, c1) in sorted(owners, key=lambda owner: _area(owner[1])):
        window = labels[r0:r1 + 1, c0:c1 + 1]
        if not (window == lesion_id).any():
            # The model's grid split what touches here: the lesion takes the pixels of its box.
            window[mask[r0:r1 + 1, c0:c1 + 1]] = lesion_id
    return labels


def _owner(found: Box, owners: list[tuple[int, Box]]) -> int:
    exact = [lesion_id for lesion_id, box in owners if box == found]
    if exact:
        return exact[0]
    holding = [(_area(box), lesion_id) for lesion_id, box in owners if _holds(box, found)]
    if holding:
        return min(holding)[1]
    return min(owners, key=lambda owner: _gap(owner[1], found))[0]


def _holds(outer: Box, inner: Box) -> bool:
    return (outer[0] <= inner[0] and outer[1] <= inner[1]
            and inner[2] <= outer[2] and inner[3] <= outer[3])


def _area(box: Box) -> int:
    return (box[2] - box[0] + 1) * (box[3] - box[1] + 1)


def _gap(box: Box, found: Box) -> int:
    """Rows plus columns between two boxes (0 where they overlap)."""
    rows = max(box[0] - found[2], 0, found[0] - box[2])
    cols = max(box[1] - found[3], 0, found[1] - box[3])
    return rows + cols
