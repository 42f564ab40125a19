"""Accepted files to series: by SeriesInstanceUID, or by a fallback key where it is blank.

Some anonymisers blank the Study, Series and SOP Instance UIDs. Such files are grouped by
what a series shares (frame of reference, series number and description, kernel,
orientation, image size, pixel spacing, slice thickness) and get synthetic UIDs derived from
that key, so that the same upload always yields the same identifiers.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from api.dicom.headers import ImageHeader

UID_NAMESPACE = uuid.UUID("6f1c0c1e-5b8e-4c4e-9a8a-6d2b1f0b6e31")


@dataclass(frozen=True)
class SeriesGroup:
    """The accepted files of one series."""

    series_uid: str  # the file's SeriesInstanceUID, or a synthetic one
    synthetic: bool  # True when the files had no SeriesInstanceUID
    headers: tuple[ImageHeader, ...]

    @property
    def label(self) -> str:
        """A short human name: series number, description and file count."""
        first = self.headers[0]
        parts = ["series"]
        if first.series_number is not None:
            parts.append(str(first.series_number))
        if first.series_description:
            parts.append(f"'{first.series_description}'")
        count = len(self.headers)
        parts.append(f"({count} file{'s' if count != 1 else ''})")
        return " ".join(parts)


def group_headers(headers: Iterable[ImageHeader]) -> list[SeriesGroup]:
    """Group by series, in a stable order (by series UID)."""
    by_key: dict[tuple[str, ...], list[ImageHeader]] = defaultdict(list)
    for header in headers:
        by_key[series_key(header)].append(header)
    groups = []
    for key, members in by_key.items():
        synthetic = key[0] == ""
        uid = synthetic_uid("series", *key) if synthetic else key[0]
        members.sort(key=lambda h: str(h.path))
        groups.append(SeriesGroup(uid, synthetic, tuple(members)))
    groups.sort(key=lambda g: g.series_uid)
    return groups


def series_key(header: ImageHeader) -> tuple[str, ...]:
    """(SeriesInstanceUID,) or, where it is blank, ("", what the series' files share...)."""
    if header.series_uid:
        return (header.series_uid,)
    geometry = header.frames[0].geometry
    cosines = geometry.row_cosine + geometry.column_cosine
    return (
        "",
        header.study_uid,
        header.frame_of_reference_uid,
        str(header.series_number),
        header.series_description,
        header.convolution_kernel,
        header.manufacturer,
        f"{geometry.rows}x{geometry.columns}",
        ",".join(f"{c:.3f}" for c in cosines),
        ",".join(f"{s:.4f}" for s in geometry.pixel_spacing),
        f"{header.frames[0].slice_thickness}",
    )


def synthetic_uid(*parts: str) -> str:
    """A UUID-derived UID (PS3.5 B.2, root 2.25) named by ``parts``: stable for the same input."""
    # uuid5 is name-based; pydicom's generate_uid(prefix=None) ignores its entropy sources.
    name = "\x1f".join(("bonemets", *parts))
    return f"2.25.{uuid.uuid5(UID_NAMESPACE, name).int}"


def blank_uids(headers: Sequence[ImageHeader]) -> list[str]:
    """Names of the identifying UIDs that are blank in any of ``headers``."""
    checks = (
        ("StudyInstanceUID", "study_uid"),
        ("SeriesInstanceUID", "series_uid"),
        ("SOPInstanceUID", "sop_instance_uid"),
        ("SOPClassUID", "sop_class_uid"),
    )
    return [name for name, field in checks if any(not getattr(h, field) for h in headers)]
