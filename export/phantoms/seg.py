"""The truth as a DICOM Segmentation (PS3.3 A.51): one binary segment, "Metastasis".

Frames exist only for slices with metastasis. A negative study still gets a SEG, so every
study has one: all its frames are empty, JPEG 2000 lossless compressed (a few kB); DICOM has
no way to say "no segment voxels" without frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless
from pydicom.valuerep import DA, TM

from export.phantoms.identity import DATE, MANUFACTURER, SOFTWARE_VERSION, TIME, study_uid
from export.phantoms.phantom import Phantom

SEGMENT_LABEL = "Metastasis"
SEG_SERIES_NUMBER = 100


def segment_description() -> hd.seg.SegmentDescription:
    """Segment 1: a morphologically abnormal structure of type metastatic neoplasm, in bone."""
    return hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=SEGMENT_LABEL,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.NeoplasmMetastatic,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name="bonemets-phantom", version=SOFTWARE_VERSION,
            family=codes.cid7162.MorphologicalOperations,
        ),
        anatomic_regions=[codes.SCT.Bone],
    )


def build_seg(phantom: Phantom, source_images: Sequence[Dataset]) -> hd.seg.Segmentation:
    """SEG of ``phantom.labels`` referencing ``source_images`` (ascending z, as the labels)."""
    seed = phantom.spec.seed
    negative = not phantom.labels.any()
    seg = hd.seg.Segmentation(
        source_images=source_images,
        pixel_array=phantom.labels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment_description()],
        series_instance_uid=study_uid(seed, "seg-series"),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=study_uid(seed, "seg-instance"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name="synthetic",
        software_versions=SOFTWARE_VERSION,
        device_serial_number="0",
        content_description="Synthetic ground truth",
        content_label="TRUTH",
        series_description="Phantom metastasis truth",
        omit_empty_frames=not negative,
        transfer_syntax_uid=JPEG2000Lossless if negative else ExplicitVRLittleEndian,
        content_date=DATE,
        content_time=TIME,
        series_date=DATE,
        series_time=TIME,
    )
    _pin_volatile(seg, seed)
    return seg


def _pin_volatile(seg: hd.seg.Segmentation, seed: int) -> None:
    """Replace the clock times and random UIDs highdicom adds, so equal seeds give equal bytes."""
    seg.InstanceCreationDate = DA(DATE)
    seg.InstanceCreationTime = TM(TIME)
    for item in seg.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = DATE + TIME
    organization = study_uid(seed, "seg-dimension-organization")
    for sequence in ("DimensionOrganizationSequence", "DimensionIndexSequence"):
        for item in seg.get(sequence, []):
            item.DimensionOrganizationUID = organization
