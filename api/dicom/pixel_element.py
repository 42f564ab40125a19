"""Pixel Data present, whole and as the transfer syntax says, checked from the file.

The header pass's checks of the element (:mod:`api.dicom.integrity` reads its header),
against the Image Pixel attributes, before any decoding.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID

from api.dicom.frames import frame_count
from api.dicom.integrity import (
    PixelDataElement,
    check_native_length,
    native_length,
    probe_pixel_data,
)
from api.errors import CorruptPixelData, NoPixelData


def check_pixel_element(
    fp: BinaryIO, size: int, ds: Dataset, syntax: str
) -> PixelDataElement:
    """NoPixelData / CorruptPixelData from the element header at ``fp``, before any decoding."""
    element = probe_pixel_data(fp, size)
    frames = frame_count(ds)
    if syntax:
        compressed = _is_compressed(syntax)
        if element.encapsulated and not compressed:
            raise CorruptPixelData(
                f"compressed pixel data in a file whose transfer syntax ({UID(syntax).name}) "
                "is uncompressed"
            )
        if compressed and not element.encapsulated:
            raise CorruptPixelData(
                f"uncompressed pixel data in a file whose transfer syntax ({UID(syntax).name}) "
                "is compressed"
            )
    if element.encapsulated:
        if element.fragments < frames:
            raise CorruptPixelData(
                f"the compressed pixel data holds {element.fragments} fragments for {frames} frames"
            )
        return element
    check_native_length(element, _native_bytes(ds, frames))
    return element


def check_deflated_pixels(path: Path, ds: Dataset) -> None:
    """NoPixelData / CorruptPixelData for a deflated file, whose body must be inflated."""
    # Such files are rare and small.
    full = dcmread(path, force=True)
    if "PixelData" not in full:
        raise NoPixelData("the file has no Pixel Data element")
    element = PixelDataElement(0, False, len(full.PixelData), 0)
    check_native_length(element, _native_bytes(ds, frame_count(ds)))


def _native_bytes(ds: Dataset, frames: int) -> int:
    return native_length(
        int(ds.Rows),
        int(ds.Columns),
        frames,
        int(ds.get("SamplesPerPixel") or 1),
        int(ds.BitsAllocated),
    )


@lru_cache(maxsize=64)
def _is_compressed(syntax: str) -> bool:
    # pydicom's UID validates its string on every construction.
    return UID(syntax).is_compressed
