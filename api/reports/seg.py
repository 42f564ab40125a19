"""A study's lesions as a BINARY DICOM Segmentation on the source series' own pixel grid.

One segment per 3D lesion (segment number = lesion id). Frames without lesion pixels are
left out by highdicom, which keeps each remaining frame's reference to its own source
instance (or source frame), so no frame is shifted onto another slice.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from api.reports import codes
from api.reports.codes import ALGORITHM_NAME, MANUFACTURER
from api.reports.uids import report_uid, tracking_uid
from api.schemas import StudyResult

SEG_SERIES_NUMBER = 9901


def algorithm(result: StudyResult) -> hd.AlgorithmIdentificationSequence:
    """The algorithm identification: name, the served model's version, family AI."""
    return hd.AlgorithmIdentificationSequence(
        name=ALGORITHM_NAME, family=codes.ALGORITHM_FAMILY, version=result.model.version)


def segment_descriptions(job_id: str, result: StudyResult) -> list[hd.seg.SegmentDescription]:
    """One description per lesion, numbered by lesion id, tracked as in the SR."""
    return [
        hd.seg.SegmentDescription(
            segment_number=lesion.id,
            segment_label=f"Lesion {lesion.id}",
            segmented_property_category=codes.CATEGORY,
            segmented_property_type=codes.LESION_TYPE,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm(result),
            tracking_uid=tracking_uid(job_id, lesion.id),
            tracking_id=f"Lesion {lesion.id}",
        )
        for lesion in sorted(result.lesions, key=lambda lesion: lesion.id)
    ]


def build_seg(job_id: str, result: StudyResult, images: Sequence[Dataset],
              labels: NDArray[np.uint16]) -> Dataset:
    """The SEG of a finished study with lesions.

    ``labels`` holds, per frame of ``images`` (source headers of one series: single-frame
    instances, or one multi-frame instance), each pixel's lesion id (0: none). The lesion
    ids must be 1..n, as the result numbers them.
    """
    if not result.lesions:
        raise ValueError("a Segmentation holds at least one segment")
    ids = sorted(lesion.id for lesion in result.lesions)
    if ids != list(range(1, len(ids) + 1)):
        raise ValueError(f"lesion ids are not 1..n: {ids}")
    return hd.seg.Segmentation(
        source_images=list(images),
        pixel_array=labels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(job_id, result),
        series_instance_uid=report_uid(job_id, "seg-series"),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=report_uid(job_id, "seg"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=ALGORITHM_NAME,
        software_versions=result.model.version,
        device_serial_number="0",
        series_description="bonemets lesions",
        content_label="LESIONS",
        content_description="Bone metastases found by bonemets",
    )
