"""Small synthetic CT DICOM objects for tests: made with pydicom, no patient data at all."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
STUDY_UID = "1.2.826.0.1.3680043.10.543.1"
SERIES_UID = "1.2.826.0.1.3680043.10.543.1.1"
FRAME_OF_REFERENCE = "1.2.826.0.1.3680043.10.543.1.9"


def tilted(degrees: float) -> tuple[float, ...]:
    """Axial orientation tilted about the patient x axis (a gantry tilt)."""
    angle = math.radians(degrees)
    return (1.0, 0.0, 0.0, 0.0, math.cos(angle), -math.sin(angle))


def stored_pattern(rows: int, columns: int, seed: int) -> NDArray[np.int16]:
    """Distinct, deterministic stored values (0..2999) for one slice."""
    base = np.arange(rows * columns, dtype=np.int32).reshape(rows, columns)
    return ((base * 7 + seed * 131) % 3000).astype(np.int16)


def ct_slice(
    *,
    z: float = 0.0,
    position: Sequence[float] | None = None,
    orientation: Sequence[float] = AXIAL,
    pixels: NDArray[Any] | None = None,
    rows: int = 16,
    columns: int = 16,
    spacing: tuple[float, float] = (0.7, 0.7),
    slope: float = 1.0,
    intercept: float = -1024.0,
    padding: int | None = None,
    series_uid: str = SERIES_UID,
    study_uid: str = STUDY_UID,
    sop_uid: str | None = None,
    sop_class: str = CT_IMAGE_STORAGE,
    modality: str = "CT",
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL"),
    instance_number: int = 1,
    series_number: int = 1,
    series_description: str = "synthetic axial",
    gantry_tilt: float | None = None,
    with_pixels: bool = True,
) -> Dataset:
    """One single-frame CT Image Storage object (signed 16-bit, Explicit VR Little Endian)."""
    sop_uid = sop_uid if sop_uid is not None else str(generate_uid())
    ds = _base(sop_class, sop_uid, ExplicitVRLittleEndian)
    _identify(ds, study_uid, series_uid, modality, series_number, series_description)
    ds.InstanceNumber = instance_number
    ds.ImageType = list(image_type)
    ds.ImagePositionPatient = _ds(position if position is not None else (-5.6, -5.6, z))
    ds.ImageOrientationPatient = _ds(orientation)
    ds.PixelSpacing = _ds(spacing)
    ds.SliceThickness = "1.0"
    if gantry_tilt is not None:
        ds.GantryDetectorTilt = _ds([gantry_tilt])[0]
    ds.RescaleSlope = _ds([slope])[0]
    ds.RescaleIntercept = _ds([intercept])[0]
    values = pixels if pixels is not None else stored_pattern(rows, columns, round(z * 10))
    _image_pixel(ds, values.astype(np.int16), padding, with_pixels)
    return ds


def enhanced_ct(
    positions: Sequence[Sequence[float]],
    pixels: NDArray[np.int16],
    rescales: Sequence[tuple[float, float]],
    *,
    orientation: Sequence[float] = AXIAL,
    spacing: tuple[float, float] = (0.7, 0.7),
    series_uid: str = SERIES_UID,
) -> Dataset:
    """An Enhanced CT object: per-frame positions and rescale, shared orientation and spacing."""
    ds = _base(ENHANCED_CT_STORAGE, str(generate_uid()), ExplicitVRLittleEndian)
    _identify(ds, STUDY_UID, series_uid, "CT", 2, "synthetic enhanced")
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.NumberOfFrames = len(positions)
    shared = Dataset()
    shared.PlaneOrientationSequence = [_item(ImageOrientationPatient=_ds(orientation))]
    shared.PixelMeasuresSequence = [_item(PixelSpacing=_ds(spacing), SliceThickness="1.0")]
    ds.SharedFunctionalGroupsSequence = [shared]
    frames = []
    for position, (slope, intercept) in zip(positions, rescales, strict=True):
        frame = Dataset()
        frame.PlanePositionSequence = [_item(ImagePositionPatient=_ds(position))]
        frame.PixelValueTransformationSequence = [
            _item(
                RescaleSlope=_ds([slope])[0], RescaleIntercept=_ds([intercept])[0], RescaleType="HU"
            )
        ]
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = frames
    _image_pixel(ds, pixels.astype(np.int16), None, True)
    return ds


def write(ds: Dataset, path: Path) -> Path:
    """Save as a DICOM file (preamble, file meta) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_series(
    folder: Path,
    zs: Sequence[float],
    *,
    shuffle: bool = True,
    descending_instances: bool = False,
    **kwargs: Any,
) -> list[Path]:
    """One file per z (``slice-NN.dcm``), listed in a shuffled order; returns the paths."""
    paths = []
    count = len(zs)
    for index, z in enumerate(zs):
        number = count - index if descending_instances else index + 1
        ds = ct_slice(z=z, instance_number=number, **kwargs)
        paths.append(write(ds, folder / f"slice-{index:02d}.dcm"))
    if shuffle:
        random.Random(7).shuffle(paths)
    return paths


def compressed(ds: Dataset, transfer_syntax: UID) -> Dataset:
    """``ds`` re-encoded with a pydicom encoder (RLE, JPEG-LS, JPEG 2000 lossless)."""
    ds.compress(transfer_syntax)
    return ds


def _base(sop_class: str, sop_uid: str, transfer_syntax: UID) -> Dataset:
    meta = FileMetaDataset()
    # The file meta must name both even where an anonymiser blanked the dataset's own.
    meta.MediaStorageSOPClassUID = UID(sop_class or CT_IMAGE_STORAGE)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid or generate_uid())
    meta.TransferSyntaxUID = transfer_syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    return ds


def _identify(
    ds: Dataset, study: str, series: str, modality: str, number: int, description: str
) -> None:
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.FrameOfReferenceUID = FRAME_OF_REFERENCE
    ds.Modality = modality
    ds.Manufacturer = "bonemets tests"
    ds.SeriesNumber = number
    ds.SeriesDescription = description


def _image_pixel(
    ds: Dataset, pixels: NDArray[np.int16], padding: int | None, with_pixels: bool
) -> None:
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    if padding is not None:
        ds.PixelPaddingValue = padding
    if with_pixels:
        ds.PixelData = pixels.astype("<i2").tobytes()


def _item(**values: Any) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _ds(values: Sequence[float]) -> list[str]:
    """Decimal strings short enough for DS (16 characters)."""
    return [f"{value:.6f}".rstrip("0").rstrip(".") or "0" for value in values]
