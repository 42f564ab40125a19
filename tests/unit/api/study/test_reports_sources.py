"""A series a DICOM Segmentation cannot hold is a clear 4xx, not a storage error."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from api.errors import SegmentationUnsupported
from api.reports.sources import SourceImages
from api.schemas import StudyResult
from api.schemas.result import RESULT, SLICE
from api.study.reports import seg_input
from api.study.storage import StudyStore


def test_a_series_over_several_multi_frame_instances_has_no_seg(tmp_path: Path) -> None:
    result = StudyResult.model_validate({**RESULT, "slices": [{**SLICE, "index": 0}]})
    two_instances = SourceImages(datasets=(Dataset(), Dataset()), place=((0, 0), (1, 0)))
    with pytest.raises(SegmentationUnsupported, match="one multi-frame instance") as caught:
        seg_input(StudyStore(tmp_path), "0" * 32, result, two_instances)
    assert caught.value.status == 422
