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

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from scipy import ndimage, optimize
from torch import nn

from api.inference.contract import Window
from api.inference.processing import (
    logit_threshold,
    postprocess,
    sigmoid,
    unpack_mask,
    window_channels,
)
from api.lesions.components import DEFAULT_CONNECTIVITY, structure
from export.datasets import SliceBank
from export.metrics import SliceMetricsAccumulator

logger = logging.getLogger(__name__)

VALIDATION_BATCH = 4
# Components as export.metrics counts them (8-connected in plane by default).
_COMPONENTS = structure(DEFAULT_CONNECTIVITY)


def autocast(precision: str) -> torch.autocast:
    """bfloat16 autocast on the CPU for precision "bf16"; a disabled one for "fp32"."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def predict_logits(
    model: nn.Module,
    hounsfield: npt.NDArray[np.int16],
    windows: tuple[Window, ...],
    precision: str = "fp32",
) -> npt.NDArray[np.float32]:
    """Logits (N, 1, H, W) of int16 HU slices, windowed as the served model does.

    ``precision="bf16"`` runs the network under bfloat16 autocast: for mining only, never
    where a threshold or a score is measured (the served model is float32).
    """
    chunks = []
    was_training = model.training
    model.eval()
    with torch.inference_mode(), autocast(precision):
        for start in range(0, len(hounsfield), VALIDATION_BATCH):
            chunk = hounsfield[start : start + VALIDATION_BATCH]
            output = model(torch.from_numpy(window_channels(chunk, windows)))
            chunks.append(output.float().numpy())
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


def threshold_from_logits(
    logits: npt.NDArray[np.float32], truth: npt.NDArray[np.bool_], min_ppv: float, floor: float
) -> tuple[float, dict[str, float]]:
    """The lowest threshold >= ``floor`` whose per-slice PPV on ``logits`` (N, H, W) reaches
    ``min_ppv``.

    The operating curve is read from logits (:func:`operating_curve`), so thresholds above
    the uint8 probability map's last step (254/255) can be told apart. The lowest threshold
    that reaches ``min_ppv`` keeps the most sensitivity; without one, the threshold giving
    the best PPV is returned.
    """
    curve = operating_curve(logits, truth, logit_threshold(floor))
    if not curve:
        return floor, {"sensitivity": float("nan"), "ppv": float("nan")}
    reaching = [p for p in curve if p["ppv"] >= min_ppv]
    point = reaching[-1] if reaching else max(curve, key=lambda p: p["ppv"])
    threshold = max(floor, float(sigmoid(np.asarray(point["logit"]))))
    return threshold, {"sensitivity": point["sensitivity"], "ppv": point["ppv"]}


@dataclass(frozen=True)
class ScoreCalibration:
    """Platt scaling of component peaks: P(true lesion) = sigmoid(scale * peak + shift)."""

    scale: float
    shift: float

    def logit(self, raw: float) -> float:
        """The calibrated logit of a raw one."""
        return self.scale * raw + self.shift


# Calibration may soften the network's confidence, never sharpen it.
MAX_SCORE_SCALE = 1.0
MIN_SCORE_SCALE = 1e-3
INITIAL_SCORE_SCALE = 0.01  # a nearly flat start: the fit only has to climb


def fit_score_calibration(
    peaks: npt.NDArray[np.floating[Any]], true: npt.NDArray[np.bool_]
) -> ScoreCalibration | None:
    """Logistic regression of "this component is a true lesion" on its peak logit.

    A network trained with pixel losses on rare lesions is over-confident: true and false
    components alike peak far past sigmoid's last uint8 step, so every reported probability
    would read 1.0. Fitted on validation components, ``sigmoid(scale * peak + shift)``
    is the share of components with that peak that were true. ``scale`` stays in
    (0, 1]: the map is increasing, so it reorders nothing. None without both kinds.
    """
    x = np.asarray(peaks, dtype=np.float64)
    y = np.asarray(true, dtype=np.float64)
    if x.size == 0 or y.min() == y.max():
        return None

    def loss(params: npt.NDArray[np.float64]) -> tuple[float, npt.NDArray[np.float64]]:
        z = params[0] * x + params[1]
        # mean binary cross-entropy, written stably: log(1 + e^z) - y z
        value = float(np.mean(np.logaddexp(0.0, z) - y * z))
        residual = sigmoid(z) - y
        return value, np.array([np.mean(residual * x), np.mean(residual)])

    result = optimize.minimize(
        loss,
        x0=np.array([INITIAL_SCORE_SCALE, 0.0]),
        jac=True,
        method="L-BFGS-B",
        bounds=[(MIN_SCORE_SCALE, MAX_SCORE_SCALE), (-100.0, 100.0)],
    )
    if not result.success:
        logger.warning("score calibration did not converge: %s", result.message)
    return ScoreCalibration(float(result.x[0]), float(result.x[1]))


def component_peaks(
    logits: npt.NDArray[np.float32], truth: npt.NDArray[np.bool_], floor_logit: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Peak logit of each reference component; of each predicted one (> ``floor_logit``,
    8-connected, per slice) and whether it touches the reference."""
    truth_peaks: list[float] = []
    predicted_peaks: list[float] = []
    predicted_true: list[bool] = []
    for logit, reference in zip(logits, truth, strict=True):
        labels, count = ndimage.label(reference, structure=_COMPONENTS)
        if count:
            truth_peaks.extend(ndimage.maximum(logit, labels, np.arange(1, count + 1)))
        marked, marked_count = ndimage.label(logit > floor_logit, structure=_COMPONENTS)
        if marked_count:
            ids = np.arange(1, marked_count + 1)
            predicted_peaks.extend(ndimage.maximum(logit, marked, ids))
            touching = np.zeros(marked_count + 1, dtype=bool)
            touching[marked[reference & (marked > 0)]] = True
            predicted_true.extend(touching[1:])
    return (
        np.asarray(truth_peaks, dtype=np.float64),
        np.asarray(predicted_peaks, dtype=np.float64),
        np.asarray(predicted_true, dtype=bool),
    )


