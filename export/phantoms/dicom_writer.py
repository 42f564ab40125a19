"""Write a phantom as a CT series (one file per slice), its DICOM SEG truth and truth.json.

The slices come from the shared CT builder (:mod:`export.phantoms.ct_dicom`); what is the
phantom's own is here: its storage format, its equipment, dates and descriptions, and UIDs
that derive from the seed (:mod:`export.phantoms.identity`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydicom.dataset import Dataset

from export.phantoms.ct_dicom import (
    TRANSFER_SYNTAX,
    PixelFormat,
    SeriesIdentity,
    ct_series,
    ct_slice,
    instance_numbers,
    write_series,
)
from export.phantoms.identity import (
    DATE,
    MANUFACTURER,
    SOFTWARE_VERSION,
    TIME,
    patient_id,
    patient_name,
    study_uid,
)
from export.phantoms.phantom import PADDING_HU, Phantom
from export.phantoms.seg import build_seg
from export.phantoms.spec import PhantomSpec
from export.phantoms.truth import write_truth

logger = logging.getLogger(__name__)


def pixel_format(spec: PhantomSpec) -> PixelFormat:
    """How the spec stores HU: its intercept and signedness, padding outside the field."""
    return PixelFormat(
        intercept=spec.intercept,
        signed=spec.signed,
        # Unsigned 12-bit is the classic CT layout; signed data use all 16 bits.
        bits_stored=16 if spec.signed else 12,
        padding=PADDING_HU - spec.intercept if spec.fov_padding else None,
    )


def ct_datasets(phantom: Phantom) -> list[Dataset]:
    """One CT Image Storage dataset per slice, ascending z, pixel data encoded per the spec."""
    spec = phantom.spec
    stored = pixel_format(spec).stored(phantom.hounsfield)
    numbers = instance_numbers(spec.slices, descending=spec.instance_order == "head_first")
    series = _series(phantom)
    out = []
    for k, z in enumerate(phantom.slice_positions_z):
        ds = ct_slice(series, stored[k], position=[phantom.origin_mm[0], phantom.origin_mm[1], z],
                      instance_number=numbers[k],
                      sop_instance_uid=study_uid(spec.seed, f"instance-{k}"),
                      transfer_syntax=TRANSFER_SYNTAX[spec.encoding])
        ds.SliceLocation = z
        out.append(ds)
    return out


def _series(phantom: Phantom) -> Dataset:
    """What every slice shares: the builder's CT series plus the phantom's own attributes."""
    spec = phantom.spec
    seed = spec.seed
    identity = SeriesIdentity(study_uid(seed, "study"), study_uid(seed, "series"),
                              study_uid(seed, "frame-of-reference"),
                              patient_name(seed), patient_id(seed))
    ds = ct_series(identity, rows=spec.size, columns=spec.size,
                   pixel_spacing=list(phantom.pixel_spacing),
                   slice_thickness=spec.slice_thickness_mm, pixel_format=pixel_format(spec))
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = DATE
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = TIME
    ds.AccessionNumber = f"PH{seed:08d}"[-16:]
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = "synthetic"
    ds.SoftwareVersions = SOFTWARE_VERSION
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "PHANTOM CT CHEST/ABDOMEN"
    ds.SeriesDescription = f"Phantom {spec.region} {spec.slice_thickness_mm:g}mm"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.PatientIdentityRemoved = "YES"
    # Required with YES (PS3.3 C.7.1.1, Type 1C); the SEG and SR made from a phantom copy both.
    ds.DeidentificationMethod = "synthetic phantom: no patient was ever identified"
    ds.BodyPartExamined = "CHEST" if spec.region == "thoracic" else "ABDOMEN"
    ds.SpacingBetweenSlices = spec.slice_spacing_mm
    ds.KVP = 120
    ds.PatientPosition = "HFS"
    ds.StudyID = f"{seed % 10**8}"
    ds.SeriesNumber = 2
    ds.AcquisitionNumber = 1
    ds.PositionReferenceIndicator = ""
    ds.WindowCenter = [40, 400]
    ds.WindowWidth = [400, 1800]
    ds.WindowCenterWidthExplanation = ["SOFT TISSUE", "BONE"]
    return ds


def write_study(phantom: Phantom, out_dir: Path) -> Path:
    """Write ``dicom/NNNN.dcm``, ``seg.dcm`` and ``truth.json`` under ``out_dir``; return it.

    Slice files are named by instance number and listed (in truth.json) in ascending z.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    datasets = ct_datasets(phantom)
    dicom_dir = out_dir / "dicom"
    paths = write_series(dicom_dir, ((f"{int(ds.InstanceNumber):04d}.dcm", ds) for ds in datasets))
    logger.debug("wrote %d slices of seed %d", len(paths), phantom.spec.seed)
    files = [f"{dicom_dir.name}/{path.name}" for path in paths]
    seg = build_seg(phantom, datasets)
    seg.save_as(out_dir / "seg.dcm", enforce_file_format=True)
    write_truth(phantom, datasets, files, seg, out_dir / "truth.json")
    return out_dir
