"""The studies an evaluation reads: phantoms made in memory, or DICOM series with or without SEG.

DATA is ``phantoms:START-END`` (seeds START..END inclusive, generated in memory; held-out
seeds are 100000 and up, which training never uses), or a folder. A folder is one study when
it holds DICOM files at its top level or a ``dicom/`` folder (the layout ``bonemets phantom``
writes); otherwise each of its subfolders is one study. In a study folder, the CT series is
chosen as the gateway chooses it, and a DICOM SEG beside it, if any, gives the reference; a
study without SEG is negative (no metastasis on any slice).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset

from api.dicom.geometry import AIR_HU
from export.evaluation.mimics import Mimic, read_mimics
from export.sources.seg_studies import METASTASIS_SEGMENTS, SEGMENTATION_STORAGE, seg_labels

if TYPE_CHECKING:
    from api.dicom.series import SliceRef

__all__ = [
    "HELD_OUT_FIRST_SEED",
    "DataSource",
    "SliceBatch",
    "Study",
    "folder_studies",
    "open_studies",
    "parse_data_source",
    "phantom_studies",
    "volume_study",
]

log = logging.getLogger(__name__)

HELD_OUT_FIRST_SEED = 100_000
PHANTOM_PREFIX = "phantoms:"
# Files beside a series that are not DICOM (bonemets phantom writes truth.json).
_NOT_DICOM_SUFFIXES = {".json", ".md", ".txt", ".csv", ".tsv", ".png", ".nii", ".gz", ".nrrd"}


@dataclass
class SliceBatch:
    """Consecutive slices: int16 HU planes and their bool reference masks, at stored size."""

    hounsfield: list[npt.NDArray[np.int16]]
    truth: list[npt.NDArray[np.bool_]]


@dataclass
class Study:
    """One study to evaluate: ``read(start, stop)`` returns slices start..stop-1 in order."""

    name: str
    slice_count: int
    labelled: bool
    read: Callable[[int, int], SliceBatch]
    # Normal variants (phantoms made with --bone-variants) by slice index: see eval_mimics.
    mimics: dict[int, list[Mimic]] = field(default_factory=dict)
    # (between rows, between columns), mm: what the reporting floor measures lesions with.
    pixel_spacing_mm: tuple[float, float] | None = None


def volume_study(
    name: str,
    hounsfield: npt.NDArray[np.int16],
    labels: npt.NDArray[np.integer[Any] | np.bool_] | None,
    pixel_spacing_mm: tuple[float, float] | None = None,
) -> Study:
    """A study from in-memory (Z, rows, columns) HU and labels (> 0 is metastasis; None: none)."""
    if hounsfield.ndim != 3:
        raise ValueError(f"{name}: hounsfield must be (Z, rows, columns), got {hounsfield.shape}")
    if labels is not None and labels.shape != hounsfield.shape:
        raise ValueError(f"{name}: labels {labels.shape} differ from HU {hounsfield.shape}")
    empty = np.zeros(hounsfield.shape[1:], dtype=np.bool_)

    def read(start: int, stop: int) -> SliceBatch:
        planes = [np.asarray(plane, dtype=np.int16) for plane in hounsfield[start:stop]]
        if labels is None:
            return SliceBatch(planes, [empty] * len(planes))
        return SliceBatch(planes, [np.asarray(m > 0) for m in labels[start:stop]])

    return Study(name, int(hounsfield.shape[0]), labels is not None, read,
                 pixel_spacing_mm=pixel_spacing_mm)


@dataclass(frozen=True)
class DataSource:
    """A parsed DATA argument: a range of phantom seeds, or a folder."""

    seeds: range | None = None
    folder: Path | None = None

    def __str__(self) -> str:
        if self.seeds is not None:
            return f"{PHANTOM_PREFIX}{self.seeds.start}-{self.seeds.stop - 1}"
        return str(self.folder)


def parse_data_source(spec: str) -> DataSource:
    """``phantoms:START-END`` (inclusive) or ``phantoms:SEED``, else a folder that must exist."""
    if spec.startswith(PHANTOM_PREFIX):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", spec[len(PHANTOM_PREFIX) :].strip())
        if match is None:
            raise ValueError(
                f"expected phantoms:START-END (e.g. phantoms:100000-100019), got {spec!r}"
            )
        first = int(match.group(1))
        last = int(match.group(2) or first)
        if last < first:
            raise ValueError(f"phantom seed range {first}-{last} is empty")
        return DataSource(seeds=range(first, last + 1))
    folder = Path(spec)
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder not found: {folder}")
    return DataSource(folder=folder)


def phantom_studies(seeds: range, **overrides: Any) -> Iterator[Study]:
    """Phantoms generated in memory, one study per seed, at their own size."""
    from export.phantoms import make_phantom, sample_spec

    if seeds.start < HELD_OUT_FIRST_SEED:
        log.warning(
            "phantom seeds below %d may have been used in training; held-out seeds are %d+",
            HELD_OUT_FIRST_SEED,
            HELD_OUT_FIRST_SEED,
        )
    for seed in seeds:
        phantom = make_phantom(sample_spec(seed, **overrides))
        # Outside-FOV padding (-2000 HU) reaches the model as air through the gateway, which
        # applies PixelPaddingValue; do the same so both routes show the model equal slices.
        hounsfield = np.maximum(phantom.hounsfield, np.int16(AIR_HU))
        yield volume_study(f"phantom-{seed}", hounsfield, phantom.labels, phantom.pixel_spacing)


def open_studies(
    source: DataSource, segment_pattern: str = METASTASIS_SEGMENTS
) -> tuple[int, Iterator[Study]]:
    """How many studies ``source`` holds, and the studies, each opened when reached."""
    if source.seeds is not None:
        return len(source.seeds), phantom_studies(source.seeds)
    assert source.folder is not None
    folders = study_folders(source.folder)
    return len(folders), (open_folder_study(f, segment_pattern) for f in folders)


def folder_studies(
    root: Path, segment_pattern: str = METASTASIS_SEGMENTS
) -> Iterator[Study]:
    """Every study under ``root`` (see the module docstring for the layout)."""
    for folder in study_folders(root):
        yield open_folder_study(folder, segment_pattern)


def study_folders(root: Path) -> list[Path]:
    """``root`` itself when it is one study, else its subfolders, sorted by name."""
    if _is_study_folder(root):
        return [root]
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise FileNotFoundError(f"no DICOM study in {root}")
    return folders


def _is_study_folder(folder: Path) -> bool:
    if (folder / "dicom").is_dir():
        return True
    # A licence or manifest file beside study folders does not make the root one study.
    return any(_header(p) is not None for p in sorted(folder.iterdir()) if p.is_file())


def _maybe_dicom(path: Path) -> bool:
    return not path.name.startswith(".") and path.suffix.lower() not in _NOT_DICOM_SUFFIXES


def _study_files(folder: Path) -> list[Path]:
    """Every possible DICOM file under ``folder``, following links (studies are often linked)."""
    found = (
        Path(parent) / name
        for parent, _, names in os.walk(folder, followlinks=True)
        for name in names
    )
    return sorted(p for p in found if p.is_file() and _maybe_dicom(p))


def _header(path: Path) -> Dataset | None:
    """The file's SOP class header, or None when it is not DICOM."""
    if not _maybe_dicom(path):
        return None
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception:  # not DICOM: the series reader reports what it makes of such files
        return None


