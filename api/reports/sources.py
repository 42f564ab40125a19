"""The source images of a chosen series, as highdicom takes them, and where each slice lies.

Headers only (``stop_before_pixels``): the SEG and SR need identifiers and geometry, never the
source's pixels. A series is single-frame files, one per slice, or enhanced multi-frame
instances whose frames are the slices.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from api.dicom.series import CTSeries
from api.errors import StorageError

# Type 2 attributes of the Patient and General Study modules that the new objects copy: a
# source may lack them (its own fault), and they are then copied as empty, as PS3.3 allows.
COPIED_TYPE_2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                 "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber")


@dataclass(frozen=True)
class SourceImages:
    """The series' instances (``datasets``, in slice order of first appearance) and, for
    each slice, ``place[i]``: (index in ``datasets``, 0-based frame or None)."""

    datasets: tuple[Dataset, ...]
    place: tuple[tuple[int, int | None], ...]

    @property
    def multi_frame(self) -> bool:
        return any(frame is not None for _, frame in self.place)

    def instance_of(self, index: int) -> tuple[Dataset, int | None]:
        """The instance holding slice ``index`` and its 1-based frame number (multi-frame)."""
        position, frame = self.place[index]
        return self.datasets[position], None if frame is None else frame + 1


def read_sources(series: CTSeries) -> SourceImages:
    """The headers of ``series``' instances; StorageError when the upload no longer reads."""
    positions: dict[Path, int] = {}
    datasets: list[Dataset] = []
    place: list[tuple[int, int | None]] = []
    try:
        for index, ref in enumerate(series.slices):
            if ref.path not in positions:
                positions[ref.path] = len(datasets)
                datasets.append(_header(series, index))
            place.append((positions[ref.path], ref.frame))
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        raise StorageError("the source images of the study cannot be read") from exc
    return SourceImages(tuple(datasets), tuple(place))


def _header(series: CTSeries, index: int) -> Dataset:
    ref = series.slices[index]
    dataset = pydicom.dcmread(ref.path, stop_before_pixels=True)
    # Where the files' UIDs were blank the header pass made synthetic ones: use the same.
    if not dataset.get("SOPInstanceUID"):
        dataset.SOPInstanceUID = ref.sop_instance_uid
    if not dataset.get("StudyInstanceUID"):
        dataset.StudyInstanceUID = series.study_uid
    if not dataset.get("SeriesInstanceUID"):
        dataset.SeriesInstanceUID = series.series_uid
    if "SpecificCharacterSet" in dataset and not dataset.SpecificCharacterSet:
        del dataset.SpecificCharacterSet  # empty means the default repertoire; highdicom refuses it
    for keyword in COPIED_TYPE_2:
        if keyword not in dataset:
            setattr(dataset, keyword, None)
    return dataset
