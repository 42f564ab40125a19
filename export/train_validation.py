"""Quick metrics on held-out full-size slices, shown while training runs.

The model runs exactly as served: :func:`api.inference.processing.window_channels` in front,
:func:`api.inference.processing.postprocess` behind (threshold in logit space, probability
max-pooled 4x4). Detection is scored with :class:`export.metrics.SliceMetricsAccumulator`,
the reference paper's per-slice rules that the held-out evaluation uses too: connected
components of each slice, sensitivity over truth components, PPV over predicted ones.
Added: mean Dice of the slices with metastasis, and the share of slices without metastasis
on which nothing at all is marked.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from api.inference.contract import Window
from api.inference.processing import postprocess, unpack_mask, window_channels
from export.datasets import SliceBank
from export.metrics import SliceMetricsAccumulator

VALIDATION_BATCH = 4


def predict_logits(
    model: nn.Module, hounsfield: npt.NDArray[np.int16], windows: tuple[Window, ...]
) -> npt.NDArray[np.float32]:
    """Logits (N, 1, H, W) of int16 HU slices, windowed as the served model does."""
    chunks = []
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(hounsfield), VALIDATION_BATCH):
            chunk = hounsfield[start : start + VALIDATION_BATCH]
            chunks.append(model(torch.from_numpy(window_channels(chunk, windows))).numpy())
    model.train(was_training)
    logits: npt.NDArray[np.float32] = np.concatenate(chunks).astype(np.float32, copy=False)
    return logits


def predict_masks(
    model: nn.Module,
    hounsfield: npt.NDArray[np.int16],
    windows: tuple[Window, ...],
    threshold: float,
) -> npt.NDArray[np.bool_]:
    """Thresholded masks (N, H, W), decided as the served model decides them."""
    packed, _ = postprocess(predict_logits(model, hounsfield, windows), threshold)
    return unpack_mask(packed, hounsfield.shape[-1])


def detection_scores(
    logits: npt.NDArray[np.float32], truth: npt.NDArray[np.bool_], threshold: float
) -> dict[str, Any]:
    """Per-slice component metrics, Dice and clean-slice share at ``threshold``."""
    packed, probability = postprocess(logits, threshold)
    predicted = unpack_mask(packed, truth.shape[-1])
    accumulator = SliceMetricsAccumulator()
    accumulator.update(predicted, probability, truth)
    per_slice = accumulator.result()["per_slice"]
    positive = truth.any(axis=(1, 2))
    overlap = (predicted & truth).sum(axis=(1, 2))[positive]
    size = (predicted.sum(axis=(1, 2)) + truth.sum(axis=(1, 2)))[positive]
    clean = ~predicted.any(axis=(1, 2))[~positive]
    return {
        "sensitivity": _number(per_slice["sensitivity"]),
        "ppv": _number(per_slice["ppv"]),
        "dice": float(np.mean(2.0 * overlap / np.maximum(size, 1))) if size.size else np.nan,
        "clean_negative_slices": float(clean.mean()) if clean.size else np.nan,
        "false_components": float(per_slice["false_predicted"]),
        "curve": per_slice["curve"],
    }


def _number(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def validate(
    model: nn.Module, bank: SliceBank, windows: tuple[Window, ...], threshold: float
) -> dict[str, float]:
    """Sensitivity, PPV (per-slice components), Dice and clean negatives on ``bank``."""
    logits = predict_logits(model, bank.hounsfield, windows)
    scores = detection_scores(logits, bank.labels > 0, threshold)
    scores.pop("curve")
    return {key: float(value) for key, value in scores.items()}


def calibrated_threshold(
    model: nn.Module,
    bank: SliceBank,
    windows: tuple[Window, ...],
    min_ppv: float,
    floor: float,
) -> tuple[float, dict[str, float]]:
    """The lowest threshold >= ``floor`` whose validation PPV reaches ``min_ppv``.

    Segments once at ``floor`` and reads the operating curve over component scores (a
    component survives a higher threshold when its peak probability reaches it). The
    lowest such threshold keeps the most sensitivity. Without one, the threshold giving
    the best PPV is returned.
    """
    logits = predict_logits(model, bank.hounsfield, windows)
    curve = detection_scores(logits, bank.labels > 0, floor)["curve"]
    if not curve:
        return floor, {"sensitivity": float("nan"), "ppv": float("nan")}
    reaching = [p for p in curve if p["ppv"] is not None and p["ppv"] >= min_ppv]
    if reaching:
        point = min(reaching, key=lambda p: float(p["threshold"] or 0.0))
    else:
        point = max(curve, key=lambda p: float(p["ppv"] or 0.0))
    # Scores are quantised to 1/255; the threshold sits half a step below the score.
    threshold = min(0.99, max(floor, float(point["threshold"] or floor) - 0.5 / 255))
    return threshold, {"sensitivity": _number(point["sensitivity"]), "ppv": _number(point["ppv"])}