def calibrate(
    model: nn.Module,
    bank: SliceBank,
    windows: tuple[Window, ...],
    min_ppv: float,
    floor: float,
    scores: bool,
) -> tuple[float, dict[str, float]]:
    """Segment ``bank`` once; choose the threshold (:func:`threshold_from_logits`) and, with
    ``scores``, calibrate the scores.

    The score map is fitted on the components the chosen threshold reports (the floor's
    when those are all true or all false) and folded into the network's last layer (see
    ``DeepLabV3Plus.fold_logit_affine``), so every path that serves the network (ONNX
    Runtime, TensorRT, the numpy post-processing) reports calibrated probabilities with no
    change of its own. The threshold is mapped the same way, so every mask stays as it was
    (up to float32 rounding of pixels within ~1e-6 of the cut). Returns the threshold the
    (possibly folded) network is to be served at, and a record of what was done.
    """
    logits = predict_logits(model, bank.hounsfield, windows)[:, 0]
    truth = bank.labels > 0
    threshold, point = threshold_from_logits(logits, truth, min_ppv, floor)
    record = {"threshold": threshold, **point}
    if not scores:
        return threshold, record
    fold = getattr(model, "fold_logit_affine", None)
    if fold is None:
        logger.warning(
            "%s cannot fold a score calibration; scores left as they are", type(model).__name__
        )
        return threshold, record
    fit, fitted_on = None, 0
    for cut in (logit_threshold(threshold), logit_threshold(floor)):
        _, peaks, true = component_peaks(logits, truth, cut)
        fit, fitted_on = fit_score_calibration(peaks, true), len(peaks)
        if fit is not None:
            break
    if fit is None:
        logger.warning("no validation components of both kinds: scores left uncalibrated")
        return threshold, record
    fold(fit.scale, fit.shift)
    served = float(sigmoid(np.asarray(fit.logit(logit_threshold(threshold)))))
    record.update(
        threshold=served,
        raw_threshold=threshold,
        score_scale=fit.scale,
        score_shift=fit.shift,
        score_components=float(fitted_on),
    )
    return served, record


# Calibrated thresholds stay below sigmoid(12) (1 - 6e-6): past it float32 logits of
# confident pixels and the threshold blur into one another.
MAX_CALIBRATION_LOGIT = 12.0


def operating_curve(
    logits: npt.NDArray[np.float32], truth: npt.NDArray[np.bool_], floor_logit: float
) -> list[dict[str, float]]:
    """Per-slice sensitivity and PPV at each useful threshold, from the highest down.

    Components (8-connected) are found once, at ``floor_logit``. A reference component is
    detected at threshold t when its largest logit exceeds t (the mask at t is logit > t);
    a predicted component survives t when its peak does, and is true when it touches the
    reference. Each point's ``logit`` sits halfway between a component peak and the next
    lower one, so the chosen threshold has a margin on both sides.
    """
    reference_peaks, peaks, predicted_true = component_peaks(logits, truth, floor_logit)
    if not peaks.size:
        return []
    reference_peaks = np.sort(reference_peaks)
    order = np.argsort(-peaks, kind="stable")
    descending = -peaks[order]  # ascending negated peaks, for searchsorted
    true_so_far = np.cumsum(predicted_true[order])
    levels = np.unique(peaks)[::-1]
    lower = np.append(levels[1:], floor_logit)
    curve = []
    for level, below in zip(levels, lower, strict=True):
        cut = min(0.5 * (level + below), MAX_CALIBRATION_LOGIT)
        kept = int(np.searchsorted(descending, -cut, side="left"))  # peaks > cut
        if kept == 0:
            continue
        detected = len(reference_peaks) - np.searchsorted(reference_peaks, cut, side="right")
        curve.append(
            {
                "logit": float(cut),
                "sensitivity": float(detected / len(reference_peaks))
                if len(reference_peaks)
                else float("nan"),
                "ppv": float(true_so_far[kept - 1] / kept),
                "predicted": float(kept),
            }
        )
    return curve
