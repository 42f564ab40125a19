"""The model's own pre- and post-processing, in plain numpy.

Both serving paths use these functions: :class:`api.inference.onnx_local.OnnxSegmenter`
in process and the Triton Python-backend model (which wraps it), so their answers are
identical by construction. The exact definitions, which the tests check against naive
reference code:

* windowing: ``clip((hu - low) / width, 0, 1)`` in float32, one channel per window;
* mask: ``sigmoid(logit) >= threshold``, decided in logit space so that no sigmoid
  rounding moves a pixel across the threshold; a probability exactly equal to the
  threshold counts as lesion;
* probability: ``floor(255 * sigmoid(logit) + 0.5)`` as uint8, max-pooled over 4x4 blocks.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from api.inference.contract import PROBABILITY_STRIDE, Window

__all__ = [
    "logit_threshold",
    "postprocess",
    "sigmoid",
    "unpack_mask",
    "window_channels",
    "window_unit",
]


def window_unit(
    hounsfield: npt.NDArray[np.integer[Any]] | npt.NDArray[np.floating[Any]],
    window: Window,
    dtype: type[np.floating[Any]] = np.float32,
) -> npt.NDArray[Any]:
    """HU to [0, 1] through ``window``: ``clip((hu - low) / width, 0, 1)``, all in ``dtype``.

    The one window formula: the model's input (:func:`window_channels`, float32) and the
    overlays' grey (:func:`api.lesions.render.window_grey`, float64) both go through it.
    """
    scaled = (hounsfield.astype(dtype, copy=False) - dtype(window.low)) / dtype(window.width)
    unit: npt.NDArray[Any] = np.clip(scaled, dtype(0.0), dtype(1.0))
    return unit


def window_channels(
    hounsfield: npt.NDArray[np.int16], windows: tuple[Window, ...]
) -> npt.NDArray[np.float32]:
    """Map int16 HU (N, H, W) to float32 (N, C, H, W) in [0, 1], one channel per window.

    :func:`window_unit` in float32 (HU values are exact in float32). The input is the
    modality-LUT output (PS3.3 C.11.1): rescaled HU, not stored pixel values.
    """
    if hounsfield.ndim != 3:
        raise ValueError(f"hounsfield must be (N, H, W), got shape {hounsfield.shape}")
    if not windows:
        raise ValueError("at least one window is required")
    hu = hounsfield.astype(np.float32)
    channels = np.empty((hu.shape[0], len(windows), *hu.shape[1:]), dtype=np.float32)
    for index, window in enumerate(windows):
        channels[:, index] = window_unit(hu, window, np.float32)
    return channels


def logit_threshold(threshold: float) -> float:
    """The logit whose sigmoid is ``threshold``: log(t / (1 - t)), +-inf at 1 and 0."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    if threshold == 0.0:
        return -math.inf
    if threshold == 1.0:
        return math.inf
    return math.log(threshold) - math.log1p(-threshold)


def sigmoid(logits: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float64]:
    """Logistic function in float64, without overflow for large |x|."""
    x = np.asarray(logits, dtype=np.float64)
    decay = np.exp(-np.abs(x))  # in (0, 1]: never overflows
    return np.where(x >= 0, 1.0 / (1.0 + decay), decay / (1.0 + decay))


def _float32_at_least(value: float) -> np.float32:
    """The smallest float32 >= value, so float32 ``x >= it`` is exactly ``x >= value``."""
    rounded = np.float32(value)
    if float(rounded) < value:
        rounded = np.nextafter(rounded, np.float32(np.inf))
    return rounded


def _block_max(array: npt.NDArray[np.float32], stride: int) -> npt.NDArray[np.float32]:
    n, h, w = array.shape
    blocks = array.reshape(n, h // stride, stride, w // stride, stride)
    peaks: npt.NDArray[np.float32] = blocks.max(axis=(2, 4))
    return peaks


def postprocess(
    logits: npt.NDArray[np.float32], threshold: float
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """Turn logits (N, 1, H, W) into the packed mask (N, H, W/8) and probability (N, H/4, W/4).

    Mask: ``logit >= logit_threshold(threshold)`` (equivalently sigmoid >= threshold; a
    tie counts as lesion), packed with ``numpy.packbits(axis=-1)``, most significant bit
    first. Probability: ``floor(255 * sigmoid + 0.5)`` of the largest logit of each 4x4
    block, which equals the block maximum of the per-pixel quantised probability because
    both steps are monotonic. NaN logits give mask 0 and probability 0.
    """
    if logits.ndim != 4 or logits.shape[1] != 1:
        raise ValueError(f"logits must be (N, 1, H, W), got shape {logits.shape}")
    _, _, height, width = logits.shape
    if width % 8 or height % PROBABILITY_STRIDE or width % PROBABILITY_STRIDE:
        raise ValueError(f"logit plane {height}x{width} must be a multiple of 8 wide and 4 high")
    plane = np.nan_to_num(logits[:, 0], nan=-np.inf).astype(np.float32, copy=False)
    mask = plane >= _float32_at_least(logit_threshold(threshold))
    packed = np.packbits(mask, axis=-1)
    peak = _block_max(plane, PROBABILITY_STRIDE)
    scaled = np.floor(sigmoid(peak) * 255.0 + 0.5)
    probability = np.clip(scaled, 0, 255).astype(np.uint8)
    return packed, probability


def unpack_mask(packed: npt.NDArray[np.uint8], width: int) -> npt.NDArray[np.bool_]:
    """Inverse of the mask packing: uint8 (N, H, W/8) to bool (N, H, width)."""
    if packed.dtype != np.uint8:
        raise ValueError(f"packed mask must be uint8, got {packed.dtype}")
    if packed.shape[-1] * 8 < width:
        raise ValueError(f"{packed.shape[-1]} bytes a row cannot hold {width} pixels")
    if packed.ndim < 2:
        return np.unpackbits(packed, count=width).view(np.bool_)
    # Most slices hold no finding: they stay the zeros of a fresh array, whose pages nothing
    # writes, and only slices with a bit set are unpacked (unpackbits yields only 0 and 1:
    # read as bool in place rather than copied).
    mask = np.zeros((*packed.shape[:-1], width), np.bool_)
    lit = packed.reshape(len(packed), -1).any(axis=1)
    if lit.any():
        mask[lit] = np.unpackbits(packed[lit], axis=-1, count=width).view(np.bool_)
    return mask
