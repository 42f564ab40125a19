"""Slices at one position along the normal: a file sent twice, or two acquisitions mixed.

Only here are pixels decoded before the series is chosen, and only for slices that share
a position, to tell a resent image (dropped) from a different one (the series refused).
"""

from __future__ import annotations

import numpy as np

from api.dicom.headers import FrameHeader, ImageHeader
from api.dicom.hounsfield import apply_rescale
from api.dicom.pixels import decode_stored
from api.dicom.stacking import duplicate_runs
from api.errors import ConflictingInstances, InconsistentGeometry

Entry = tuple[ImageHeader, FrameHeader]


def drop_duplicates(
    entries: list[Entry], z: list[float]
) -> tuple[list[tuple[Entry, float]], list[str]]:
    """Drop repeats of a slice; InconsistentGeometry for different images at one position.

    ``entries`` are sorted along the slice normal, ``z`` their projections on it. Returns
    the kept entries, each with its ``z``, and the warnings.
    """
    dropped: set[int] = set()
    for run in duplicate_runs(z):
        for index in run[1:]:
            if not _same_image(entries[run[0]], entries[index]):
                if _instance_key(entries[run[0]]) == _instance_key(entries[index]):
                    raise ConflictingInstances(
                        f"two different images at {z[index]:.2f} mm along the slice normal carry "
                        "the same SOP Instance UID: send the one that is meant"
                    )
                raise InconsistentGeometry(
                    f"two different images at the same position ({z[index]:.2f} mm along the "
                    "slice normal): the series holds more than one acquisition"
                )
            dropped.add(index)
    kept_at = [(entry, z[index]) for index, entry in enumerate(entries) if index not in dropped]
    _check_unique_instances(kept_at)
    if not dropped:
        return kept_at, []
    return kept_at, [f"{len(dropped)} duplicate slice(s) dropped (same position, same pixels)"]


def _instance_key(entry: Entry) -> tuple[str, int | None] | None:
    header, frame = entry
    return (header.sop_instance_uid, frame.frame) if header.sop_instance_uid else None


def _check_unique_instances(entries_at: list[tuple[Entry, float]]) -> None:
    """One SOP Instance UID (and frame) names one slice: results are mapped back by it.

    ``entries_at`` pairs each slice with its position along the normal, as already projected.
    """
    seen: dict[tuple[str, int | None], float] = {}
    for entry, z in entries_at:
        key = _instance_key(entry)
        if key is None:
            continue
        if key in seen:
            raise ConflictingInstances(
                f"one SOP Instance UID names slices at {seen[key]:.2f} mm and {z:.2f} mm along "
                "the slice normal: each slice needs its own"
            )
        seen[key] = z


def _same_image(a: Entry, b: Entry) -> bool:
    (header_a, frame_a), (header_b, frame_b) = a, b
    if frame_a.frame == frame_b.frame and header_a.path == header_b.path:
        return True
    # The same SOP Instance UID is no proof: a resent, edited image keeps it. Compare pixels.
    pixels_a = apply_rescale(decode_stored(header_a.path, frame_a.frame), frame_a.rescale)
    pixels_b = apply_rescale(decode_stored(header_b.path, frame_b.frame), frame_b.rescale)
    return bool(np.array_equal(pixels_a, pixels_b))
