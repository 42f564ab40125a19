"""Uncompressed pixels read straight from the file, at the offset the header pass found.

pydicom parses the whole dataset again to decode a slice; a plain 16-bit image needs one
read at a known offset and two vector operations (a 512x512 slice of the corpus' S03 to HU:
about 4 ms through pydicom, 0.6 ms this way). Only the layouts where this gives pydicom's
own stored values are described (:func:`native_layout`); every other file goes through
pydicom (:func:`api.dicom.pixels.decode_stored`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from api.dicom.frames import frame_count
from api.errors import CorruptPixelData

if TYPE_CHECKING:  # a decode worker reading plain slices never loads pydicom
    from pydicom.dataset import Dataset

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
NATIVE_SYNTAXES = (IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN)
MONOCHROME = ("MONOCHROME1", "MONOCHROME2")


@dataclass(frozen=True)
class NativeLayout:
    """Where an uncompressed 16-bit image lies in its file, frame after frame (PS3.5 8.1.1)."""

    offset: int
    rows: int
    columns: int
    bits_stored: int
    signed: bool
    big_endian: bool = False


def native_layout(ds: Dataset, offset: int, syntax: str) -> NativeLayout | None:
    """The layout of ``ds``'s pixels when they can be read straight from the file, else None.

    None wherever pydicom would do anything but read the bytes: compressed or deflated data,
    several samples, other than 16 bits allocated, or Image Pixel attributes that pydicom
    refuses (absent or invalid), so that its error stays the one the client sees.
    """
    if syntax not in NATIVE_SYNTAXES:
        return None
    try:
        rows, columns, bits = int(ds.Rows), int(ds.Columns), int(ds.BitsStored)
        frame_count(ds)  # ValueError below one frame, which pydicom refuses too
        plain = (
            int(ds.BitsAllocated) == 16
            and int(ds.SamplesPerPixel) == 1
            and 1 <= bits <= 16
            and 0 < rows < 1 << 16
            and 0 < columns < 1 << 16
            and ds.PixelRepresentation in (0, 1)
            and ds.PhotometricInterpretation in MONOCHROME
        )
    except (AttributeError, TypeError, ValueError):
        return None
    if not plain:
        return None
    signed = ds.PixelRepresentation == 1
    return NativeLayout(offset, rows, columns, bits, signed, syntax == EXPLICIT_VR_BIG_ENDIAN)


def read_native(
    path: Path, layout: NativeLayout, frame: int | None = None
) -> NDArray[np.integer[Any]]:
    """Stored values of one frame read straight from the file, masked to BitsStored and
    sign-extended.

    The same values pydicom's ``pixel_array`` gives (its ``correct_unused_bits``), without
    parsing the dataset again. CorruptPixelData when the file holds fewer pixels.
    """
    count = layout.rows * layout.columns
    offset = layout.offset + (frame or 0) * count * 2
    order = ">" if layout.big_endian else "<"
    bits = layout.bits_stored
    if bits == 16:
        # The common case: the bytes already are the values.
        dtype = np.dtype(f"{order}i2" if layout.signed else f"{order}u2")
        raw = np.fromfile(path, dtype=dtype, count=count, offset=offset)
        _check_count(raw, count)
        return raw.astype(dtype.newbyteorder("="), copy=False).reshape(layout.rows, layout.columns)
    raw = np.fromfile(path, dtype=f"{order}u2", count=count, offset=offset)
    _check_count(raw, count)
    values = raw.astype(np.int32) & ((1 << bits) - 1)
    if layout.signed:
        values[values >= 1 << (bits - 1)] -= 1 << bits
    return values.reshape(layout.rows, layout.columns)


def _check_count(raw: NDArray[Any], count: int) -> None:
    if raw.size != count:
        raise CorruptPixelData(f"the file holds {raw.size} of {count} pixels")
