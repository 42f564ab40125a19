"""Decompression bombs: images refused on what they declare, before any pixel buffer exists.

A DICOM header of a few hundred bytes can declare 65535 x 65535 pixels in a million frames,
and a compressed frame of a few bytes can declare in its own codestream an image far larger
than the header says: a decoder allocates what it is told. So the header pass checks the
declared size (:func:`check_declared_size`), and each compressed frame's codestream header
(JPEG 2000 SIZ, JPEG and JPEG-LS SOF) is read and checked before it is decoded
(:func:`check_codestream`).

The bound (``BONEMETS_MAX_IMAGE_PIXELS``, :data:`DEFAULT_MAX_IMAGE_PIXELS` = 2^32, about
4.3 billion pixels, 8 GiB at 16 bits) is twice the largest real CT a client sends in one
file: an enhanced CT of 2,000 frames (the default slice limit) at 1024 x 1024, the largest
clinical matrix, is 2.1 billion; 1,000 frames at 2048 x 2048 (ultra-high-resolution CT) also
pass. One frame may hold at most 4096 x 4096 pixels (four times that 2048 matrix), and one
file at most :data:`MAX_FRAMES` frames, because the header pass does work per frame.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame

from api.dicom.integrity import probe_pixel_data
from api.errors import ImageTooLarge

DEFAULT_MAX_IMAGE_PIXELS = 1 << 32
MAX_FRAME_PIXELS = 4096 * 4096
MAX_FRAMES = 20_000  # ten times the default slice limit
# A deflated file is inflated whole by pydicom: 256 frames of 512 x 512 at 16 bits.
MAX_INFLATED_BYTES = 256 << 20
DEFLATED_UID = b"1.2.840.10008.1.2.1.99"
META_START = 132  # after the preamble and "DICM"
INFLATE_CHUNK = 1 << 20
J2K_SOC_SIZ = b"\xff\x4f\xff\x51"
JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  "
JPEG_SOI = b"\xff\xd8"
# SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC); SOF55 for JPEG-LS.
JPEG_SOF = frozenset({*range(0xC0, 0xD0), 0xF7} - {0xC4, 0xC8, 0xCC})


def check_declared_size(ds: Dataset, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> None:
    """ImageTooLarge when Rows x Columns x NumberOfFrames x SamplesPerPixel passes the bounds.

    Absent or unreadable attributes are left to the checks that name them.
    """
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames") or 1)
        samples = int(ds.get("SamplesPerPixel") or 1)
    except (AttributeError, TypeError, ValueError):
        return
    frame_pixels = rows * columns * samples
    if frame_pixels > MAX_FRAME_PIXELS:
        raise ImageTooLarge(
            f"a frame of {rows} x {columns} x {samples} samples: more than {MAX_FRAME_PIXELS}"
            " pixels, larger than any CT"
        )
    if frames > MAX_FRAMES:
        raise ImageTooLarge(f"the file declares {frames} frames; the limit is {MAX_FRAMES}")
    if frame_pixels * frames > max_pixels:
        raise ImageTooLarge(
            f"the file declares {frame_pixels * frames} pixels ({frames} frames of {rows} x "
            f"{columns}); the limit is {max_pixels} (BONEMETS_MAX_IMAGE_PIXELS)"
        )


def check_inflated_size(fp: BinaryIO, max_bytes: int | None = None) -> None:
    """ImageTooLarge when a Deflated Explicit VR file's body inflates past ``max_bytes``.

    Inflated in a stream and counted, never held; ``fp`` is left where it was. Other files
    (and files whose File Meta does not open with its group length) pass at once.
    """
    max_bytes = MAX_INFLATED_BYTES if max_bytes is None else max_bytes
    start = fp.tell()
    head = fp.read(4096)
    body = _deflated_body(head)
    if body is None:
        fp.seek(start)
        return
    fp.seek(start + body)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    inflated = 0
    try:
        while (chunk := fp.read(INFLATE_CHUNK)) and not inflater.eof:
            while chunk:
                inflated += len(inflater.decompress(chunk, INFLATE_CHUNK))
                chunk = inflater.unconsumed_tail
                if inflated > max_bytes:
                    raise ImageTooLarge(
                        f"the deflated file inflates past {max_bytes} bytes, more than any"
                        " deflated CT"
                    )
    except zlib.error:
        pass  # a damaged stream: pydicom's reading names the fault
    finally:
        fp.seek(start)


def _deflated_body(head: bytes) -> int | None:
    """Where the deflated body starts (PS3.10 7.1: after the File Meta group), or None."""
    if DEFLATED_UID not in head or head[META_START:META_START + 6] != b"\x02\x00\x00\x00UL":
        return None
    (length,) = struct.unpack("<I", head[META_START + 8:META_START + 12])
    return META_START + 12 + int(length)


def check_first_frame(ds: Dataset, head: bytes) -> None:
    """:func:`check_codestream` for the first bytes of a file's first compressed frame."""
    samples = int(ds.get("SamplesPerPixel") or 1)
    check_codestream(head, int(ds.Rows), int(ds.Columns), samples)


