"""The header pass: one cheap read of each file, its screening, and what a series needs.

Each file is read with ``stop_before_pixels`` (large values deferred), so the pass costs a
few kilobytes per file whatever the study's size. Patient attributes are never copied out.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from api.dicom import bounds
from api.dicom.conformance import (
    check_file_meta,
    check_jpeg2000_codestream,
    check_no_undefined_un,
    check_part10_prefix,
    starts_with_an_element,
)
from api.dicom.frames import (
    PIXEL_MEASURES,
    PIXEL_VALUE_TRANSFORMATION,
    frame_count,
    frame_value,
    is_enhanced,
)
from api.dicom.geometry import PlaneGeometry
from api.dicom.integrity import (
    PixelDataElement,
    check_native_length,
    native_length,
    probe_pixel_data,
)
from api.dicom.native import NativeLayout, native_layout
from api.dicom.pixels import Rescale, rescale_for, short_reason
from api.dicom.screening import (
    check_image_kind,
    check_modality,
    check_transfer_syntax,
    image_type,
    plane_geometry,
    text,
)
from api.errors import BoneMetsError, CorruptPixelData, NoCTSeries, NoPixelData, NotDicom

DEFLATED = "1.2.840.10008.1.2.1.99"
DEFER_SIZE = 256 * 1024  # values larger than this stay on disk during the header pass


@dataclass(frozen=True)
class FrameHeader:
    """One image plane: a single-frame file (frame None) or one frame of a multi-frame one."""

    frame: int | None
    geometry: PlaneGeometry
    rescale: Rescale
    slice_thickness: float | None


@dataclass(frozen=True)
class SeriesIdentity:
    """The study and series an image belongs to, and what acquired it."""

    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    modality: str
    manufacturer: str
    series_description: str
    series_number: int | None


@dataclass(frozen=True)
class ImageHeader(SeriesIdentity):
    """What one accepted file says of itself: identifiers, acquisition and frame planes."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    instance_number: int | None
    image_type: tuple[str, ...]
    body_part: str  # BodyPartExamined, upper case without spaces ("" when absent)
    transfer_syntax_uid: str
    convolution_kernel: str
    rescale_type: str
    gantry_tilt: float | None
    frames: tuple[FrameHeader, ...]
    native: NativeLayout | None = None  # set where the pixels can be read straight from disk


