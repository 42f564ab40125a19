"""Labelled CT on disk as DICOM: CT series with DICOM SEG masks (the Spine-Mets-CT-SEG layout).

A folder is searched recursively. CT slices are grouped by series; each SEG object
(PS3.3 A.51) is read with highdicom and its frames are put on the CT slices they name in
their ReferencedSOPInstanceUID, so the SEG's own frame order and any missing frames do not
matter. Only segments whose label or property type matches ``segment_pattern`` count as
metastasis (a SEG may also outline vertebrae or organs). A series with no SEG is skipped,
since unlabelled is not the same as lesion-free, unless its folder is declared negative.
"""

from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from api.dicom.pixels import decode_hounsfield
from api.dicom.screening import plane_geometry
from api.errors import BoneMetsError
from export.sources.slices import LabelledVolume, fit_slices

logger = logging.getLogger(__name__)

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
# Segment labels or property types that name a metastasis.
METASTASIS_SEGMENTS = r"metasta|lesion|lytic|blastic|sclerotic|tumou?r|neoplas"


@dataclass(frozen=True)
class CTSlice:
    """One axial CT file of a series, and where along the slice normal it lies."""

    path: Path
    sop_instance_uid: str
    position: float  # mm along the slice normal


@dataclass
class DicomFolder:
    """CT slices by series, and the SEG files, found under one folder."""

    series: dict[str, list[CTSlice]]
    segmentations: list[Path]


def scan_folder(root: Path) -> DicomFolder:
    """Headers of every DICOM file under ``root``: CT slices by series, SEG paths."""
    series: dict[str, list[CTSlice]] = defaultdict(list)
    segmentations: list[Path] = []
    for path in _files(root):
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError):
            continue
        if str(header.get("SOPClassUID", "")) == SEGMENTATION_STORAGE:
            segmentations.append(path)
        elif header.get("Modality") == "CT" and "NumberOfFrames" not in header:
            found = _ct_slice(path, header)
            if found is not None:
                # Folder and series UID: some archives blank the UID of every series.
                series[f"{path.parent}|{header.get('SeriesInstanceUID', '')}"].append(found)
    return DicomFolder(dict(series), segmentations)


def _files(root: Path) -> list[Path]:
    """Every file under ``root``, following links (studies are often linked, not copied)."""
    return sorted(
        Path(folder) / name
        for folder, _, names in os.walk(root, followlinks=True)
        for name in names
    )


def _ct_slice(path: Path, header: Dataset) -> CTSlice | None:
    try:
        geometry = plane_geometry(header, None)
    except BoneMetsError as exc:
        logger.info("%s skipped: %s", path.name, exc)
        return None
    position = geometry.projection(geometry.origin)
    return CTSlice(path, str(header.get("SOPInstanceUID", "")), position)


def matching_segments(seg: Dataset, pattern: str) -> list[int]:
    """Numbers of the segments whose label or segmented property type matches ``pattern``."""
    rule = re.compile(pattern, re.IGNORECASE)
    numbers = []
    for item in seg.SegmentSequence:
        names = [str(item.get("SegmentLabel", ""))]
        names += [
            str(code.get("CodeMeaning", ""))
            for code in item.get("SegmentedPropertyTypeCodeSequence", [])
        ]
        if any(rule.search(name) for name in names):
            numbers.append(int(item.SegmentNumber))
    return numbers


def seg_labels(
    path: Path, sop_instance_uids: list[str], pattern: str
) -> npt.NDArray[np.bool_] | None:
    """The SEG's metastasis mask on each listed CT slice (Z, rows, columns); None if unrelated."""
    import highdicom as hd

    seg = hd.seg.segread(path)
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    present = [uid for uid in sop_instance_uids if uid in referenced]
    if not present:
        return None
    rows, columns = int(seg.Rows), int(seg.Columns)
    labels = np.zeros((len(sop_instance_uids), rows, columns), dtype=np.bool_)
    segments = matching_segments(seg, pattern)
    if not segments:
        logger.warning("%s: no segment matches %r; its slices count as negative", path, pattern)
        return labels
    # Spatial locations: many archived SEGs do not state SpatialLocationsPreserved.
    pixels = seg.get_pixels_by_source_instance(
        present, segment_numbers=segments, ignore_spatial_locations=True
    )
    where = {uid: i for i, uid in enumerate(sop_instance_uids)}
    for uid, planes in zip(present, pixels, strict=True):
        labels[where[uid]] = planes.any(axis=-1)
    return labels


def _series_volume(
    name: str, slices: list[CTSlice], segmentations: list[Path], negative: bool, pattern: str
) -> LabelledVolume | None:
    slices = sorted(slices, key=lambda s: s.position)
    uids = [s.sop_instance_uid for s in slices]
    hounsfield = np.stack([decode_hounsfield(s.path) for s in slices])
    labels = np.zeros(hounsfield.shape, dtype=np.bool_)
    labelled = False
    if not negative:
        for path in segmentations:
            mask = seg_labels(path, uids, pattern)
            if mask is None:
                continue
            if mask.shape != labels.shape:
                raise ValueError(f"{path}: SEG frames {mask.shape[1:]} vs CT {labels.shape[1:]}")
            labels |= mask
            labelled = True
    if not (negative or labelled):
        logger.info("series %s has no SEG; skipped (unlabelled is not negative)", name)
        return None
    positions = np.array([s.position for s in slices], dtype=np.float64)
    if len(positions) > 1 and not np.all(np.diff(positions) > 0):
        logger.warning(
            "series %s has slices at the same position: taken as evenly spaced", name
        )
        return fit_slices(name, hounsfield, labels)
    return fit_slices(name, hounsfield, labels, positions_mm=positions)


def read_dicom_studies(
    root: Path, *, negative: bool, segment_pattern: str = METASTASIS_SEGMENTS
) -> Iterator[LabelledVolume]:
    """Each CT series under ``root`` with its SEG labels (all-negative when ``negative``)."""
    found = scan_folder(root)
    if not found.series:
        raise FileNotFoundError(f"no axial CT series under {root}")
    for key, slices in sorted(found.series.items()):
        folder = Path(key.split("|", 1)[0])
        name = str(folder.relative_to(root)) if folder != root else root.name
        volume = _series_volume(name, slices, found.segmentations, negative, segment_pattern)
        if volume is not None:
            yield volume
