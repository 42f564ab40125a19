"""The values of a plain file's header as pydicom gives them, and a stand-in Dataset.

:mod:`api.dicom.quick_header` finds the raw bytes of the tags in :data:`WANTED`;
:func:`convert_value` turns them into the values pydicom's reading gives (same stripping,
splitting, DS and IS parsing) or raises :class:`Unsure` where pydicom might read them
otherwise: text beyond printable ASCII, a malformed number, an empty binary value.
"""

from __future__ import annotations

import re
import struct
from typing import Any

# The values the header checks read: tag -> (keyword, VRs accepted).
WANTED_META = {
    0x00020002: ("MediaStorageSOPClassUID", "UI"),
    0x00020003: ("MediaStorageSOPInstanceUID", "UI"),
    0x00020010: ("TransferSyntaxUID", "UI"),
}
WANTED = {
    0x00080008: ("ImageType", "CS"),
    0x00080016: ("SOPClassUID", "UI"),
    0x00080018: ("SOPInstanceUID", "UI"),
    0x00080060: ("Modality", "CS"),
    0x00080070: ("Manufacturer", "LO"),
    0x0008103E: ("SeriesDescription", "LO"),
    0x00180015: ("BodyPartExamined", "CS"),
    0x00180050: ("SliceThickness", "DS"),
    0x00181120: ("GantryDetectorTilt", "DS"),
    0x00181210: ("ConvolutionKernel", "SH"),
    0x0020000D: ("StudyInstanceUID", "UI"),
    0x0020000E: ("SeriesInstanceUID", "UI"),
    0x00200011: ("SeriesNumber", "IS"),
    0x00200013: ("InstanceNumber", "IS"),
    0x00200032: ("ImagePositionPatient", "DS"),
    0x00200037: ("ImageOrientationPatient", "DS"),
    0x00200052: ("FrameOfReferenceUID", "UI"),
    0x00280002: ("SamplesPerPixel", "US"),
    0x00280004: ("PhotometricInterpretation", "CS"),
    0x00280010: ("Rows", "US"),
    0x00280011: ("Columns", "US"),
    0x00280030: ("PixelSpacing", "DS"),
    0x00280100: ("BitsAllocated", "US"),
    0x00280101: ("BitsStored", "US"),
    0x00280103: ("PixelRepresentation", "US"),
    0x00280120: ("PixelPaddingValue", "US or SS"),
    0x00280121: ("PixelPaddingRangeLimit", "US or SS"),
    0x00281052: ("RescaleIntercept", "DS"),
    0x00281053: ("RescaleSlope", "DS"),
    0x00281054: ("RescaleType", "LO"),
}
PRINTABLE = re.compile(rb"[\x20-\x7e]*\x00?\Z")
# Numbers that float() and int() read as pydicom's DSfloat and IS do, backslash-separated.
DS_NUMBER = r" *[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)? *"
IS_NUMBER = r" *[+-]?[0-9]+ *"
NUMBERS = {
    "DS": (re.compile(rf"{DS_NUMBER}(\\{DS_NUMBER})*\Z"), float),
    "IS": (re.compile(rf"{IS_NUMBER}(\\{IS_NUMBER})*\Z"), int),
}


class Unsure(Exception):
    """The bytes are not the plain case this reader answers for."""


class HeaderValues:
    """The values a header check reads, by keyword, as pydicom's Dataset gives them.

    Answers ``get``, ``in`` and attribute access, and ``file_meta``; nothing else.
    """

    __slots__ = ("_values", "file_meta")

    def __init__(self, values: dict[str, Any], file_meta: HeaderValues | None = None) -> None:
        self._values = values
        self.file_meta = file_meta

    def get(self, keyword: str, default: Any = None) -> Any:
        return self._values.get(keyword, default)

    def __contains__(self, keyword: object) -> bool:
        return keyword in self._values

    def __getattr__(self, keyword: str) -> Any:
        try:
            return self._values[keyword]
        except KeyError:
            raise AttributeError(keyword) from None


def convert_value(vr: str, raw: bytes, pixel_representation: int | None) -> Any:
    """The value pydicom gives an element of ``vr`` holding ``raw`` (plain values only)."""
    if vr in ("US", "SS", "US or SS"):
        if len(raw) != 2:
            raise Unsure()
        if vr == "US or SS":  # implicit VR: PS3.5 A.1, resolved as pydicom does
            if pixel_representation not in (0, 1):
                raise Unsure()
            vr = "US" if pixel_representation == 0 else "SS"
        return struct.unpack("<H" if vr == "US" else "<h", raw)[0]
    if not PRINTABLE.match(raw):
        raise Unsure()
    text = raw.decode("ascii")
    if vr in NUMBERS:
        return _numbers(vr, text)
    if vr in ("LO", "SH"):  # pydicom's convert_text: split, then strip each value
        items = [item.rstrip("\0 ") for item in text.split("\\")]
    else:  # convert_string and convert_UI: strip, then split
        items = text.rstrip("\0 ").split("\\")
    return items[0] if len(items) == 1 else items


def _numbers(vr: str, text: str) -> Any:
    """A DS or IS value: None when empty, "" when blank (as DSfloat("") and IS("") are)."""
    if not text:
        return None
    text = text.rstrip("\0 ")
    if not text:
        return ""
    pattern, kind = NUMBERS[vr]
    if not pattern.match(text):
        raise Unsure()
    if "\\" not in text:
        return kind(text)
    return [kind(item) for item in text.split("\\")]
