"""Quick per-slice metrics on held-out full-size slices, shown while training runs.

A slice counts as predicted positive when any pixel reaches the threshold, and as truly
positive when its label holds metastasis: sensitivity and PPV over slices, as the
reference study reports them, plus the mean Dice of the slices that hold metastasis.
The thorough evaluation (lesion-wise, FROC, many held-out phantoms) lives elsewhere.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from api.inference.contract import Window
from api.inference.processing import logit_threshold, window_channels
from export.datasets import SliceBank

VALIDATION_BATCH = 4


def predict_masks(
    model: nn.Module,
    hounsfield: npt.NDArray[np.int16],
    windows: tuple[Window, ...],
    threshold: float,
) -> npt.NDArray[np.bool_]:
    """Thresholded masks (N, H, W) for int16 HU slices, windowed as the served model does."""
    cut = logit_threshold(threshold)
    masks = np.empty(hounsfield.shape, dtype=np.bool_)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(hounsfield), VALIDATION_BATCH):
            chunk = hounsfield[start : start + VALIDATION_BATCH]
            logits = model(torch.from_numpy(window_channels(chunk, windows)))
            masks[start : start + len(chunk)] = (logits[:, 0] >= cut).numpy()
    model.train(was_training)
    return masks


def slice_scores(
    predicted: npt.NDArray[np.bool_], truth: npt.NDArray[np.bool_]
) -> dict[str, float]:
    """Per-slice sensitivity, PPV, specificity and mean Dice on positive slices."""
    axes = tuple(range(1, predicted.ndim))
    predicted_positive = predicted.any(axis=axes)
    truly_positive = truth.any(axis=axes)
    true_positive = int((predicted_positive & truly_positive).sum())
    overlap = (predicted & truth).sum(axis=axes)
    size = predicted.sum(axis=axes) + truth.sum(axis=axes)
    dice = 2.0 * overlap[truly_positive] / np.maximum(size[truly_positive], 1)
    return {
        "dice": float(dice.mean()) if dice.size else float("nan"),
        "sensitivity": _ratio(true_positive, int(truly_positive.sum())),
        "ppv": _ratio(true_positive, int(predicted_positive.sum())),
        "specificity": _ratio(
            int((~predicted_positive & ~truly_positive).sum()), int((~truly_positive).sum())
        ),
    }


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else float("nan")


def validate(
    model: nn.Module, bank: SliceBank, windows: tuple[Window, ...], threshold: float
) -> dict[str, float]:
    """:func:`slice_scores` of ``model`` on every slice of ``bank``."""
    predicted = predict_masks(model, bank.hounsfield, windows, threshold)
    return slice_scores(predicted, bank.labels > 0)
