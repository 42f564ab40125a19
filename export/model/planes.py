"""The network's input for a model with slice context: every plane through every window.

A 2.5D model sees, for each output slice, ``K = 2c + 1`` planes (its neighbours at the
model's context spacing, :mod:`api.study.context`), each through the same CT windows. The
channels are plane-major: channel ``k * W + w`` is plane ``k`` (ascending z, the labelled
slice at ``k = c``) through window ``w``. With one plane this is exactly
:func:`api.inference.processing.window_channels`, so a 2D model's input is unchanged; a
serving graph for a context model must lay its channels out the same way.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from api.inference.contract import Window
from api.inference.processing import window_channels


def as_planes(hounsfield: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    """(N, K, H, W) planes; (N, H, W) slices become one plane each (a view, no copy)."""
    if hounsfield.ndim == 3:
        return hounsfield[:, None]
    if hounsfield.ndim != 4:
        raise ValueError(f"planes must be (N, H, W) or (N, K, H, W), got {hounsfield.shape}")
    return hounsfield


def plane_channels(
    hounsfield: npt.NDArray[np.int16], windows: tuple[Window, ...]
) -> npt.NDArray[np.float32]:
    """int16 HU planes (N, K, H, W), or slices (N, H, W), as float32 (N, K x windows, H, W)."""
    planes = as_planes(hounsfield)
    count, depth, height, width = planes.shape
    channels = window_channels(planes.reshape(count * depth, height, width), windows)
    return channels.reshape(count, depth * len(windows), height, width)
