"""The planes a model with slice context sees for chosen slices of a labelled volume.

Built with the gateway's own plan (:func:`api.study.context.plan_context`), so training
sees the planes serving will send: for each slice, ``2c + 1`` planes at the model's
context spacing, each the linear blend of the two slices around its z, never past the
series' ends or across a gap. A blend is rounded back to int16 HU, as every plane the
network sees is int16; a plane that falls on a slice is that slice, bit for bit.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from api.study.context import plan_context
from export.sources.slices import LabelledVolume


def volume_planes(
    volume: LabelledVolume, index: npt.NDArray[np.intp], context: int, spacing_mm: float
) -> npt.NDArray[np.int16]:
    """int16 (len(index), 2 x context + 1, H, W): the planes of slices ``index``, ascending z;
    plane ``context`` is the slice itself."""
    index = np.asarray(index, dtype=np.intp)
    depth, height, width = volume.hounsfield.shape
    planes = np.empty((len(index), 2 * context + 1, height, width), dtype=np.int16)
    if not len(index):
        return planes
    if context == 0:
        planes[:, 0] = volume.hounsfield[index]
        return planes
    plan = plan_context(list(volume.z), 0, depth, context, spacing_mm)
    sent = np.asarray(plan.send, dtype=np.intp)
    lower, upper = sent[plan.lower[index]], sent[plan.upper[index]]
    weight = plan.weight[index]
    for n in range(len(index)):
        for k in range(2 * context + 1):
            _blend(volume.hounsfield, int(lower[n, k]), int(upper[n, k]), weight[n, k],
                   planes[n, k])
    return planes


def _blend(
    hounsfield: npt.NDArray[np.int16], lower: int, upper: int, weight: np.float32,
    out: npt.NDArray[np.int16],
) -> None:
    """``(1 - weight) * slice lower + weight * slice upper`` rounded into ``out``."""
    if lower == upper or weight == 0:
        out[...] = hounsfield[lower]
        return
    mixed = (np.float32(1) - weight) * hounsfield[lower].astype(np.float32)
    mixed += weight * hounsfield[upper].astype(np.float32)
    # A blend lies between two int16 values, so it needs no clipping.
    out[...] = np.rint(mixed)
