"""Which slices a model with slice context needs, and how it blends its neighbours from them.

A 2.5D model segments slice ``i`` from ``2c + 1`` planes: the slice and ``c`` neighbours on
each side at a fixed distance (the model's context spacing, say 2.5 mm), whatever the
series' own spacing. So each neighbour is resampled: the plane at ``z_i + k * spacing`` is
the linear blend of the two slices around it (one slice where it falls on one). Slices are
sent to the model once each, as a run of the distinct slices a batch needs, with the
blend for every output: ``lower`` and ``upper`` index that run, ``weight`` is the share of
``upper``. For N outputs that is N slices plus at most 2 per context plane beyond each end
of the batch, not ``2c + 1`` copies of each.

A neighbour never reaches past the series or across a gap (consecutive slices further
apart than :data:`GAP_FACTOR` times the median spacing, where slices are missing): there
it is the last slice on the output's own side, as at either end of a series.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

GAP_FACTOR = 1.5
# A plane this close to a slice is that slice (positions are written to 0.01 mm or finer).
ON_SLICE_MM = 1e-3


@dataclass(frozen=True)
class ContextPlan:
    """The slices to send for outputs ``start..stop - 1`` and how each plane is blended.

    ``send``: series indices, ascending, each once. ``lower``, ``upper`` (int32) and
    ``weight`` (float32), each (N, 2c + 1): plane ``k`` of output ``n`` is
    ``(1 - weight) * sent[lower] + weight * sent[upper]``, planes in ascending z.
    """

    send: tuple[int, ...]
    lower: npt.NDArray[np.int32]
    upper: npt.NDArray[np.int32]
    weight: npt.NDArray[np.float32]


def segments(z: Sequence[float]) -> npt.NDArray[np.int64]:
    """For each slice, the index of the first slice of its gap-free run."""
    positions = np.asarray(z, dtype=np.float64)
    steps = np.diff(positions)
    if np.any(steps <= 0):
        raise ValueError("slice positions must ascend strictly")
    if not steps.size:
        return np.zeros(len(positions), np.int64)
    gap = steps > GAP_FACTOR * float(np.median(steps))
    starts = np.concatenate(([True], gap))
    return np.maximum.accumulate(np.where(starts, np.arange(len(positions)), 0))


def plan_context(
    z: Sequence[float], start: int, stop: int, context: int, spacing_mm: float
) -> ContextPlan:
    """The plan for outputs ``start..stop - 1`` of a series whose slices lie at ``z`` (mm,
    ascending), for a model of ``context`` planes each side ``spacing_mm`` apart."""
    if not 0 <= start < stop <= len(z):
        raise ValueError(f"outputs {start}..{stop} outside a series of {len(z)} slices")
    if context < 0 or spacing_mm <= 0:
        raise ValueError(f"context {context} and spacing {spacing_mm} mm must be >= 0 and > 0")
    positions = np.asarray(z, dtype=np.float64)
    first = segments(z)
    last = _segment_ends(first)
    outputs = np.arange(start, stop)
    offsets = np.arange(-context, context + 1) * spacing_mm
    wanted = positions[outputs, None] + offsets[None, :]  # (N, 2c + 1)
    # Clamp each plane into its output's gap-free run: past it, the run's end slice.
    wanted = np.clip(wanted, positions[first[outputs]][:, None], positions[last[outputs]][:, None])
    upper = np.minimum(np.searchsorted(positions, wanted, side="left"), len(positions) - 1)
    lower = np.maximum(upper - 1, 0)
    on_upper = np.abs(positions[upper] - wanted) <= ON_SLICE_MM
    on_lower = ~on_upper & (np.abs(positions[lower] - wanted) <= ON_SLICE_MM)
    single = on_upper | on_lower | (upper == lower)
    # A plane on a slice (or clamped onto an end) is that slice alone: nothing to blend.
    lower = np.where(on_upper, upper, lower)
    upper = np.where(on_lower, lower, upper)
    span = positions[upper] - positions[lower]
    weight = np.where(single, 0.0, (wanted - positions[lower]) / np.where(single, 1.0, span))
    send = np.unique(np.concatenate([lower.ravel(), upper.ravel()]))
    return ContextPlan(
        tuple(int(s) for s in send),
        np.searchsorted(send, lower).astype(np.int32),
        np.searchsorted(send, upper).astype(np.int32),
        weight.astype(np.float32),
    )


def _segment_ends(first: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """For each slice, the index of the last slice of its gap-free run."""
    count = len(first)
    is_last = np.ones(count, bool)
    is_last[:-1] = first[1:] != first[:-1]
    ends = np.where(is_last, np.arange(count), count)
    return np.minimum.accumulate(ends[::-1])[::-1]
