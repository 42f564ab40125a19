"""Per-frame attributes of single-frame and enhanced multi-frame images.

Enhanced CT (PS3.3 A.38) keeps frame geometry and rescale in functional groups: a
per-frame item overrides the shared one (PS3.3 C.7.6.16). Single-frame CT keeps them at
the top level. The functions here answer "what is attribute X of frame i" for both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only read here: a decode worker reading plain slices never loads pydicom
    from pydicom.dataset import Dataset

# Functional-group macro sequences holding the attributes this package needs.
PLANE_POSITION = "PlanePositionSequence"
PLANE_ORIENTATION = "PlaneOrientationSequence"
PIXEL_MEASURES = "PixelMeasuresSequence"
PIXEL_VALUE_TRANSFORMATION = "PixelValueTransformationSequence"
FRAME_TYPE = "CTImageFrameTypeSequence"


def is_enhanced(ds: Dataset) -> bool:
    """True for images that carry functional groups (enhanced and legacy-converted)."""
    return "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds


def frame_count(ds: Dataset) -> int:
    """NumberOfFrames, 1 when absent (PS3.3 C.7.6.6)."""
    value = ds.get("NumberOfFrames")
    count = int(value) if value not in (None, "") else 1
    if count < 1:
        raise ValueError(f"NumberOfFrames is {count}")
    return count


def functional_group(ds: Dataset, frame: int | None, macro: str) -> Dataset | None:
    """The item of functional-group ``macro`` for ``frame``: per-frame first, then shared."""
    if frame is not None:
        per_frame = ds.get("PerFrameFunctionalGroupsSequence")
        if per_frame is not None and frame < len(per_frame):
            item = _first_item(per_frame[frame], macro)
            if item is not None:
                return item
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        return _first_item(shared[0], macro)
    return None


def frame_value(ds: Dataset, frame: int | None, macro: str, keyword: str) -> Any:
    """Attribute ``keyword`` of ``frame`` from its functional group, else from the top level."""
    item = functional_group(ds, frame, macro)
    if item is not None and keyword in item:
        return item[keyword].value
    return ds.get(keyword)


def _first_item(container: Dataset, macro: str) -> Dataset | None:
    sequence = container.get(macro)
    if not sequence:
        return None
    item: Dataset = sequence[0]
    return item
