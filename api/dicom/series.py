"""The axial CT series of an upload: files screened, grouped, sorted along the normal, checked.

The header pass reads no pixels; pixels are read later, one slice at a time, by
:func:`~api.dicom.slices.load_slice_hounsfield` (picklable, for worker processes). Only
slices at the same position are decoded here (:mod:`api.dicom.duplicates`).
"""

from __future__ import annotations

import logging
import os
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from api.dicom.bounds import DEFAULT_MAX_IMAGE_PIXELS
from api.dicom.duplicates import Entry, drop_duplicates
from api.dicom.grouping import SeriesGroup, blank_uids, group_headers, synthetic_uid
from api.dicom.headers import FrameHeader, ImageHeader, SeriesIdentity, read_header
from api.dicom.rejections import Rejection, gather_file_rejections, no_series_error
from api.dicom.slices import SliceRef, load_slice_hounsfield
from api.dicom.stacking import describe_stack, projection
from api.errors import (
    InconsistentGeometry,
    InvalidUpload,
    NoCTSeries,
    TooManySlices,
    UnsupportedBodyPart,
)

# Where export/, the study flow and the tests import them from.
__all__ = ["CTSeries", "SliceRef", "load_slice_hounsfield", "select_ct_series"]

log = logging.getLogger(__name__)

ORIENTATION_TOLERANCE = 1e-3
SPACING_TOLERANCE = 1e-3  # relative


@dataclass(frozen=True)
class CTSeries(SeriesIdentity):
    """The chosen axial CT series, its slices sorted by ``z``, and what was left out.

    ``study_uid`` is synthetic (2.25...) where the files' was blank.
    """

    slices: tuple[SliceRef, ...]
    slice_spacing_mm: float | None  # median distance between planes
    slice_thickness: float | None
    warnings: tuple[str, ...]
    rejected: tuple[Rejection, ...]
    synthetic_uids: bool  # True when blank UIDs were replaced


