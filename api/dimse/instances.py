"""Each received instance's fate: stored (read as part of the chosen series) or failed, with
the DICOM failure code a STOW-RS response or a C-STORE status carries.

PS3.18 10.5.3 takes its Failure Reason (0008,1197) values from the C-STORE statuses of PS3.4
B.2.3 and PS3.7 C: the ones used here are listed in :data:`FAILURE_CODES`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread

from api.dicom.headers import read_header
from api.dicom.series import CTSeries
from api.errors import (
    CorruptPixelData,
    ImageTooLarge,
    InvalidUpload,
    MalformedDicom,
    NoPixelData,
    NotCT,
    NotDicom,
    TooManySlices,
    UnsupportedCompression,
)

PROCESSING_FAILURE = 0x0110  # PS3.7 C: the instance was read but is not part of the study read
SOP_CLASS_NOT_SUPPORTED = 0x0122  # not a CT image (an MR, an SR, a secondary capture)
OUT_OF_RESOURCES = 0xA700  # past the image or slice bounds
DOES_NOT_MATCH_SOP_CLASS = 0xA900  # DICOM, but not a usable image of its class
CANNOT_UNDERSTAND = 0xC000  # not DICOM, or pixels that do not decode
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122

# Most specific class first: the first match names the code.
FAILURE_CODES: tuple[tuple[type[InvalidUpload], int], ...] = (
    (NotDicom, CANNOT_UNDERSTAND),
    (CorruptPixelData, CANNOT_UNDERSTAND),
    (MalformedDicom, DOES_NOT_MATCH_SOP_CLASS),
    (NoPixelData, DOES_NOT_MATCH_SOP_CLASS),
    (NotCT, SOP_CLASS_NOT_SUPPORTED),
    (UnsupportedCompression, TRANSFER_SYNTAX_NOT_SUPPORTED),
    (ImageTooLarge, OUT_OF_RESOURCES),
    (TooManySlices, OUT_OF_RESOURCES),
)


@dataclass(frozen=True)
class Outcome:
    """One received file: its SOP class and instance UIDs ("" when unreadable) and, when it
    failed, the failure code and why."""

    sop_class_uid: str
    sop_instance_uid: str
    failure: int | None = None
    reason: str = ""


def failure_code(error: BaseException) -> int:
    """The failure code of an instance refused with ``error``."""
    for kind, code in FAILURE_CODES:
        if isinstance(error, kind):
            return code
    return PROCESSING_FAILURE


def sop_identity(path: Path) -> tuple[str, str]:
    """(SOP Class UID, SOP Instance UID) of a file, as far as it can be read; "" otherwise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = dcmread(path, stop_before_pixels=True,
                         specific_tags=["SOPClassUID", "SOPInstanceUID"])
        except Exception:  # noqa: BLE001 - whatever a client sent
            return "", ""
    return str(ds.get("SOPClassUID", "")).strip(), str(ds.get("SOPInstanceUID", "")).strip()


def outcomes(files: Sequence[Path], series: CTSeries | None,
             refusal: BaseException | None, max_image_pixels: int) -> list[Outcome]:
    """Each file's outcome: stored when the chosen ``series`` reads it; else its own header
    error's code, or, for a readable CT image left out of the study, ``refusal``'s code (the
    series-level error when no series was chosen) or PROCESSING_FAILURE."""
    chosen = {ref.path for ref in series.slices} if series is not None else set()
    found = []
    for path in files:
        class_uid, instance_uid = sop_identity(path)
        if path in chosen:
            found.append(Outcome(class_uid, instance_uid))
            continue
        try:
            read_header(path, max_image_pixels)
        except InvalidUpload as exc:
            found.append(Outcome(class_uid, instance_uid, failure_code(exc), exc.detail))
            continue
        if refusal is not None:
            reason = getattr(refusal, "detail", "the study could not be read")
            found.append(Outcome(class_uid, instance_uid, failure_code(refusal), reason))
        else:
            found.append(Outcome(class_uid, instance_uid, PROCESSING_FAILURE,
                                 "not part of the series chosen for this study"))
    return found
