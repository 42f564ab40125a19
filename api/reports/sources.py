"""The source images of a chosen series, as highdicom takes them, and where each slice lies.

Headers only (``stop_before_pixels``): the SEG and SR need identifiers and geometry, never the
source's pixels. A series is either single-frame files, one per slice, or one enhanced
multi-frame instance whose frames are the slices.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    """``datasets`` in the order highdicom gets them; ``place[i]``: slice i's frame there.

    For single-frame files frame ``place[i]`` is the i-th dataset; for one multi-frame
    instance it is the (0-based) frame of ``datasets[0]``.
    """

    datasets: tuple[Dataset, ...]
    place: tuple[int, ...]
    multi_frame: bool

    @property
    def frame_count(self) -> int:
        return int(self.datasets[0].get("NumberOfFrames", 1)) if self.multi_frame else len(
            self.datasets)

    def instance_of(self, index: int) -> tuple[Dataset, int | None]:
        """The instance holding slice ``index`` and its 1-based frame number (multi-frame)."""
        if self.multi_frame:
            return self.datasets[0], self.place[index] + 1
        return self.datasets[self.place[index]], None


def read_sources(series: CTSeries) -> SourceImages:
    """The headers of ``series``' instances; StorageError when the upload no longer reads."""
    frames = {ref.frame for ref in series.slices}
    paths = {ref.path for ref in series.slices}
    try:
        if frames != {None}:
            if len(paths) != 1 or None in frames:
                raise StorageError("a series of several multi-frame instances has no SEG here")
            dataset = _header(series, 0)
            places = tuple(int(ref.frame or 0) for ref in series.slices)
            return SourceImages((dataset,), places, multi_frame=True)
        datasets = tuple(_header(series, i) for i in range(len(series.slices)))
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        raise StorageError("the source images of the study cannot be read") from exc
    return SourceImages(datasets, tuple(range(len(datasets))), multi_frame=False)


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
