"""Small synthetic CT DICOM objects for tests, from the shared CT builder; no patient data.

What is the tests' own stays here: stored-value patterns, odd classes and geometries, an
Enhanced CT object, shuffled file order.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.uid import UID, generate_uid

from export.phantoms import ct_dicom

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
    values = pixels if pixels is not None else stored_pattern(rows, columns, round(z * 10))
    series = ct_dicom.ct_series(
        ct_dicom.SeriesIdentity(study_uid, series_uid, FRAME_OF_REFERENCE),
        rows=values.shape[-2],
        columns=values.shape[-1],
        pixel_spacing=_ds(spacing),
        slice_thickness="1.0",
        pixel_format=ct_dicom.PixelFormat(intercept=intercept, padding=padding),
        orientation=_ds(orientation),
    )
    # What a plain axial CT series is not: other classes and modalities (blank ones too),
    # localizers, a rescale slope, a gantry tilt.
    series.SOPClassUID, series.Modality = sop_class, modality
    series.ImageType = list(image_type)
    series.RescaleSlope = _ds([slope])[0]
    del series.RescaleType  # many scanners leave it out: the readers must not need it
    if gantry_tilt is not None:
        series.GantryDetectorTilt = _ds([gantry_tilt])[0]
    _describe(series, series_number, series_description)
    return ct_dicom.ct_slice(
        series,
        values.astype(np.int16) if with_pixels else None,
        position=_ds(position if position is not None else (-5.6, -5.6, z)),
        instance_number=instance_number,
        sop_instance_uid=sop_uid,
    )


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
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = ENHANCED_CT_STORAGE, str(generate_uid())
    ds.file_meta = ct_dicom.file_meta(ds)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY_UID, series_uid
    ds.FrameOfReferenceUID, ds.Modality = FRAME_OF_REFERENCE, "CT"
    _describe(ds, 2, "synthetic enhanced")
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
    rows, columns = pixels.shape[-2:]
    ct_dicom.image_pixel(ds, rows, columns, ct_dicom.PixelFormat())
    ct_dicom.set_pixels(ds, pixels.astype(np.int16))
    return ds


def write(ds: Dataset, path: Path) -> Path:
    """Save as a DICOM file (preamble, file meta) and return the path."""
    return ct_dicom.save(ds, path)


def write_series(
    folder: Path,
    zs: Sequence[float],
    *,
    shuffle: bool = True,
    descending_instances: bool = False,
    **kwargs: Any,
) -> list[Path]:
    """One file per z (``slice-NN.dcm``), listed in a shuffled order; returns the paths."""
    numbers = ct_dicom.instance_numbers(len(zs), descending=descending_instances)
    paths = ct_dicom.write_series(folder, (
        (f"slice-{index:02d}.dcm", ct_slice(z=z, instance_number=number, **kwargs))
        for index, (z, number) in enumerate(zip(zs, numbers, strict=True))
    ))
    if shuffle:
        random.Random(7).shuffle(paths)
    return paths


def compressed(ds: Dataset, transfer_syntax: UID) -> Dataset:
    """``ds`` re-encoded with a pydicom encoder (RLE, JPEG-LS, JPEG 2000 lossless)."""
    ds.compress(transfer_syntax)
    return ds


def _describe(ds: Dataset, number: int, description: str) -> None:
    ds.Manufacturer = "bonemets tests"
    ds.SeriesNumber = number
    ds.SeriesDescription = description


def _item(**values: Any) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _ds(values: Sequence[float]) -> list[str]:
    """Decimal strings short enough for DS (16 characters)."""
    return [f"{value:.6f}".rstrip("0").rstrip(".") or "0" for value in values]