def _is_segmentation(path: Path) -> bool:
    header = _header(path)
    return header is not None and str(header.get("SOPClassUID", "")) == SEGMENTATION_STORAGE


def open_folder_study(folder: Path, segment_pattern: str = METASTASIS_SEGMENTS) -> Study:
    """The CT series in ``folder`` (recursively) with the lesions of its SEG, if any."""
    from api.dicom.series import load_slice_hounsfield, select_ct_series

    files = _study_files(folder)
    is_seg = {p: _is_segmentation(p) for p in files}
    segs = [p for p in files if is_seg[p]]
    refs = list(select_ct_series([p for p in files if not is_seg[p]]).slices)
    # The series reader has checked that every slice has the same rows and columns.
    shape = (refs[0].geometry.rows, refs[0].geometry.columns)
    truth = _reference_masks(segs, refs, shape, segment_pattern)
    empty = np.zeros(shape, dtype=np.bool_)

    def read(start: int, stop: int) -> SliceBatch:
        planes = [load_slice_hounsfield(ref) for ref in refs[start:stop]]
        return SliceBatch(planes, [truth.get(i, empty) for i in range(start, stop)])

    mimics = read_mimics(folder, [ref.sop_instance_uid for ref in refs])
    return Study(folder.name, len(refs), bool(segs), read, mimics,
                 refs[0].geometry.pixel_spacing)


def _reference_masks(
    segs: list[Path], refs: list[SliceRef], shape: tuple[int, int], pattern: str
) -> dict[int, npt.NDArray[np.bool_]]:
    """Lesion masks by slice index, from every SEG (by ReferencedSOPInstanceUID); only non-empty.

    The SEG reading is training's own (:func:`export.sources.seg_studies.seg_labels`), so a study
    is labelled the same way for both.
    """
    uids = [ref.sop_instance_uid for ref in refs]
    truth: dict[int, npt.NDArray[np.bool_]] = {}
    for seg in segs:
        labels = seg_labels(seg, uids, pattern)
        if labels is None:
            raise ValueError(f"{seg} references no slice of the CT series beside it")
        if labels.shape[1:] != shape:
            raise ValueError(f"{seg}: SEG frames are {labels.shape[1:]}, the CT slices {shape}")
        for index in np.flatnonzero(labels.any(axis=(1, 2))):
            plane = labels[index]
            truth[int(index)] = truth[int(index)] | plane if int(index) in truth else plane.copy()
    return truth
