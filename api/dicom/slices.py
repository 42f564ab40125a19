"""One slice of a chosen series, and its Hounsfield units, decoded one slice at a time.

:func:`load_slice_hounsfield` is picklable, for worker processes. Slices the header pass
found uncompressed (:attr:`SliceRef.native`) are read straight from the file; the others,
and any such read that fails, are decoded by pydicom. Both give the same HU, to the bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from api.dicom.geometry import PlaneGeometry, Vector
from api.dicom.hounsfield import Rescale, apply_rescale, check_plausible
from api.dicom.native import NativeLayout, read_native
from api.errors import CorruptPixelData, InvalidUpload


@dataclass(frozen=True)
class SliceRef:
    """One slice of the chosen series: where its pixels are and where it lies."""

    path: Path
    frame: int | None  # frame index in a multi-frame file; None for single-frame files
    sop_instance_uid: str  # synthetic (2.25...) where the file's was blank
    position: Vector  # ImagePositionPatient, mm
    z: float  # position projected on the series' slice normal, mm; slices ascend in z
    geometry: PlaneGeometry
    instance_number: int | None
    rescale: Rescale
    native: NativeLayout | None = None  # uncompressed 16-bit: read without pydicom


def load_slice_hounsfield(
    ref: SliceRef, out: NDArray[np.int16] | None = None
) -> NDArray[np.int16]:
    """HU of one slice as stored (int16, padding as air); picklable, for worker processes.

    Written into ``out`` (rows x columns) when given: a decode worker's shared memory.
    """
    try:
        stored = stored_values(ref)
        expected = (ref.geometry.rows, ref.geometry.columns)
        if stored.shape != expected:
            raise CorruptPixelData(f"a slice decoded to {stored.shape}, not {expected}")
        result = apply_rescale(stored, ref.rescale, out)
        check_plausible(result)
    except InvalidUpload as exc:
        frame = f" frame {ref.frame}" if ref.frame is not None else ""
        raise type(exc)(f"{ref.path.name}{frame}: {exc.detail}") from exc
    return result


def stored_values(ref: SliceRef) -> NDArray[Any]:
    """The slice's stored values: straight from the file where it can, else through pydicom."""
    if ref.native is not None:
        try:
            return read_native(ref.path, ref.native, ref.frame)
        except (CorruptPixelData, OSError, ValueError):
            # The file changed since the header pass: pydicom names the fault as it always has.
            pass
    # Imported here: pydicom and its pixel plugins are about 40 MB in each decode worker,
    # which only compressed or unusual slices need.
    from api.dicom.pixels import decode_stored

    return decode_stored(ref.path, ref.frame)
