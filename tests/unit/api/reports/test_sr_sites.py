"""The SR names each lesion's site as its finding site, and still passes dciodvfy."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from api.reports.outline import Outline
from api.reports.sources import SourceImages
from api.reports.sr import build_sr
from api.schemas import StudyResult
from api.schemas.result import LESION, RESULT
from tests.api.dicom_checks import SITE_CODES as SITES
from tests.api.dicom_checks import dciodvfy


def _items(item: Dataset) -> list[Dataset]:
    return list(item.get("ContentSequence", []))


def _named(items: list[Dataset], meaning: str) -> list[Dataset]:
    return [i for i in items if i.ConceptNameCodeSequence[0].CodeMeaning == meaning]


def test_each_group_s_finding_site_is_its_lesion_s_site(tmp_path: Path) -> None:
    source = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    lesions = [{**LESION, "id": k, "site": site} for k, site in enumerate(SITES, start=1)]
    result = StudyResult.model_validate({**RESULT, "lesions": lesions})
    square = np.array([[10, 10], [20, 10], [20, 20], [10, 20], [10, 10]], np.float32)
    outlines = {k: Outline(0, square) for k in range(1, len(SITES) + 1)}
    sr = build_sr("job-1", result, SourceImages((source,), ((0, None),)), outlines)
    buffer = io.BytesIO()
    sr.save_as(buffer, enforce_file_format=True)
    dciodvfy(buffer.getvalue(), tmp_path, "sr.dcm")
    read = pydicom.dcmread(io.BytesIO(buffer.getvalue()))
    (measurements,) = _named(_items(read), "Imaging Measurements")
    found = {}
    for group in _named(_items(measurements), "Measurement Group"):
        items = _items(group)
        (tracking,) = _named(items, "Tracking Identifier")
        (site,) = _named(items, "Finding Site")
        found[int(tracking.TextValue.removeprefix("Lesion "))] = (
            site.ConceptCodeSequence[0].CodeValue)
    assert found == dict(enumerate(SITES.values(), start=1))
