"""Pixel data to Hounsfield units through pydicom: decoding, and the rescale and padding a
dataset declares (the arithmetic itself is :mod:`api.dicom.hounsfield`'s).

Modality LUT (PS3.3 C.11.1.1.2): ``HU = RescaleSlope * stored + RescaleIntercept``, from the
top level of a single-frame image or from the Pixel Value Transformation functional group of
an enhanced one. Results are rounded half to even (``numpy.rint``) and clipped to int16.

Pixel padding (PS3.3 C.7.5.1.1.2): stored values equal to PixelPaddingValue, or between it
and PixelPaddingRangeLimit, mark pixels outside the reconstructed field (GE's -2000 or
-32768 around the body circle). They become air, -1024 HU, so that resampling and windowing
see the same air as the rest of the outside. A padding value whose modality-LUT value lies
above -1000 HU would name a tissue value, so it is ignored rather than erase tissue.

Decoding goes through pydicom's pixel plugins (pylibjpeg, openjpeg, libjpeg, gdcm); plain
uncompressed slices skip it (:mod:`api.dicom.native`). The functions taking a path and a
frame index are pure and can run in a worker process.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.utils import pixel_array
from pydicom.uid import UID

from api.dicom.bounds import check_compressed_frame
from api.dicom.frames import PIXEL_VALUE_TRANSFORMATION, frame_count, frame_value
from api.dicom.hounsfield import (
    INT16_MAX,
    PADDING_CEILING_HU,
    Rescale,
    apply_rescale,
    check_plausible,
)
from api.errors import BoneMetsError, CorruptPixelData, UnsupportedCompression


def rescale_for(ds: Dataset, frame: int | None = None) -> Rescale:
    """The frame's Rescale: functional group first, then top level (PS3.3 C.11.1.1.2)."""
    slope = _number(frame_value(ds, frame, PIXEL_VALUE_TRANSFORMATION, "RescaleSlope"), 1.0)
    intercept = _number(frame_value(ds, frame, PIXEL_VALUE_TRANSFORMATION, "RescaleIntercept"), 0.0)
    if slope == 0.0 or not math.isfinite(slope) or not math.isfinite(intercept):
        raise CorruptPixelData(f"unusable rescale slope {slope} / intercept {intercept}")
    padding = _padding_range(ds)
    if padding is not None and max(slope * padding[0], slope * padding[1]) + intercept > (
        PADDING_CEILING_HU
    ):
        padding = None
    return Rescale(slope, intercept, padding)


def hounsfield(ds: Dataset, frame: int | None = None) -> NDArray[np.int16]:
    """HU of one frame of a dataset read with its pixel data (int16, padding as air)."""
    if frame is None and frame_count(ds) > 1:
        raise ValueError("a multi-frame dataset needs a frame index")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stored = _decoded(lambda: pixel_array(ds, index=frame), _transfer_syntax(ds))
    result = apply_rescale(_single_plane(stored), rescale_for(ds, frame))
    check_plausible(result)
    return result


def decode_hounsfield(path: Path, frame: int | None = None) -> NDArray[np.int16]:
    """HU of one frame of a file: header, decode and rescale in one picklable call."""
    header = _read_header(path)
    result = apply_rescale(decode_stored(path, frame), rescale_for(header, frame))
    check_plausible(result)
    return result


def decode_stored(path: Path, frame: int | None = None) -> NDArray[Any]:
    """Stored values of one frame (2-D), decoded by pydicom's pixel plugins."""
    # A codestream declaring more than the header (a bomb) is refused before the decoder
    # allocates for it.
    check_compressed_frame(path, frame)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if frame is not None:
            try:
                # Reads only this frame's bytes: a long multi-frame file never sits whole.
                return _single_plane(pixel_array(str(path), index=frame))
            except Exception:  # noqa: BLE001 - retried below by the tolerant reader
                pass
        ds = _read_full(path)
        return _single_plane(_decoded(lambda: pixel_array(ds, index=frame), _transfer_syntax(ds)))


# The installed plugins do not change while the process runs; the header pass asks per file.
@lru_cache(maxsize=64)
def decoder_problem(transfer_syntax: str) -> str | None:
    """Why no installed plugin decodes ``transfer_syntax``; None when one does."""
    uid = UID(transfer_syntax)
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        return f"no decoder exists for the transfer syntax {_ts_name(uid)}"
    if not decoder.is_available:
        return f"no installed plugin decodes the transfer syntax {_ts_name(uid)}"
    return None


def _decoded(decode: Any, transfer_syntax: str) -> NDArray[Any]:
    """Run a pydicom decode, turning its failures into the upload errors."""
    try:
        result: NDArray[Any] = decode()
    except BoneMetsError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure is the file's fault
        problem = decoder_problem(transfer_syntax) if transfer_syntax else None
        if problem is not None:
            raise UnsupportedCompression(problem) from exc
        raise CorruptPixelData(f"the pixel data cannot be decoded ({short_reason(exc)})") from exc
    return result


def _single_plane(stored: NDArray[Any]) -> NDArray[Any]:
    if stored.ndim != 2 or stored.dtype.kind not in "iu":
        raise CorruptPixelData(f"decoded to {stored.dtype} {stored.shape}, not one grey plane")
    return stored


def _read_header(path: Path) -> Dataset:
    try:
        return dcmread(path, stop_before_pixels=True, force=True)
    except Exception as exc:  # noqa: BLE001 - unreadable here means damaged since screening
        raise CorruptPixelData(f"the file can no longer be read ({short_reason(exc)})") from exc


def _read_full(path: Path) -> Dataset:
    try:
        return dcmread(path, force=True)
    except Exception as exc:  # noqa: BLE001
        raise CorruptPixelData(f"the pixel data cannot be read ({short_reason(exc)})") from exc


def _transfer_syntax(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    value = meta.get("TransferSyntaxUID") if meta is not None else None
    return str(value) if value else ""


def _padding_range(ds: Dataset) -> tuple[int, int] | None:
    """PixelPaddingValue (and RangeLimit) as signed stored values, PS3.3 C.7.5.1.1.2."""
    value = ds.get("PixelPaddingValue")
    if not isinstance(value, int):
        return None  # absent, or damaged into a list
    limit = ds.get("PixelPaddingRangeLimit")
    limit = limit if isinstance(limit, int) else value
    signed = ds.get("PixelRepresentation") == 1
    # Written as US in a signed image: reinterpret the 16 bits.
    low, high = sorted(v - 65536 if signed and v > INT16_MAX else v for v in (value, limit))
    return (low, high)


def _number(value: Any, default: float) -> float:
    if value is None or value == "":
        return default
    return float(value)


def _ts_name(uid: UID) -> str:
    return f"'{uid.name}' ({uid})" if uid.name != str(uid) else str(uid)


def short_reason(exc: BaseException) -> str:
    """An exception on one line, its message cut at 160 characters, for error details."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__
