"""The header pass's fast path: the few values the checks need, read straight from the bytes.

pydicom builds a Dataset of every element and converts and validates each value on access,
about 1.7 ms of CPU per CT header. A scanner's file is nearly always plain: a Part 10 file,
Explicit or Implicit VR Little Endian, single-frame, printable ASCII text. For such a file
:func:`scan_header` walks the data elements with ``struct``, jumps over every value it does
not need, keeps those in :data:`WANTED`, converts them as pydicom would (same stripping,
splitting, DS and IS parsing; :mod:`api.dicom.header_values`) and stops at Pixel Data.
The result answers the part of Dataset's interface the header checks use, so the checks
that screen a file are the same code on both paths.

Wherever pydicom could read a file differently (a VR other than the dictionary's, text
beyond printable ASCII, a malformed number, a sequence whose items do not parse, tags out
of order, functional groups, deflated or big-endian data) it gives up with None and the
caller reads the file with pydicom, as it always did.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

from pydicom.datadict import dictionary_VR

from api.dicom.header_values import (
    WANTED,
    WANTED_META,
    HeaderValues,
    Unsure,
    convert_value,
)

PREAMBLE_AND_PREFIX = 132
FIRST_READ = 8192
MAX_HEADER = 1 << 20  # a longer header is rare: pydicom reads it
IMPLICIT_LE = "1.2.840.10008.1.2"
# Syntaxes whose dataset is Explicit VR Little Endian: native and the common compressed ones.
EXPLICIT_LE = frozenset({
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.5",
})
DEFLATED_UID = b"1.2.840.10008.1.2.1.99"
PIXEL_DATA = 0x7FE00010
FLOAT_PIXEL_DATA = 0x7FE00008  # and 0x7FE00009: pydicom stops there too
UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
# PS3.5 7.1.2: VRs with a 2-byte reserved field and a 4-byte length.
LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC",
                      b"UN", b"UR", b"UT", b"UV"})
SHORT_VRS = frozenset({b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD",
                       b"IS", b"LO", b"LT", b"PN", b"SH", b"SL", b"SS", b"ST", b"TM",
                       b"UI", b"UL", b"US"})
TAG = struct.Struct("<HH")
EXPLICIT_HEAD = struct.Struct("<HH2sH")
IMPLICIT_HEAD = struct.Struct("<HHI")
LENGTH = struct.Struct("<I")
# Present in multi-frame and enhanced images, whose values live in functional groups.
DECLINED = frozenset({0x00280008, 0x52009229, 0x52009230})


class NeedMore(Exception):
    """The header runs past the bytes read so far."""


@dataclass(frozen=True)
class ScannedHeader:
    """A plain file's values and its bytes up to the Pixel Data element (its offset)."""

    values: HeaderValues
    head: bytes


def scan_header(fp: BinaryIO) -> ScannedHeader | None:
    """The values of a plain file at ``fp``'s start; None where pydicom must read it."""
    size = FIRST_READ
    while size <= MAX_HEADER:
        fp.seek(0)
        data = fp.read(size)
        try:
            return _scan(data, at_end=len(data) < size)
        except NeedMore:
            size *= 4
        except (Unsure, struct.error, UnicodeDecodeError, ValueError):
            return None
    return None


def _scan(data: bytes, at_end: bool) -> ScannedHeader | None:
    if data[128:132] != b"DICM" or DEFLATED_UID in data[:4096]:
        return None
    walker = _Walker(data, at_end, implicit=False)
    meta_raw, start = walker.meta()
    meta = {key: convert_value(vr, raw, None) for key, (vr, raw) in meta_raw.items()}
    syntax = str(meta.get("TransferSyntaxUID", "")).strip()
    if syntax != IMPLICIT_LE and syntax not in EXPLICIT_LE:
        return None
    walker.implicit = syntax == IMPLICIT_LE
    raw, pixel_at = walker.dataset(start)
    pixel_rep = raw.get("PixelRepresentation")
    representation = (
        struct.unpack("<H", pixel_rep[1])[0] if pixel_rep and len(pixel_rep[1]) == 2 else None
    )
    values = {key: convert_value(vr, value, representation) for key, (vr, value) in raw.items()}
    return ScannedHeader(HeaderValues(values, HeaderValues(meta)), data[:pixel_at])