def read_header(path: Path, max_pixels: int = bounds.DEFAULT_MAX_IMAGE_PIXELS) -> ImageHeader:
    """Read and screen one file without its pixels; raises the InvalidUpload rejecting it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return _read(path, max_pixels)
        except (BoneMetsError, MemoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - a parser meeting hostile input
            raise NotDicom(f"a damaged DICOM file ({short_reason(exc)})") from exc


def _read(path: Path, max_pixels: int) -> ImageHeader:
    size = path.stat().st_size
    with path.open("rb") as fp:
        bounds.check_inflated_size(fp)  # pydicom inflates a deflated body whole, in memory
        ds = _parse(fp)
        header_end = fp.tell()
        fp.seek(0)
        header = fp.read(header_end)
        check_part10_prefix(header[:142])
        check_file_meta(ds)
        check_no_undefined_un(header)
        check_modality(ds)
        bounds.check_declared_size(ds, max_pixels)  # before anything is done per frame or pixel
        syntax = _syntax(ds)
        element = None
        if syntax == DEFLATED:
            _check_deflated_pixels(path, ds)
        else:
            element = _check_pixel_element(fp, size, ds, syntax)
    check_image_kind(ds)
    if element is not None and element.encapsulated:
        check_jpeg2000_codestream(syntax, element.first_fragment_head)
        bounds.check_first_frame(ds, element.first_fragment_head)
    native = None
    if element is not None and not element.encapsulated:
        native = native_layout(ds, element.value_offset, syntax)
    frames = _frame_headers(ds)
    syntax = check_transfer_syntax(ds)
    return ImageHeader(
        path=path,
        sop_class_uid=text(ds, "SOPClassUID"),
        sop_instance_uid=text(ds, "SOPInstanceUID"),
        study_uid=text(ds, "StudyInstanceUID"),
        series_uid=text(ds, "SeriesInstanceUID"),
        frame_of_reference_uid=text(ds, "FrameOfReferenceUID"),
        modality="CT",
        manufacturer=text(ds, "Manufacturer"),
        series_description=text(ds, "SeriesDescription"),
        series_number=_optional_int(ds.get("SeriesNumber")),
        instance_number=_optional_int(ds.get("InstanceNumber")),
        image_type=image_type(ds),
        body_part=body_part_code(text(ds, "BodyPartExamined")),
        transfer_syntax_uid=syntax,
        convolution_kernel=_joined(ds.get("ConvolutionKernel")),
        rescale_type=_rescale_type(ds),
        gantry_tilt=_optional_float(ds.get("GantryDetectorTilt")),
        frames=frames,
        native=native,
    )


def body_part_code(value: str) -> str:
    """BodyPartExamined as a code to compare: upper case, spaces, "_" and "-" dropped."""
    return "".join(c for c in value.upper() if c not in " _-")


def _parse(fp: BinaryIO) -> Dataset:
    """The dataset up to its pixel data; files without the DICM preamble are tried as well."""
    try:
        ds = dcmread(fp, stop_before_pixels=True, defer_size=DEFER_SIZE)
    except InvalidDicomError as no_preamble:
        # Old ACR-NEMA style files start straight with elements; most other data fails here.
        fp.seek(0)
        if not starts_with_an_element(fp.read(4)):
            # A forced read of arbitrary bytes (a megabyte of zeros reads as ~130,000 empty
            # elements) costs a third of a CPU second per MiB: refuse at the first bytes.
            raise NotDicom(
                "not a DICOM file (no DICM preamble, no data element at its start)"
            ) from no_preamble
        fp.seek(0)
        try:
            ds = dcmread(fp, stop_before_pixels=True, defer_size=DEFER_SIZE, force=True)
        except Exception as exc:  # noqa: BLE001
            raise NotDicom("not a DICOM file") from exc
    if not (text(ds, "SOPClassUID") or text(ds, "Modality")):
        raise NotDicom("not a DICOM file (no SOP class and no modality)")
    return ds


def _check_pixel_element(
    fp: BinaryIO, size: int, ds: Dataset, syntax: str
) -> PixelDataElement:
    """NoPixelData / CorruptPixelData from the element header, before any decoding."""
    element = probe_pixel_data(fp, size)
    frames = frame_count(ds)
    if syntax:
        compressed = UID(syntax).is_compressed
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


def _check_deflated_pixels(path: Path, ds: Dataset) -> None:
    # A deflated body can only be read by inflating it; such files are rare and small.
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


def _frame_headers(ds: Dataset) -> tuple[FrameHeader, ...]:
    count = frame_count(ds)
    if is_enhanced(ds):
        indices: list[int | None] = list(range(count))
    elif count > 1:
        raise NoCTSeries("a multi-frame image without per-frame positions")
    else:
        indices = [None]
    return tuple(
        FrameHeader(
            frame=index,
            geometry=plane_geometry(ds, index),
            rescale=rescale_for(ds, index),
            slice_thickness=_optional_float(
                frame_value(ds, index, PIXEL_MEASURES, "SliceThickness")
            ),
        )
        for index in indices
    )


def _syntax(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    return str(meta.get("TransferSyntaxUID", "")).strip() if meta is not None else ""


def _rescale_type(ds: Dataset) -> str:
    frame = 0 if is_enhanced(ds) else None
    value = frame_value(ds, frame, PIXEL_VALUE_TRANSFORMATION, "RescaleType")
    return "" if value is None else str(value).strip().upper()


def _joined(value: Any) -> str:
    if value is None:
        return ""
    items = [value] if isinstance(value, str) else list(value)
    return "\\".join(str(item).strip() for item in items)


def _optional_int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _optional_float(value: Any) -> float | None:
    try:
        number = float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
    return number if number is not None and math.isfinite(number) else None