def check_compressed_frame(path: Path, frame: int | None) -> None:
    """:func:`check_codestream` for one frame of ``path``, before a decoder is given it.

    Files whose pixels are not encapsulated pass at once. Where the frame cannot be found
    the decoder, which finds nothing either, names the fault.
    """
    try:
        with warnings.catch_warnings(), path.open("rb") as fp:
            warnings.simplefilter("ignore")
            ds = dcmread(fp, stop_before_pixels=True, force=True)
            element = probe_pixel_data(fp, path.stat().st_size)
            if not element.encapsulated:
                return
            fp.seek(element.value_offset)
            frames = int(ds.get("NumberOfFrames") or 1)
            data = get_frame(fp, frame or 0, number_of_frames=frames)
        rows, columns = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel") or 1)
    except Exception:  # noqa: BLE001 - a damaged file: the decoder's own error is clearer
        return
    check_codestream(data, rows, columns, samples)


def codestream_size(head: bytes) -> tuple[int, int, int] | None:
    """(rows, columns, components) a JPEG 2000, JPEG or JPEG-LS codestream declares, from its
    first bytes; None when ``head`` is none of these or too short to tell."""
    if head.startswith(J2K_SOC_SIZ):
        return _j2k_size(head)
    if head.startswith(JP2_SIGNATURE):
        return _jp2_size(head)
    if head.startswith(JPEG_SOI):
        return _jpeg_size(head)
    return None


def check_codestream(head: bytes, rows: int, columns: int, samples: int) -> None:
    """ImageTooLarge when a frame's codestream declares more pixels than its DICOM header."""
    size = codestream_size(head)
    if size is None:
        return
    code_rows, code_columns, components = size
    if code_rows * code_columns * components > rows * columns * max(1, samples):
        raise ImageTooLarge(
            f"a compressed frame declares {code_rows} x {code_columns} x {components} samples"
            f" in its codestream; the DICOM header declares {rows} x {columns}"
        )


def _j2k_size(head: bytes) -> tuple[int, int, int] | None:
    """ISO/IEC 15444-1 A.5.1: SIZ holds Xsiz, Ysiz, XOsiz, YOsiz, ..., Csiz."""
    if len(head) < 42:
        return None
    xsiz, ysiz, xosiz, yosiz = struct.unpack(">IIII", head[8:24])
    (csiz,) = struct.unpack(">H", head[40:42])
    return (max(0, ysiz - yosiz), max(0, xsiz - xosiz), csiz)


def _jp2_size(head: bytes) -> tuple[int, int, int] | None:
    """ISO/IEC 15444-1 I.4: the codestream in the JP2 file's ``jp2c`` box (which decoders
    accept though PS3.5 forbids it)."""
    offset = 0
    while offset + 8 <= len(head):
        (length,) = struct.unpack(">I", head[offset:offset + 4])
        kind = head[offset + 4:offset + 8]
        header = 8
        if length == 1 and offset + 16 <= len(head):
            (length,) = struct.unpack(">Q", head[offset + 8:offset + 16])
            header = 16
        if kind == b"jp2c":
            start = offset + header
            return _j2k_size(head[start:]) if head[start:].startswith(J2K_SOC_SIZ) else None
        if length < header:
            return None
        offset += length
    return None


def _jpeg_size(head: bytes) -> tuple[int, int, int] | None:
    """ISO/IEC 10918-1 B.2.2 (and 14495-1): the frame header after any tables."""
    offset = 2
    while offset + 4 <= len(head):
        if head[offset] != 0xFF:
            return None
        marker = head[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        (length,) = struct.unpack(">H", head[offset + 2:offset + 4])
        if marker in JPEG_SOF:
            if offset + 10 > len(head):
                return None
            rows, columns = struct.unpack(">HH", head[offset + 5:offset + 9])
            return (rows, columns, head[offset + 9])
        offset += 2 + length
    return None