def select_ct_series(
    paths: Sequence[Path],
    max_slices: int | None = None,
    refused_body_parts: frozenset[str] = frozenset(),
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> CTSeries:
    """Screen every file and choose the axial CT series with the most slices.

    Raises the file's own error for a single rejected file (NotDicom, NotCT, ...), the
    series' error for a CT series unusable as a whole (InconsistentGeometry, ...), else
    NoCTSeries with the reasons; TooManySlices when every candidate exceeds ``max_slices``.
    A series whose BodyPartExamined is in ``refused_body_parts`` (codes as
    :func:`body_part_code` writes them) is left out as UnsupportedBodyPart: a head CT
    sent to a spine model gets a clear refusal, not a skull full of false findings.
    A file declaring more than ``max_image_pixels`` is ImageTooLarge (:mod:`api.dicom.bounds`).
    """
    if not paths:
        raise InvalidUpload("the upload holds no files")
    headers: list[ImageHeader] = []
    failed: list[tuple[Path, InvalidUpload]] = []
    for path in paths:
        try:
            headers.append(read_header(path, max_image_pixels))
        except InvalidUpload as exc:
            failed.append((path, exc))
    # Names are for messages only: built where a file failed.
    names = display_names(paths) if failed else {}
    failures = [(names[path], exc) for path, exc in failed]
    file_rejections = gather_file_rejections(failures)
    built: list[tuple[SeriesGroup, CTSeries]] = []
    series_rejections: list[Rejection] = []
    for group in group_headers(headers):
        try:
            check_body_part(group, refused_body_parts)
            built.append((group, build_series(group)))
        except InvalidUpload as exc:
            series_rejections.append(
                Rejection(group.label, exc.detail, type(exc), len(group.headers))
            )
    if not built:
        raise no_series_error(file_rejections, series_rejections, len(paths))
    chosen, left_out = _choose(built, max_slices)
    rejected = (*left_out, *series_rejections, *file_rejections)
    log.info(
        "chose a CT series of %d slices; %d other series, %d files rejected",
        len(chosen.slices),
        len(built) - 1 + len(series_rejections),
        len(failures),
    )
    # A client must learn that part of what it sent was not read for its body part.
    refusals = tuple(
        f"{r.subject} left out: {r.reason}"
        for r in series_rejections
        if r.error is UnsupportedBodyPart
    )
    return replace(chosen, rejected=tuple(rejected), warnings=(*chosen.warnings, *refusals))


def check_body_part(group: SeriesGroup, refused: frozenset[str]) -> None:
    """UnsupportedBodyPart when most of the group's files name a refused body part.

    Absent or unknown values pass: BodyPartExamined is optional and often blank.
    """
    if not refused:
        return
    parts = Counter(header.body_part for header in group.headers)
    part, count = parts.most_common(1)[0]
    if part in refused and 2 * count > len(group.headers):
        raise UnsupportedBodyPart(
            f"BodyPartExamined is {part}: this model reads CT of the trunk (thoracic and "
            "lumbar spine, ribs, pelvis); other body parts are refused "
            "(BONEMETS_REFUSED_BODY_PARTS)"
        )


def build_series(group: SeriesGroup) -> CTSeries:
    """Check, sort and describe one group's slices; InvalidUpload when it cannot be used."""
    entries = [(header, frame) for header in group.headers for frame in header.frames]
    _check_consistent(entries)
    normal = entries[0][1].geometry.normal
    # Each slice's place along the normal, projected once for sorting, duplicates and refs.
    unsorted_z = [projection(normal, frame.geometry.origin) for _, frame in entries]
    order = sorted(range(len(entries)), key=lambda i: _sort_key(entries[i], unsorted_z[i]))
    kept, duplicate_warnings = drop_duplicates(
        [entries[i] for i in order], [unsorted_z[i] for i in order]
    )
    entries = [entry for entry, _ in kept]
    slices = tuple(_slice_ref(group, header, frame, z) for (header, frame), z in kept)
    first = group.headers[0]
    shape = describe_stack(
        [s.position for s in slices], [s.z for s in slices], normal, first.gantry_tilt
    )
    thicknesses = [f.slice_thickness for _, f in entries if f.slice_thickness is not None]
    return CTSeries(
        study_uid=first.study_uid or synthetic_uid("study", group.series_uid),
        series_uid=group.series_uid,
        frame_of_reference_uid=first.frame_of_reference_uid,
        modality=first.modality,
        manufacturer=first.manufacturer,
        series_description=first.series_description,
        series_number=first.series_number,
        slices=slices,
        slice_spacing_mm=shape.spacing_mm,
        slice_thickness=statistics.median(thicknesses) if thicknesses else None,
        warnings=(*_header_warnings(group), *duplicate_warnings, *shape.warnings),
        rejected=(),
        synthetic_uids=bool(blank_uids(group.headers)),
    )


def display_names(paths: Sequence[Path]) -> dict[Path, str]:
    """Each path relative to the upload's common folder, for messages."""
    if len(paths) == 1:
        return {paths[0]: paths[0].name}
    try:
        root = Path(os.path.commonpath([str(p) for p in paths]))
    except ValueError:
        return {p: p.name for p in paths}
    return {p: (str(p.relative_to(root)) if p != root else p.name) for p in paths}


def _choose(
    built: list[tuple[SeriesGroup, CTSeries]], max_slices: int | None
) -> tuple[CTSeries, list[Rejection]]:
    fitting = [b for b in built if max_slices is None or len(b[1].slices) <= max_slices]
    if not fitting:
        largest = max(len(s.slices) for _, s in built)
        raise TooManySlices(f"the series has {largest} slices; the limit is {max_slices}")
    _, best = max(fitting, key=_preference)
    left_out = []
    for group, series in built:
        if series is best:
            continue
        if any(series is s for _, s in fitting):
            reason = f"another series was chosen ({len(best.slices)} slices)"
            left_out.append(Rejection(group.label, reason, NoCTSeries, len(group.headers)))
        else:
            reason = f"{len(series.slices)} slices, more than the limit of {max_slices}"
            left_out.append(Rejection(group.label, reason, TooManySlices, len(group.headers)))
    if len(fitting) < len(built):
        best = replace(best, warnings=(*best.warnings, "a larger series exceeded the slice limit"))
    return best, left_out


def _preference(item: tuple[SeriesGroup, CTSeries]) -> tuple[int, int, float, str]:
    """Most slices; then ORIGINAL images; then the thinnest spacing; then by UID."""
    group, series = item
    original = int(group.headers[0].image_type[:1] == ("ORIGINAL",))
    spacing = series.slice_spacing_mm or 0.0
    return (len(series.slices), original, -spacing, series.series_uid)


def _check_consistent(entries: list[Entry]) -> None:
    reference = entries[0][1].geometry
    reference_cosines = reference.row_cosine + reference.column_cosine
    for _, frame in entries[1:]:
        geometry = frame.geometry
        if (geometry.rows, geometry.columns) != (reference.rows, reference.columns):
            raise InconsistentGeometry(
                f"mixed image sizes ({reference.rows}x{reference.columns} and "
                f"{geometry.rows}x{geometry.columns}) in one series"
            )
        cosines = geometry.row_cosine + geometry.column_cosine
        if cosines == reference_cosines:
            continue  # the common case, without numpy
        if np.abs(np.asarray(cosines) - np.asarray(reference_cosines)).max() > (
            ORIENTATION_TOLERANCE
        ):
            raise InconsistentGeometry("mixed slice orientations in one series")


def _sort_key(entry: Entry, z: float) -> tuple[float, int, str, int]:
    header, frame = entry
    return (z, header.instance_number or 0, str(header.path), frame.frame or 0)


def _slice_ref(group: SeriesGroup, header: ImageHeader, frame: FrameHeader, z: float) -> SliceRef:
    origin = frame.geometry.origin
    sop = header.sop_instance_uid or synthetic_uid(
        "instance", group.series_uid, ",".join(f"{c:.3f}" for c in origin), str(frame.frame)
    )
    return SliceRef(
        path=header.path,
        frame=frame.frame,
        sop_instance_uid=sop,
        position=origin,
        z=z,
        geometry=frame.geometry,
        instance_number=header.instance_number,
        rescale=frame.rescale,
        native=header.native,
    )


def _header_warnings(group: SeriesGroup) -> list[str]:
    warnings = []
    blank = blank_uids(group.headers)
    if blank:
        warnings.append(
            f"blank {', '.join(blank)}: the slices were grouped by frame of reference, "
            "orientation, size and description, and given stable synthetic UIDs (2.25...)"
        )
    for kind in sorted({h.rescale_type for h in group.headers} - {"", "HU"}):
        warnings.append(f"RescaleType is {kind}: the values may not be Hounsfield units")
    return warnings
