"""Rules that reject a file before it joins a series, each with the error that names why.

Checked in this order, so that a file gets the most telling reason: modality (NotCT), pixel
data present and whole (NoPixelData, CorruptPixelData; see :mod:`api.dicom.integrity`),
object kind (NotCT: secondary captures, colour, non-image SOP classes), localizers and
non-axial planes (NoCTSeries), and last the transfer syntax (UnsupportedCompression).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID

from api.dicom.frames import (
    FRAME_TYPE,
    PIXEL_MEASURES,
    PLANE_ORIENTATION,
    PLANE_POSITION,
    frame_value,
    functional_group,
)
from api.dicom.geometry import PlaneGeometry, Vector
from api.dicom.pixels import decoder_problem
from api.errors import CorruptPixelData, NoCTSeries, NotCT, UnsupportedCompression

CT_STORAGE_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
        "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image Storage
        "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy Converted Enhanced CT Image Storage
    }
)
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
# Slices tilted further than this from the axial plane are reformats, not axial images.
MAX_AXIAL_ANGLE_DEG = 40.0
COSINE_TOLERANCE = 1e-2
COSINES = struct.Struct("<6d")


def check_modality(ds: Dataset) -> None:
    """NotCT unless Modality is CT (or, where Modality is blank, the SOP class is CT)."""
    modality = text(ds, "Modality").upper()
    if modality == "CT":
        return
    if not modality and text(ds, "SOPClassUID") in CT_STORAGE_CLASSES:
        return
    raise NotCT(f"modality {modality or '(none)'}, not CT")


def check_image_kind(ds: Dataset) -> None:
    """NotCT for secondary captures, colour and non-CT objects; NoCTSeries for localizers."""
    sop_class = text(ds, "SOPClassUID")
    if sop_class.startswith(SECONDARY_CAPTURE_PREFIX):
        raise NotCT("a secondary capture (screenshot or summary image), not a CT slice")
    # A blank SOP class is accepted: some anonymisers blank it with the UIDs.
    if sop_class and sop_class not in CT_STORAGE_CLASSES:
        raise NotCT(f"a {_uid_name(sop_class)} object, not a CT image")
    photometric = text(ds, "PhotometricInterpretation").upper()
    samples = ds.get("SamplesPerPixel")
    if photometric not in ("MONOCHROME1", "MONOCHROME2", "") or samples not in (None, 1):
        raise NotCT(f"a colour image ({photometric or 'several samples per pixel'})")
    if "LOCALIZER" in image_type(ds) or "LOCALIZER" in _frame_type(ds):
        raise NoCTSeries("a localizer (scout) image")


def check_transfer_syntax(ds: Dataset) -> str:
    """The transfer syntax UID; UnsupportedCompression where no installed plugin decodes it."""
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")).strip() if meta is not None else ""
    if not syntax:
        raise CorruptPixelData("the file meta information names no transfer syntax")
    problem = decoder_problem(syntax)
    if problem is not None:
        raise UnsupportedCompression(problem)
    return syntax


def plane_geometry(ds: Dataset, frame: int | None) -> PlaneGeometry:
    """The frame's image plane (PS3.3 C.7.6.2); NoCTSeries when missing, broken or not axial."""
    position = frame_value(ds, frame, PLANE_POSITION, "ImagePositionPatient")
    orientation = frame_value(ds, frame, PLANE_ORIENTATION, "ImageOrientationPatient")
    spacing = frame_value(ds, frame, PIXEL_MEASURES, "PixelSpacing")
    if position is None or orientation is None or spacing is None:
        raise NoCTSeries("no image plane (position, orientation or pixel spacing is missing)")
    origin = _floats(position, 3, "ImagePositionPatient")
    cosines = _floats(orientation, 6, "ImageOrientationPatient")
    steps = _floats(spacing, 2, "PixelSpacing")
    row, column, dot = _axes(COSINES.pack(*cosines))
    if dot > COSINE_TOLERANCE or min(steps) <= 0:
        raise NoCTSeries("an invalid image plane (orientation not orthogonal or bad spacing)")
    geometry = PlaneGeometry(
        origin=(origin[0], origin[1], origin[2]),
        row_cosine=row,
        column_cosine=column,
        pixel_spacing=(steps[0], steps[1]),
        rows=int(ds.Rows),
        columns=int(ds.Columns),
    )
    check_axial(geometry)
    return geometry


def check_axial(geometry: PlaneGeometry) -> None:
    """NoCTSeries for sagittal, coronal and oblique planes (reformats, tomosynthesis)."""
    problem = _axial_problem(geometry.row_cosine, geometry.column_cosine)
    if problem is not None:
        raise NoCTSeries(problem)


def text(ds: Dataset, keyword: str) -> str:
    """A string attribute, stripped; empty when absent or unreadable."""
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def image_type(ds: Dataset) -> tuple[str, ...]:
    """ImageType values, upper-case and stripped."""
    return _values(ds.get("ImageType"))


def _frame_type(ds: Dataset) -> tuple[str, ...]:
    item = functional_group(ds, 0, FRAME_TYPE) if "NumberOfFrames" in ds else None
    return _values(item.get("FrameType")) if item is not None else ()


def _values(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else list(value)
    return tuple(str(item).strip().upper() for item in items)


def _floats(value: Any, count: int, keyword: str) -> list[float]:
    items = [value] if isinstance(value, (str, int, float)) else list(value)
    try:
        numbers = [float(item) for item in items]
    except (TypeError, ValueError):
        numbers = []
    if len(numbers) != count or not all(math.isfinite(n) for n in numbers):
        raise NoCTSeries(f"an unreadable {keyword}")
    return numbers


# The slices of a series share one orientation: its numpy arithmetic (tens of microseconds)
# is done once per orientation, not once per file. Keyed by the cosines' bytes, since
# -0.0 == 0.0 but the unit vectors keep the sign of a zero.
@lru_cache(maxsize=256)
def _axes(cosines: bytes) -> tuple[Vector, Vector, float]:
    """Unit row and column cosines and the magnitude of their dot product."""
    values = COSINES.unpack(cosines)
    row, column = _unit(values[:3]), _unit(values[3:])
    return row, column, abs(float(np.dot(row, column)))


@lru_cache(maxsize=256)
def _axial_problem(row: Vector, column: Vector) -> str | None:
    """Why a plane with these cosines is not axial; None when it is.

    Only magnitudes of the normal count, so planes whose cosines differ in the sign of a
    zero, which share an entry here, have the same answer.
    """
    normal = PlaneGeometry((0.0, 0.0, 0.0), row, column, (1.0, 1.0), 1, 1).normal
    angle = math.degrees(math.acos(min(1.0, abs(normal[2]))))
    if not angle > MAX_AXIAL_ANGLE_DEG:
        return None
    largest = int(np.argmax(np.abs(normal)))
    plane = ("sagittal", "coronal", "oblique")[largest] if angle > 60 else "oblique"
    return f"a {plane} image ({angle:.0f} degrees from axial), not an axial slice"


def _unit(vector: Sequence[float]) -> tuple[float, float, float]:
    array = np.asarray(vector, dtype=np.float64)
    length = float(np.linalg.norm(array))
    if abs(length - 1.0) > COSINE_TOLERANCE:
        raise NoCTSeries("an invalid ImageOrientationPatient (direction cosines not unit length)")
    array = array / length
    return (float(array[0]), float(array[1]), float(array[2]))


def _uid_name(uid: str) -> str:
    name = UID(uid).name
    return name if name != uid else f"SOP class {uid}"
