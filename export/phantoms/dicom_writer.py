"""Write a phantom as a CT series (one file per slice), its DICOM SEG truth and truth.json.

Stored values follow the modality LUT (PS3.3 C.11.1): HU = stored * RescaleSlope +
RescaleIntercept, with slope 1, so stored = HU - intercept, in int16 (PixelRepresentation 1)
or uint16 (0). UIDs derive from the seed, so a study written twice is the same study.
"""

from __future__ import annotations

import copy
import logging
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

from export.phantoms.phantom import PADDING_HU, Phantom
from export.phantoms.spec import PhantomSpec

logger = logging.getLogger(__name__)

MANUFACTURER = "bonemets-phantom"
SOFTWARE_VERSION = "bonemets-phantom 1"
_TRANSFER_SYNTAX = {"jpeg2000": JPEG2000Lossless, "rle": RLELossless}
_ENCODER_PLUGIN = {"jpeg2000": "pylibjpeg", "rle": "gdcm"}


def study_uid(seed: int, what: str) -> UID:
    """Deterministic UID for part ``what`` of the phantom study made from ``seed``."""
    return generate_uid(entropy_srcs=["bonemets-phantom", str(seed), what])


def patient_name(seed: int) -> str:
    """Plainly fake patient name."""
    return f"PHANTOM^{seed % 10000:04d}"


def patient_id(seed: int) -> str:
    """Plainly fake patient ID."""
    return f"PHANTOM-{seed:04d}"


def instance_numbers(spec: PhantomSpec) -> list[int]:
    """Instance number of each slice in ascending-z order (head first: 1 is the top slice)."""
    n = spec.slices
    return list(range(n, 0, -1)) if spec.instance_order == "head_first" else list(range(1, n + 1))


Stored = NDArray[np.int16] | NDArray[np.uint16]


def stored_values(hounsfield: NDArray[np.int16], spec: PhantomSpec) -> Stored:
    """Inverse modality LUT (slope 1): stored = HU - intercept, in the spec's signedness."""
    stored = hounsfield.astype(np.int32) - spec.intercept
    info = np.iinfo(np.int16 if spec.signed else np.uint16)
    if stored.min() < info.min or stored.max() > info.max:
        raise ValueError(f"HU do not fit {info.dtype} with intercept {spec.intercept}")
    return stored.astype(np.int16) if spec.signed else stored.astype(np.uint16)


def ct_datasets(phantom: Phantom) -> list[Dataset]:
    """One CT Image Storage dataset per slice, ascending z, pixel data encoded per the spec."""
    spec = phantom.spec
    stored = stored_values(phantom.hounsfield, spec)
    numbers = instance_numbers(spec)
    base = _series_base(phantom)
    out = []
    for k, z in enumerate(phantom.slice_positions_z):
        ds = _slice_dataset(base, phantom, k, z, numbers[k])
        _set_pixels(ds, stored[k], spec)
        out.append(ds)
    return out


def _series_base(phantom: Phantom) -> Dataset:
    """Attributes shared by every slice (Patient, Study, Series, Frame of Reference, Equipment)."""
    spec = phantom.spec
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = "20240101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = "120000"
    ds.AccessionNumber = f"PH{spec.seed:08d}"[-16:]
    ds.Modality = "CT"
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = "synthetic"
    ds.SoftwareVersions = SOFTWARE_VERSION
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "PHANTOM CT CHEST/ABDOMEN"
    ds.SeriesDescription = f"Phantom {spec.region} {spec.slice_thickness_mm:g}mm"
    ds.PatientName = patient_name(spec.seed)
    ds.PatientID = patient_id(spec.seed)
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.PatientIdentityRemoved = "YES"
    ds.BodyPartExamined = "CHEST" if spec.region == "thoracic" else "ABDOMEN"
    ds.SliceThickness = spec.slice_thickness_mm
    ds.SpacingBetweenSlices = spec.slice_spacing_mm
    ds.KVP = 120
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study_uid(spec.seed, "study")
    ds.SeriesInstanceUID = study_uid(spec.seed, "series")
    ds.StudyID = f"{spec.seed % 10**8}"
    ds.SeriesNumber = 2
    ds.AcquisitionNumber = 1
    ds.FrameOfReferenceUID = study_uid(spec.seed, "frame-of-reference")
    ds.PositionReferenceIndicator = ""
    _image_attributes(ds, phantom)
    return ds


def _image_attributes(ds: Dataset, phantom: Phantom) -> None:
    """Image Plane, Image Pixel, CT Image and VOI LUT attributes shared by the slices."""
    spec = phantom.spec
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = list(phantom.pixel_spacing)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = spec.size
    ds.BitsAllocated = 16
    # Unsigned 12-bit is the classic CT layout; signed data use all 16 bits.
    ds.BitsStored = 16 if spec.signed else 12
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if spec.signed else 0
    ds.RescaleIntercept = spec.intercept
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = [40, 400]
    ds.WindowWidth = [400, 1800]
    ds.WindowCenterWidthExplanation = ["SOFT TISSUE", "BONE"]
    if spec.fov_padding:
        ds.PixelPaddingValue = PADDING_HU - spec.intercept


def _slice_dataset(base: Dataset, phantom: Phantom, k: int, z: float, number: int) -> Dataset:
    spec = phantom.spec
    ds = copy.deepcopy(base)
    ds.SOPInstanceUID = study_uid(spec.seed, f"instance-{k}")
    ds.InstanceNumber = number
    ds.ImagePositionPatient = [phantom.origin_mm[0], phantom.origin_mm[1], z]
    ds.SliceLocation = z
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def _set_pixels(ds: Dataset, stored: Stored, spec: PhantomSpec) -> None:
    if spec.encoding == "none":
        ds.PixelData = np.ascontiguousarray(stored).tobytes()
        return
    # Lossless encodings only: the HU must come back bit for bit.
    ds.compress(_TRANSFER_SYNTAX[spec.encoding], np.ascontiguousarray(stored),
                encoding_plugin=_ENCODER_PLUGIN[spec.encoding], generate_instance_uid=False)


def write_series(datasets: list[Dataset], phantom: Phantom, dicom_dir: Path) -> list[str]:
    """Write the slices as ``NNNN.dcm`` by instance number; file names in ascending-z order."""
    dicom_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for ds in datasets:
        name = f"{int(ds.InstanceNumber):04d}.dcm"
        ds.save_as(dicom_dir / name, enforce_file_format=True)
        names.append(f"{dicom_dir.name}/{name}")
    logger.debug("wrote %d slices of seed %d", len(names), phantom.spec.seed)
    return names


def write_study(phantom: Phantom, out_dir: Path) -> Path:
    """Write ``dicom/NNNN.dcm``, ``seg.dcm`` and ``truth.json`` under ``out_dir``; return it."""
    from export.phantoms.seg import build_seg
    from export.phantoms.truth import write_truth

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    datasets = ct_datasets(phantom)
    files = write_series(datasets, phantom, out_dir / "dicom")
    seg = build_seg(phantom, datasets)
    seg.save_as(out_dir / "seg.dcm", enforce_file_format=True)
    write_truth(phantom, datasets, files, seg, out_dir / "truth.json")
    return out_dir
