"""Encoding rules a file must keep before we read it: refused, with the rule named, not guessed.

Readers in the wild are lenient (pydicom reads most of what follows); a service that finds
lesions on what it reads is not. Each check here is cheap and runs in the header pass.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from api.errors import CorruptPixelData, MalformedDicom

PREAMBLE = 128
PREFIX = b"DICM"
# PS3.10 Table 7.1-1: Type 1 elements of the File Meta Information.
REQUIRED_META = (
    ("MediaStorageSOPClassUID", "(0002,0002) Media Storage SOP Class UID"),
    ("MediaStorageSOPInstanceUID", "(0002,0003) Media Storage SOP Instance UID"),
    ("TransferSyntaxUID", "(0002,0010) Transfer Syntax UID"),
)
UN_UNDEFINED = b"UN\x00\x00\xff\xff\xff\xff"
JPEG2000_SYNTAXES = frozenset({
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.92",
    "1.2.840.10008.1.2.4.93", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.4.203",
})
JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  "
J2K_SOC = b"\xff\x4f"


# The groups a DICOM or ACR-NEMA file without a preamble starts with: file meta, identifying.
FIRST_GROUPS = frozenset({0x0002, 0x0008})


def starts_with_an_element(head: bytes) -> bool:
    """Whether ``head`` opens with a tag of a first group, in either byte order."""
    if len(head) < 4:
        return False
    little = int.from_bytes(head[:2], "little")
    big = int.from_bytes(head[:2], "big")
    return little in FIRST_GROUPS or big in FIRST_GROUPS


def check_part10_prefix(head: bytes) -> None:
    """PS3.10 7.1: a 128-byte preamble, then ``DICM``, then the File Meta Information.

    ``head`` is the file's first bytes (at least 142).
    """
    if len(head) < PREAMBLE + len(PREFIX) or head[PREAMBLE:PREAMBLE + 4] != PREFIX:
        raise MalformedDicom(
            "not a DICOM Part 10 file: no 128-byte preamble and 'DICM' prefix (PS3.10 7.1)"
        )
    vr = head[PREAMBLE + 8:PREAMBLE + 10]
    if head[PREAMBLE + 4:PREAMBLE + 6] == b"\x02\x00" and not vr.isalpha():
        raise MalformedDicom(
            "the File Meta Information is not Explicit VR Little Endian (PS3.10 7.1)"
        )


def check_file_meta(ds: Dataset) -> None:
    """The Type 1 File Meta elements are present and not empty."""
    meta = getattr(ds, "file_meta", None)
    for keyword, name in REQUIRED_META:
        if meta is None or not str(meta.get(keyword, "") or "").strip():
            raise MalformedDicom(f"the File Meta Information lacks {name}, Type 1 in PS3.10")


def check_no_undefined_un(header: bytes) -> None:
    """Refuse UN elements of undefined length: a sequence whose VR the sender lost.

    PS3.5 6.2.2 lets a reader parse such a value as implicit VR little endian; a file that
    needs it came through a conversion that dropped what the element was, and we do not
    guess at an encoding before measuring a patient's anatomy.
    """
    if UN_UNDEFINED in header:
        raise MalformedDicom(
            "an element with VR UN and undefined length (a sequence whose VR was lost in "
            "conversion, PS3.5 6.2.2); re-export the file from its source"
        )


def check_jpeg2000_codestream(transfer_syntax: str, first_fragment: bytes) -> None:
    """PS3.5 A.4.4: JPEG 2000 pixel data is a bare codestream, without the JP2 file header."""
    if transfer_syntax not in JPEG2000_SYNTAXES or not first_fragment:
        return
    if first_fragment.startswith(JP2_SIGNATURE):
        raise CorruptPixelData(
            "the JPEG 2000 pixel data carries a JP2 file header, which PS3.5 A.4.4 forbids"
        )
    if not first_fragment.startswith(J2K_SOC):
        raise CorruptPixelData("the JPEG 2000 pixel data does not start with a codestream")
