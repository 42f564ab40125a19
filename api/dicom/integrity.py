"""A cheap look at the Pixel Data element, without reading the pixels.

The header pass reads each file with ``stop_before_pixels``, which leaves the file positioned
at the Pixel Data tag (or at its end when there is none). From there this module reads the
element header and, for encapsulated data, walks the item headers (PS3.5 A.4) by seeking, so
that missing, truncated or mislabelled pixel data is found before any decoding and without
holding more than a few bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

from api.errors import CorruptPixelData, NoPixelData

PIXEL_DATA_LE = b"\xe0\x7f\x10\x00"
PIXEL_DATA_BE = b"\x7f\xe0\x00\x10"
FLOAT_PIXEL_DATA = (
    b"\xe0\x7f\x08\x00",
    b"\xe0\x7f\x09\x00",
    b"\x7f\xe0\x00\x08",
    b"\x7f\xe0\x00\x09",
)
ITEM = b"\xfe\xff\x00\xe0"
SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0"
UNDEFINED_LENGTH = 0xFFFFFFFF
EXPLICIT_PIXEL_VRS = (b"OB", b"OW", b"UN", b"OD", b"OF", b"OV", b"OL")
MAX_ITEMS = 1_000_000
# The first frame's head kept for checks: a JPEG 2000 SIZ, a JPEG's SOF after its tables.
FIRST_FRAME_HEAD = 4096


@dataclass(frozen=True)
class PixelDataElement:
    """Where the pixel data value lies and how it is stored."""

    value_offset: int
    encapsulated: bool
    length: int  # bytes of the value (native), or up to the sequence delimiter (encapsulated)
    fragments: int  # encapsulated: items after the Basic Offset Table; native: 0
    first_fragment_head: bytes = b""  # encapsulated: the first bytes of the first frame


def probe_pixel_data(fp: BinaryIO, file_size: int) -> PixelDataElement:
    """Read the Pixel Data element header at ``fp``'s position (left by stop_before_pixels)."""
    start = fp.tell()
    head = fp.read(12)
    if head[:4] in FLOAT_PIXEL_DATA:
        raise NoPixelData("the image holds float pixel data, not stored integer CT values")
    if head[:4] not in (PIXEL_DATA_LE, PIXEL_DATA_BE) or len(head) < 8:
        raise NoPixelData("the file has no Pixel Data element")
    order = "<" if head[:4] == PIXEL_DATA_LE else ">"
    if head[4:6] in EXPLICIT_PIXEL_VRS:
        if len(head) < 12:
            raise CorruptPixelData("the file ends inside the Pixel Data element header")
        (length,) = struct.unpack(order + "I", head[8:12])
        value_offset = start + 12
    else:
        (length,) = struct.unpack(order + "I", head[4:8])
        value_offset = start + 8
    if length != UNDEFINED_LENGTH:
        if value_offset + length > file_size:
            raise CorruptPixelData(
                f"the file ends inside its pixel data ({file_size - value_offset} of "
                f"{length} bytes present)"
            )
        return PixelDataElement(value_offset, False, length, 0)
    fp.seek(value_offset)
    total, fragments, head = _walk_items(fp, file_size)
    return PixelDataElement(value_offset, True, total, fragments, head)


def check_native_length(element: PixelDataElement, expected: int) -> None:
    """Raise CorruptPixelData when native pixel data is shorter than the image needs."""
    if element.length < expected:
        raise CorruptPixelData(
            f"the pixel data holds {element.length} bytes; the image needs {expected}"
        )


def native_length(rows: int, columns: int, frames: int, samples: int, bits: int) -> int:
    """Bytes of native pixel data for the Image Pixel attributes (PS3.5 8.1.1)."""
    pixels = rows * columns * frames * samples
    return (pixels * bits + 7) // 8


def _walk_items(fp: BinaryIO, file_size: int) -> tuple[int, int, bytes]:
    """Seek through the items of encapsulated pixel data.

    Returns (bytes, items after the BOT, first bytes of the first item after the BOT).
    """
    items = 0
    first_head = b""
    start = fp.tell()
    while items < MAX_ITEMS:
        head = fp.read(8)
        if len(head) < 8:
            raise CorruptPixelData("the file ends inside its compressed pixel data")
        tag = head[:4]
        (length,) = struct.unpack("<I", head[4:8])
        if tag == SEQUENCE_DELIMITER:
            if items == 0:
                raise CorruptPixelData("the compressed pixel data has no Basic Offset Table item")
            if items == 1:
                raise CorruptPixelData("the compressed pixel data holds no frames")
            return fp.tell() - start, items - 1, first_head
        if tag != ITEM or length == UNDEFINED_LENGTH:
            raise CorruptPixelData("the compressed pixel data is not a valid item sequence")
        if fp.tell() + length > file_size:
            raise CorruptPixelData("the file ends inside its compressed pixel data")
        if items == 1:
            first_head = fp.read(min(length, FIRST_FRAME_HEAD))
            fp.seek(length - len(first_head), 1)
        else:
            fp.seek(length, 1)
        items += 1
    raise CorruptPixelData("the compressed pixel data has too many items")