class _Walker:
    """Data elements of a little-endian byte string, explicit or implicit VR."""

    def __init__(self, data: bytes, at_end: bool, implicit: bool) -> None:
        self.data = data
        self.at_end = at_end
        self.implicit = implicit

    def _need(self, end: int) -> None:
        if end > len(self.data):
            raise Unsure() if self.at_end else NeedMore()

    def meta(self) -> tuple[dict[str, tuple[str, bytes]], int]:
        """The File Meta group (always Explicit VR LE) and where the dataset starts."""
        found: dict[str, tuple[str, bytes]] = {}
        position, previous, group_end = PREAMBLE_AND_PREFIX, -1, None
        while True:
            self._need(position + 8)
            tag = self._tag(position)
            if tag >> 16 != 2:
                break
            if tag <= previous:
                raise Unsure()
            previous = tag
            _, vr, start, length = self._element(position)
            if length == UNDEFINED:
                raise Unsure()
            self._need(start + length)
            if tag == 0x00020000:
                if vr != b"UL" or length != 4:
                    raise Unsure()
                group_end = start + 4 + struct.unpack_from("<I", self.data, start)[0]
            wanted = WANTED_META.get(tag)
            if wanted is not None:
                found[wanted[0]] = self._checked_vr(vr, wanted[1], self.data[start:start + length])
            position = start + length
        if group_end is not None and group_end != position:
            raise Unsure()
        return found, position

    def dataset(self, start: int) -> tuple[dict[str, tuple[str, bytes]], int]:
        """The wanted top-level values and where Pixel Data starts."""
        self._check_encoding(start)
        found: dict[str, tuple[str, bytes]] = {}
        position, previous, size = start, -1, len(self.data)
        while True:
            if position + 8 > size:
                self._need(position + 8)
            tag, vr, value_start, length = self._element(position)
            if tag >= FLOAT_PIXEL_DATA:
                if tag != PIXEL_DATA:
                    raise Unsure()
                return found, position
            if tag <= previous or tag >> 16 == 2 or tag in DECLINED:
                raise Unsure()
            previous = tag
            if length == UNDEFINED:
                position = self._undefined_sequence(tag, vr, value_start)
                continue
            position = value_start + length
            wanted = WANTED.get(tag)
            if wanted is not None:
                self._need(position)
                found[wanted[0]] = self._checked_vr(vr, wanted[1], self.data[value_start:position])

    def _items(self, start: int, end: int | None) -> int:
        """Elements of one item, up to ``end`` or its delimiter; where the item ends."""
        if end is None or end > start:
            self._check_encoding(start)
        position, previous = start, -1
        while end is None or position < end:
            self._need(position + 8)
            tag = self._tag(position)
            if tag == ITEM_END and end is None:
                return position + 8
            if tag <= previous or tag >> 16 == 0xFFFE:
                raise Unsure()
            previous = tag
            _, vr, value_start, length = self._element(position)
            if length == UNDEFINED:
                position = self._undefined_sequence(tag, vr, value_start)
            else:
                position = value_start + length
        if position != end:
            raise Unsure()
        return position

    def _undefined_sequence(self, tag: int, vr: bytes | None, start: int) -> int:
        """Walk a sequence of undefined length, as pydicom does on reading; where it ends."""
        if (vr if vr is not None else _dictionary_vr(tag)) not in (b"SQ", "SQ"):
            raise Unsure()
        position = start
        while True:
            self._need(position + 8)
            tag = self._tag(position)
            (length,) = struct.unpack_from("<I", self.data, position + 4)
            if tag == SEQUENCE_END:
                return position + 8
            if tag != ITEM:
                raise Unsure()
            if length == UNDEFINED:
                position = self._items(position + 8, None)
            else:
                self._need(position + 8 + length)
                position = self._items(position + 8, position + 8 + length)

    def _check_encoding(self, start: int) -> None:
        """pydicom reads by the first element's VR where it contradicts the syntax."""
        if start + 6 > len(self.data) or self._tag(start) == ITEM_END:
            return
        first, second = self.data[start + 4], self.data[start + 5]
        looks_explicit = 0x40 < first < 0x5B and 0x40 < second < 0x5B
        if looks_explicit == self.implicit:
            raise Unsure()

    def _tag(self, position: int) -> int:
        group, element = TAG.unpack_from(self.data, position)
        return int(group << 16 | element)

    def _element(self, position: int) -> tuple[int, bytes | None, int, int]:
        """(tag, VR or None where implicit, value offset, value length) at ``position``."""
        if self.implicit:
            group, element, length = IMPLICIT_HEAD.unpack_from(self.data, position)
            return group << 16 | element, None, position + 8, length
        group, element, vr, length = EXPLICIT_HEAD.unpack_from(self.data, position)
        if vr in SHORT_VRS:
            return group << 16 | element, vr, position + 8, length
        if vr in LONG_VRS:
            self._need(position + 12)
            (length,) = LENGTH.unpack_from(self.data, position + 8)
            return group << 16 | element, vr, position + 12, length
        raise Unsure()

    @staticmethod
    def _checked_vr(vr: bytes | None, expected: str, raw: bytes) -> tuple[str, bytes]:
        if vr is None:
            return expected, raw
        name = vr.decode("ascii")
        if name != expected and not (expected == "US or SS" and name in ("US", "SS")):
            raise Unsure()
        return name, raw


def _dictionary_vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return ""
