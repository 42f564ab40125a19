"""Stored pixel values to Hounsfield units: the arithmetic, without pydicom.

Modality LUT (PS3.3 C.11.1.1.2): ``HU = RescaleSlope * stored + RescaleIntercept``. Results
are rounded half to even (``numpy.rint``) and clipped to int16; stored values in the pixel
padding range become air (-1024 HU). Reading the rescale and the padding from a dataset, and
decoding, are :mod:`api.dicom.pixels`'. Kept apart so that a decode worker reading plain
slices (:mod:`api.dicom.native`) never loads pydicom and its pixel plugins (about 40 MB).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from api.dicom.geometry import AIR_HU
from api.errors import CorruptPixelData

INT16_MIN, INT16_MAX = -32768, 32767
# Padding whose HU lies above this is tissue, not outside-the-field fill.
PADDING_CEILING_HU = -1000.0
# A decode is implausible when more than this share of pixels lies outside PLAUSIBLE_HU
# (one constant fill value excepted): no CT holds that much beyond air or dense metal.
PLAUSIBLE_HU = (-4096, 4096)
IMPLAUSIBLE_SHARE = 0.10


@dataclass(frozen=True)
class Rescale:
    """The modality LUT of one frame and the stored values that are padding."""

    slope: float = 1.0
    intercept: float = 0.0
    padding: tuple[int, int] | None = None  # inclusive stored-value range mapped to air


def apply_rescale(
    stored: NDArray[Any], rescale: Rescale, out: NDArray[np.int16] | None = None
) -> NDArray[np.int16]:
    """Stored values to int16 HU: modality LUT, rounding, clipping, padding to air.

    Written into ``out`` (same shape) when given, else into a new array; either is returned.
    """
    hounsfield = np.empty(stored.shape, np.int16) if out is None else out
    if rescale.slope == 1.0 and float(rescale.intercept).is_integer():
        _add_intercept(stored, int(rescale.intercept), hounsfield)
    else:
        values = np.rint(stored.astype(np.float64) * rescale.slope + rescale.intercept)
        np.clip(values, INT16_MIN, INT16_MAX, out=values)
        np.copyto(hounsfield, values, casting="unsafe")
    if rescale.padding is not None:
        low, high = rescale.padding
        np.copyto(hounsfield, np.int16(AIR_HU), where=(stored >= low) & (stored <= high))
    return hounsfield


def _add_intercept(stored: NDArray[Any], intercept: int, out: NDArray[np.int16]) -> None:
    """``clip(stored + intercept)`` into ``out``, without the clip or a wide copy when the
    stored range shows that no sum leaves int16 (a CT's usual case)."""
    if stored.size and stored.dtype.itemsize <= 2:
        low, high = int(stored.min()) + intercept, int(stored.max()) + intercept
        if INT16_MIN <= low and high <= INT16_MAX:
            if stored.dtype == np.int16 and INT16_MIN <= intercept <= INT16_MAX:
                np.add(stored, np.int16(intercept), out=out)
            else:
                np.add(stored, intercept, out=out, dtype=np.int32, casting="unsafe")
            return
    # int32 holds any 16-bit stored value plus any sane intercept, at half int64's traffic.
    wide = np.int32 if stored.dtype.itemsize <= 2 else np.int64
    values: NDArray[Any] = stored.astype(wide)
    values += intercept
    np.clip(values, INT16_MIN, INT16_MAX, out=values)
    np.copyto(out, values, casting="unsafe")


def check_plausible(hounsfield: NDArray[np.int16]) -> None:
    """Raise CorruptPixelData when a decode yields values no CT holds (a broken codestream)."""
    low, high = PLAUSIBLE_HU
    if not hounsfield.size or (low <= hounsfield.min() and hounsfield.max() <= high):
        return
    count = np.count_nonzero(hounsfield < low) + np.count_nonzero(hounsfield > high)
    if count <= IMPLAUSIBLE_SHARE * hounsfield.size:
        return
    outliers = hounsfield[(hounsfield < low) | (hounsfield > high)]
    # A constant fill outside the field of view is allowed, however much of it there is.
    _, counts = np.unique(outliers, return_counts=True)
    share = (outliers.size - int(counts.max())) / hounsfield.size
    if share > IMPLAUSIBLE_SHARE:
        raise CorruptPixelData(
            f"the decoded pixels are not plausible CT values ({share:.0%} beyond "
            f"{low}..{high} HU): the compressed data is probably damaged"
        )
