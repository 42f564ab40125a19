"""Slices ordered along their normal, and what the stack looks like: spacing, gaps, tilt.

Slices are sorted by the projection of ImagePositionPatient on the slice normal
(row cosine x column cosine, PS3.3 C.7.6.2.1.1), never by InstanceNumber, which vendors
count in either direction. Spacing is measured along the normal, i.e. between planes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from api.dicom.geometry import Vector

# Positions closer than this along the normal are the same slice.
DUPLICATE_TOLERANCE_MM = 0.01
# Steps within this fraction of the median are even.
EVEN_TOLERANCE = 0.05
# A step this many medians long or more, close to a whole multiple, is a gap.
GAP_FACTOR = 1.5
GAP_MULTIPLE_TOLERANCE = 0.15
# Stacking direction this far off the normal means a sheared (gantry-tilted) volume.
SHEAR_TOLERANCE_DEG = 0.5
OBLIQUE_TOLERANCE_DEG = 1.0


@dataclass(frozen=True)
class StackShape:
    """The median spacing between planes (None for one slice) and what is irregular."""

    spacing_mm: float | None
    warnings: tuple[str, ...]


def projection(normal: Vector, point: Vector) -> float:
    """Signed distance of ``point`` along ``normal`` (mm)."""
    return float(np.dot(np.asarray(normal), np.asarray(point)))


def duplicate_runs(z: Sequence[float]) -> list[list[int]]:
    """Runs (indices into the sorted ``z``) of two or more slices at the same position."""
    runs: list[list[int]] = []
    current = [0] if z else []
    for index in range(1, len(z)):
        if z[index] - z[current[0]] < DUPLICATE_TOLERANCE_MM:
            current.append(index)
            continue
        if len(current) > 1:
            runs.append(current)
        current = [index]
    if len(current) > 1:
        runs.append(current)
    return runs


def describe_stack(
    origins: Sequence[Vector], z: Sequence[float], normal: Vector, gantry_tilt: float | None
) -> StackShape:
    """Spacing and warnings for slices already sorted by ``z`` without duplicates."""
    steps = np.diff(np.asarray(z, dtype=np.float64))
    spacing = float(np.median(steps)) if steps.size else None
    warnings: list[str] = []
    if spacing is None:
        warnings.append("the series has a single slice")
    else:
        warnings.extend(_spacing_warnings(z, steps, spacing))
    warnings.extend(_tilt_warnings(origins, normal, gantry_tilt))
    return StackShape(spacing, tuple(warnings))


def _spacing_warnings(z: Sequence[float], steps: NDArray[np.float64], spacing: float) -> list[str]:
    gaps: list[tuple[float, float, int]] = []
    uneven: list[float] = []
    for index, step in enumerate(steps.tolist()):
        ratio = step / spacing
        if abs(ratio - 1.0) <= EVEN_TOLERANCE:
            continue
        multiple = round(ratio)
        if ratio >= GAP_FACTOR and abs(ratio - multiple) <= GAP_MULTIPLE_TOLERANCE:
            gaps.append((z[index], z[index + 1], multiple - 1))
        else:
            uneven.append(step)
    messages = []
    if gaps:
        missing = sum(count for _, _, count in gaps)
        where = ", ".join(f"{a:.1f} to {b:.1f} mm" for a, b, _ in gaps[:3])
        more = f" and {len(gaps) - 3} more" if len(gaps) > 3 else ""
        messages.append(
            f"missing slices: about {missing} slice(s) missing in {len(gaps)} gap(s) "
            f"({where}{more}); the spacing is {spacing:.2f} mm elsewhere"
        )
    if uneven:
        messages.append(
            f"uneven slice spacing: {len(uneven)} step(s) between {min(uneven):.2f} and "
            f"{max(uneven):.2f} mm, median {spacing:.2f} mm"
        )
    return messages


def _tilt_warnings(
    origins: Sequence[Vector], normal: Vector, gantry_tilt: float | None
) -> list[str]:
    shear = _shear_angle(origins, normal)
    if shear is not None and shear > SHEAR_TOLERANCE_DEG:
        tag = f" (GantryDetectorTilt {gantry_tilt:g})" if gantry_tilt else ""
        return [
            f"gantry tilt: slices are stacked {shear:.1f} degrees off their normal{tag}; "
            "the volume is sheared, so 3-D positions must use each slice's own origin"
        ]
    if gantry_tilt is not None and abs(gantry_tilt) > 0.01:
        return [f"gantry tilt of {gantry_tilt:g} degrees (GantryDetectorTilt)"]
    oblique = math.degrees(math.acos(min(1.0, abs(normal[2]))))
    if oblique > OBLIQUE_TOLERANCE_DEG:
        return [f"oblique slice plane, {oblique:.1f} degrees from axial"]
    return []


def _shear_angle(origins: Sequence[Vector], normal: Vector) -> float | None:
    """Angle (degrees) between the first-to-last origin direction and the normal."""
    if len(origins) < 2:
        return None
    direction = np.asarray(origins[-1], dtype=np.float64) - np.asarray(origins[0])
    length = float(np.linalg.norm(direction))
    if length == 0.0:
        return None
    cosine = abs(float(np.dot(direction / length, np.asarray(normal))))
    return math.degrees(math.acos(min(1.0, cosine)))
