"""CT Image Storage objects (PS3.3 A.3) from HU and geometry, written one file a slice.

The one CT DICOM writer of the project: phantom studies, the benchmark's studies and the
tests' series are all built here. :func:`ct_series` makes what every slice of a series
shares, :func:`ct_slice` one slice of it, :func:`write_series` the files.

Stored values follow the modality LUT (PS3.3 C.11.1) with slope 1: HU = stored +
RescaleIntercept, in int16 (PixelRepresentation 1) or uint16 (0). Decimal (DS) values are
written as given: a float as Python prints it, so a caller whose values need more than
DS's 16 characters passes them as strings.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    generate_uid,
)

AXIAL = (1, 0, 0, 0, 1, 0)
TRANSFER_SYNTAX = {"none": ExplicitVRLittleEndian, "jpeg2000": JPEG2000Lossless,
                   "rle": RLELossless}
# The encoders phantom studies were always written with: a seed promises the same bytes.
_ENCODER_PLUGIN = {JPEG2000Lossless: "pylibjpeg", RLELossless: "gdcm"}

Stored = NDArray[np.int16] | NDArray[np.uint16]
Decimals = Sequence[float] | Sequence[str]


@dataclass(frozen=True)
class SeriesIdentity:
    """The patient, study, series and frame of reference every slice of a series names."""

    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    patient_name: str = ""
    patient_id: str = ""

    @classmethod
    def random(cls, patient_name: str = "", patient_id: str = "") -> SeriesIdentity:
        """Fresh UIDs: a new study each call."""
        return cls(generate_uid(), generate_uid(), generate_uid(), patient_name, patient_id)


@dataclass(frozen=True)
class PixelFormat:
    """How HU are stored: stored = HU - intercept (slope 1), signed or not.

    ``padding`` is the stored PixelPaddingValue (pixels outside the scanned field), if any.
    """

    intercept: float = -1024
    signed: bool = True
    bits_stored: int = 16
    padding: int | None = None

    def stored(self, hounsfield: NDArray[np.int16]) -> Stored:
        """Inverse modality LUT: ``hounsfield`` as stored values of this format."""
        stored = hounsfield.astype(np.int32) - self.intercept
        info = np.iinfo(np.int16 if self.signed else np.uint16)
        if stored.min() < info.min or stored.max() > info.max:
            raise ValueError(f"HU do not fit {info.dtype} with intercept {self.intercept}")
        return stored.astype(np.int16) if self.signed else stored.astype(np.uint16)


def ct_series(identity: SeriesIdentity, *, rows: int, columns: int, pixel_spacing: Decimals,
              slice_thickness: float | str, pixel_format: PixelFormat = PixelFormat(),
              orientation: Decimals = AXIAL) -> Dataset:
    """The attributes every slice of an axial CT series shares, for :func:`ct_slice`."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.PatientName = identity.patient_name
    ds.PatientID = identity.patient_id
    ds.StudyInstanceUID = identity.study_uid
    ds.SeriesInstanceUID = identity.series_uid
    ds.FrameOfReferenceUID = identity.frame_of_reference_uid
    ds.ImageOrientationPatient = list(orientation)
    ds.PixelSpacing = list(pixel_spacing)
    ds.SliceThickness = slice_thickness
    image_pixel(ds, rows, columns, pixel_format)
    ds.RescaleIntercept = pixel_format.intercept
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    return ds


def image_pixel(ds: Dataset, rows: int, columns: int, pixel_format: PixelFormat) -> None:
    """Set the Image Pixel module (PS3.3 C.7.6.3) of 16-bit greyscale pixels."""
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = pixel_format.bits_stored
    ds.HighBit = pixel_format.bits_stored - 1
    ds.PixelRepresentation = 1 if pixel_format.signed else 0
    if pixel_format.padding is not None:
        ds.PixelPaddingValue = pixel_format.padding


def ct_slice(series: Dataset, stored: Stored | None, *, position: Decimals,
             instance_number: int, sop_instance_uid: str | None = None,
             transfer_syntax: UID = ExplicitVRLittleEndian) -> Dataset:
    """One slice of ``series`` at ``position`` with ``stored`` pixels (none when None).

    ``sop_instance_uid`` defaults to a fresh UID; ``transfer_syntax`` is one of
    :data:`TRANSFER_SYNTAX`.
    """
    ds = copy.deepcopy(series)
    ds.SOPInstanceUID = generate_uid() if sop_instance_uid is None else sop_instance_uid
    ds.InstanceNumber = instance_number
    ds.ImagePositionPatient = list(position)
    ds.file_meta = file_meta(ds)
    if stored is not None:
        set_pixels(ds, stored, transfer_syntax)
    return ds


def file_meta(ds: Dataset) -> FileMetaDataset:
    """File meta of ``ds`` (PS3.10 7.1), Explicit VR Little Endian until pixels are encoded."""
    meta = FileMetaDataset()
    # The file meta must name both even where an anonymiser blanked the dataset's own.
    meta.MediaStorageSOPClassUID = UID(ds.SOPClassUID or CTImageStorage)
    meta.MediaStorageSOPInstanceUID = UID(ds.SOPInstanceUID or generate_uid())
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def set_pixels(ds: Dataset, stored: Stored,
               transfer_syntax: UID = ExplicitVRLittleEndian) -> None:
    """Set Pixel Data from ``stored`` (one frame or several), native or losslessly encoded."""
    if transfer_syntax == ExplicitVRLittleEndian:
        ds.PixelData = stored.astype(stored.dtype.newbyteorder("<")).tobytes()
        return
    if transfer_syntax not in _ENCODER_PLUGIN:
        raise ValueError(f"no lossless encoder for transfer syntax {transfer_syntax}")
    # Lossless encodings only: the HU must come back bit for bit.
    ds.compress(transfer_syntax, np.ascontiguousarray(stored),
                encoding_plugin=_ENCODER_PLUGIN[transfer_syntax], generate_instance_uid=False)


def instance_numbers(count: int, *, descending: bool = False) -> list[int]:
    """Instance number of each slice in ascending-z order, 1 at the bottom or at the top."""
    return list(range(count, 0, -1)) if descending else list(range(1, count + 1))


def save(ds: Dataset, path: Path) -> Path:
    """Save ``ds`` as a DICOM file (preamble, file meta) at ``path``; return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_series(folder: Path, named: Iterable[tuple[str, Dataset]]) -> list[Path]:
    """Save each ``(file name, dataset)`` in ``folder``, one at a time; return the paths.

    ``named`` may be a generator, so a long series never has to be in memory at once.
    """
    folder.mkdir(parents=True, exist_ok=True)
    return [save(ds, folder / name) for name, ds in named]
