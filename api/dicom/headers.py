"""The header pass: one cheap read of each file, its screening, and what a series needs.

Each file is read with ``stop_before_pixels`` (large values deferred), so the pass costs a
few kilobytes per file whatever the study's size. Patient attributes are never copied out.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

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
from api.dicom.hounsfield import Rescale
from api.dicom.native import NativeLayout, native_layout
from api.dicom.pixel_element import check_deflated_pixels, check_pixel_element
from api.dicom.pixels import rescale_for, short_reason
from api.dicom.quick_header import scan_header
from api.dicom.screening import (
    check_image_kind,
    check_modality,
    check_transfer_syntax,
    image_type,
    plane_geometry,
    text,
)
from api.errors import BoneMetsError, NoCTSeries, NotDicom

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
            return read_plain_header(path, max_pixels) or read_pydicom_header(path, max_pixels)
        except (BoneMetsError, MemoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - a parser meeting hostile input
            raise NotDicom(f"a damaged DICOM file ({short_reason(exc)})") from exc


def read_plain_header(path: Path, max_pixels: int) -> ImageHeader | None:
    """The header of a plain file (:mod:`api.dicom.quick_header`) that passes every check;
    None for any other, which pydicom then reads to name what is wrong."""
    with path.open("rb") as fp:
        scanned = scan_header(fp)
        if scanned is None:
            return None
        # HeaderValues answers, with pydicom's values, all that the checks ask of a Dataset.
        ds = cast(Dataset, scanned.values)
        try:
            _check_identified(ds)
            return _screened(path, fp, ds, scanned.head, max_pixels)
        except Exception:  # noqa: BLE001 - the pydicom path raises the same, or names it
            return None


def read_pydicom_header(path: Path, max_pixels: int) -> ImageHeader:
    """The header as pydicom reads it, with the checks; raises what rejects the file."""
    with path.open("rb") as fp:
        bounds.check_inflated_size(fp)  # pydicom inflates a deflated body whole, in memory
        ds = _parse(fp)
        header_end = fp.tell()
        fp.seek(0)
        return _screened(path, fp, ds, fp.read(header_end), max_pixels)


def _screened(
    path: Path, fp: BinaryIO, ds: Dataset, header: bytes, max_pixels: int
) -> ImageHeader:
    """Every check of one file, from its dataset and its bytes up to Pixel Data."""
    size = os.fstat(fp.fileno()).st_size
    fp.seek(len(header))
    check_part10_prefix(header[:142])
    check_file_meta(ds)
    check_no_undefined_un(header)
    check_modality(ds)
    bounds.check_declared_size(ds, max_pixels)  # before anything is done per frame or pixel
    syntax = _syntax(ds)
    element = None
    if syntax == DEFLATED:
        check_deflated_pixels(path, ds)
    else:
        element = check_pixel_element(fp, size, ds, syntax)
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
    _check_identified(ds)
    return ds


def _check_identified(ds: Dataset) -> None:
    if not (text(ds, "SOPClassUID") or text(ds, "Modality")):
        raise NotDicom("not a DICOM file (no SOP class and no modality)")


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

