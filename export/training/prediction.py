"""The network run as served, on int16 HU slices: logits and thresholded masks.

:func:`api.inference.processing.window_channels` in front (on every plane, for a model with
slice context: :func:`export.model.planes.plane_channels`), and for masks
:func:`api.inference.processing.postprocess` behind (threshold in logit space), so what
validation, calibration and hard-negative mining see is what the served model decides.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from api.inference.contract import Window
from api.inference.processing import postprocess, unpack_mask
from export.model.planes import plane_channels

VALIDATION_BATCH = 4
# Slices segmented at a time when a whole bank is scored (64 x 1 MB of float32 logits).
STREAM_SLICES = 64


def autocast(precision: str) -> torch.autocast:
    """bfloat16 autocast on the CPU for precision "bf16"; a disabled one for "fp32"."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def logit_chunks(
    model: nn.Module,
    hounsfield: npt.NDArray[np.int16],
    windows: tuple[Window, ...],
) -> Iterator[tuple[int, npt.NDArray[np.float32]]]:
    """(first slice index, float32 logits (n, 1, H, W)) of ``hounsfield`` (slices
    (N, H, W) or planes (N, K, H, W)), STREAM_SLICES at a time.

    Scoring a whole validation bank streams through this, so memory holds one chunk of
    logits rather than the bank's (3,072 slices of 512 x 512 are 3.2 GB of float32).
    """
    for start in range(0, len(hounsfield), STREAM_SLICES):
        yield start, predict_logits(model, hounsfield[start : start + STREAM_SLICES], windows)


def predict_logits(
    model: nn.Module,
    hounsfield: npt.NDArray[np.int16],
    windows: tuple[Window, ...],
    precision: str = "fp32",
) -> npt.NDArray[np.float32]:
    """Logits (N, 1, H, W) of int16 HU slices (N, H, W), or of each slice's planes
    (N, K, H, W) for a model with slice context, windowed as the served model does.

    The network runs in eval mode, VALIDATION_BATCH slices at a time; its mode is restored
    afterwards. ``precision="bf16"`` runs it under bfloat16 autocast: for mining only,
    never where a threshold or a score is measured (the served model is float32).
    """
    logits = np.empty((len(hounsfield), 1, *hounsfield.shape[-2:]), dtype=np.float32)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast(precision):
            for start in range(0, len(hounsfield), VALIDATION_BATCH):
                chunk = hounsfield[start : start + VALIDATION_BATCH]
                output = model(torch.from_numpy(plane_channels(chunk, windows)))
                logits[start : start + len(chunk)] = output.float().numpy()
    finally:
        model.train(was_training)
    return logits


def predict_masks(
    model: nn.Module,
    hounsfield: npt.NDArray[np.int16],
    windows: tuple[Window, ...],
    threshold: float,
) -> npt.NDArray[np.bool_]:
    """Thresholded masks (N, H, W) of slices or planes (as :func:`predict_logits`), decided
    as the served model decides them."""
    packed, _ = postprocess(predict_logits(model, hounsfield, windows), threshold)
    return unpack_mask(packed, hounsfield.shape[-1])
