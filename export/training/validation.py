"""Quick metrics on held-out full-size slices, shown while training runs.

The model runs exactly as served: :func:`api.inference.processing.window_channels` in front,
:func:`api.inference.processing.postprocess` behind (threshold in logit space, probability
max-pooled 4x4). Detection is scored with
:class:`export.evaluation.metrics.SliceMetricsAccumulator`, the reference paper's
per-slice rules that the held-out evaluation uses too: connected components of each
slice, sensitivity over truth components, PPV over predicted ones.
Added: mean Dice of the slices with metastasis, and the share of slices without metastasis
on which nothing at all is marked.

A bank is scored a chunk of slices at a time (:func:`logit_chunks`): validation keeps only
its running counts, calibration only each slice's pixels above its floor
(:class:`LogitsAboveFloor`), so neither holds the bank's logits (3.2 GB for 3,072 slices).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from scipy import ndimage, optimize, stats
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
from export.evaluation.metrics import SliceMetricsAccumulator
from export.training.datasets import SliceBank

logger = logging.getLogger(__name__)

VALIDATION_BATCH = 4
# Slices segmented at a time when a whole bank is scored (64 x 1 MB of float32 logits).
STREAM_SLICES = 64
# Components as export.evaluation.metrics counts them (8-connected in plane by default).
_COMPONENTS = structure(DEFAULT_CONNECTIVITY)


def autocast(precision: str) -> torch.autocast:
    """bfloat16 autocast on the CPU for precision "bf16"; a disabled one for "fp32"."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def logit_chunks(
    model: nn.Module,
    hounsfield: npt.NDArray[np.int16],
    windows: tuple[Window, ...],
) -> Iterator[tuple[int, npt.NDArray[np.float32]]]:
    """(first slice index, float32 logits (n, 1, H, W)) of ``hounsfield``, STREAM_SLICES
    at a time.

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
    """Logits (N, 1, H, W) of int16 HU slices, windowed as the served model does.

    The network runs in eval mode, VALIDATION_BATCH slices at a time; its mode is restored
    afterwards. ``precision="bf16"`` runs it under bfloat16 autocast: for mining only,
    never where a threshold or a score is measured (the served model is float32).
    """
    logits = np.empty((len(hounsfield), 1, *hounsfield.shape[1:]), dtype=np.float32)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast(precision):
            for start in range(0, len(hounsfield), VALIDATION_BATCH):
                chunk = hounsfield[start : start + VALIDATION_BATCH]
                output = model(torch.from_numpy(window_channels(chunk, windows)))
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
    """Thresholded masks (N, H, W), decided as the served model decides them."""
    packed, _ = postprocess(predict_logits(model, hounsfield, windows), threshold)
    return unpack_mask(packed, hounsfield.shape[-1])


def validate(
    model: nn.Module, bank: SliceBank, windows: tuple[Window, ...], threshold: float
) -> dict[str, float]:
    """Sensitivity, PPV (per-slice components), Dice and clean negatives on ``bank``.

    The bank is segmented a chunk at a time and each chunk post-processed as served, so
    memory holds one chunk's logits and masks. Dice is the mean over slices with
    metastasis; ``clean_negative_slices`` the share of slices without it left unmarked;
    ``false_components`` counts predicted components that match no reference one.
    """
    accumulator = SliceMetricsAccumulator()
    dice: list[npt.NDArray[np.float64]] = []
    clean: list[npt.NDArray[np.bool_]] = []
    for start, logits in logit_chunks(model, bank.hounsfield, windows):
        truth = bank.labels[start : start + len(logits)] > 0
        packed, probability = postprocess(logits, threshold)
        predicted = unpack_mask(packed, truth.shape[-1])
        accumulator.update(predicted, probability, truth)
        positive = truth.any(axis=(1, 2))
        overlap = (predicted & truth).sum(axis=(1, 2))[positive]
        size = (predicted.sum(axis=(1, 2)) + truth.sum(axis=(1, 2)))[positive]
        dice.append(2.0 * overlap / np.maximum(size, 1))
        clean.append(~predicted.any(axis=(1, 2))[~positive])
    per_slice = accumulator.result()["per_slice"]
    dice_all = np.concatenate(dice) if dice else np.empty(0)
    clean_all = np.concatenate(clean) if clean else np.empty(0, dtype=bool)
    return {
        "sensitivity": _number(per_slice["sensitivity"]),
        "ppv": _number(per_slice["ppv"]),
        "dice": float(dice_all.mean()) if dice_all.size else np.nan,
        "clean_negative_slices": float(clean_all.mean()) if clean_all.size else np.nan,
        "false_components": float(per_slice["false_predicted"]),
    }


def _number(value: float | None) -> float:
    return float("nan") if value is None else float(value)


class LogitsAboveFloor:
    """A bank's logit slices (H, W), keeping only their pixels above ``floor_logit``.

    Everything calibration measures lies above the floor: components are cut at the floor
    or higher, and a reference component counts as detected at a cut only when its peak
    exceeds it. So a slice is kept as the flat indices and values of its pixels above the
    floor (a few blobs, on a trained network), or whole where that would not be smaller,
    and read back whole with every other pixel at -inf. Iterating yields the slices in
    order, as often as asked.
    """

    def __init__(self, shape: tuple[int, int], floor_logit: float) -> None:
        self.shape = shape
        self.floor_logit = floor_logit
        self._kept: list[
            npt.NDArray[np.float32] | tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]
        ] = []

    def add(self, logits: npt.NDArray[np.float32]) -> None:
        """Keep the next slices (n, H, W)."""
        for plane in logits:
            flat = plane.ravel()
            above = np.flatnonzero(flat > self.floor_logit)
            if 2 * above.size >= flat.size:  # indices and values would take more room
                self._kept.append(plane.astype(np.float32, copy=True))
            else:
                self._kept.append((above.astype(np.int32), flat[above].astype(np.float32)))

    def __len__(self) -> int:
        return len(self._kept)

    def __iter__(self) -> Iterator[npt.NDArray[np.float32]]:
        for kept in self._kept:
            if isinstance(kept, np.ndarray):
                yield kept
                continue
            indices, values = kept
            plane = np.full(self.shape, -np.inf, dtype=np.float32)
            plane.ravel()[indices] = values
            yield plane


def threshold_from_logits(
    logits: Iterable[npt.NDArray[np.float32]],
    truth: Iterable[npt.NDArray[np.bool_] | npt.NDArray[np.uint8]],
    min_ppv: float,
    floor: float,
    confidence: float | None = None,
) -> tuple[float, dict[str, float]]:
    """The lowest threshold >= ``floor`` whose per-slice PPV on ``logits`` (slices (H, W), as
    :func:`component_peaks` takes them) reaches ``min_ppv``.

    The operating curve is read from logits (:func:`operating_curve`), so thresholds above
    the uint8 probability map's last step (254/255) can be told apart. The lowest threshold
    that reaches ``min_ppv`` keeps the most sensitivity; without one, the threshold giving
    the best PPV is returned. With ``confidence``, what must reach ``min_ppv`` is the
    one-sided Wilson lower bound of the PPV (:func:`ppv_lower_bound`), so fewer
    validation components need a higher PPV.
    """
    curve = operating_curve(logits, truth, logit_threshold(floor))
    if not curve:
        return floor, {"sensitivity": float("nan"), "ppv": float("nan")}

    def held(point: dict[str, float]) -> float:
        if confidence is None:
            return point["ppv"]
        return ppv_lower_bound(point["ppv"], int(point["predicted"]), confidence)

    reaching = [p for p in curve if held(p) >= min_ppv]
    point = reaching[-1] if reaching else max(curve, key=held)
    threshold = max(floor, float(sigmoid(np.asarray(point["logit"]))))
    if not reaching:
        logger.warning(
            "validation PPV%s reaches %.3f at best (threshold %.4g), below the %.3f asked "
            "for: this model does not meet its PPV target",
            "" if confidence is None else f" ({confidence:.0%} lower bound)",
            held(point), threshold, min_ppv,
        )
    record = {"sensitivity": point["sensitivity"], "ppv": point["ppv"]}
    if confidence is not None:
        record["ppv_lower_bound"] = held(point)
    return threshold, record


def ppv_lower_bound(ppv: float, predicted: int, confidence: float) -> float:
    """One-sided Wilson score lower bound of a proportion ``ppv`` of ``predicted`` trials."""
    if predicted <= 0:
        return 0.0
    z = float(stats.norm.ppf(confidence))
    n, z2 = float(predicted), z * z
    centre = ppv + z2 / (2 * n)
    spread = z * np.sqrt(ppv * (1 - ppv) / n + z2 / (4 * n * n))
    return float((centre - spread) / (1 + z2 / n))


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
    logits: Iterable[npt.NDArray[np.float32]],
    truth: Iterable[npt.NDArray[np.bool_] | npt.NDArray[np.uint8]],
    floor_logit: float,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Peak logit of each reference component; of each predicted one (> ``floor_logit``,
    8-connected, per slice) and whether it touches the reference.

    ``logits`` and ``truth`` give the slices (H, W) in the same order: arrays (N, H, W),
    or a :class:`LogitsAboveFloor` and a bank's labels (a label > 0 is the reference).
    """
    truth_peaks: list[float] = []
    predicted_peaks: list[float] = []
    predicted_true: list[bool] = []
    for logit, labels in zip(logits, truth, strict=True):
        reference = np.asarray(labels).astype(bool, copy=False)
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
    confidence: float | None = None,
) -> tuple[float, dict[str, float]]:
    """Segment ``bank`` once; choose the threshold (:func:`threshold_from_logits`, with
    ``confidence`` if given) and, with ``scores``, calibrate the scores.

    The score map is fitted on the components the chosen threshold reports (the floor's
    when those are all true or all false) and folded into the network's last layer (see
    ``DeepLabV3Plus.fold_logit_affine``), so every path that serves the network (ONNX
    Runtime, TensorRT, the numpy post-processing) reports calibrated probabilities with no
    change of its own. The threshold is mapped the same way, so every mask stays as it was
    (up to float32 rounding of pixels within ~1e-6 of the cut). Returns the threshold the
    (possibly folded) network is to be served at, and a record of what was done.
    """
    _, height, width = bank.hounsfield.shape
    logits = LogitsAboveFloor((height, width), logit_threshold(floor))
    for _, chunk in logit_chunks(model, bank.hounsfield, windows):
        logits.add(chunk[:, 0])
    truth = bank.labels
    threshold, point = threshold_from_logits(logits, truth, min_ppv, floor, confidence)
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
    logits: Iterable[npt.NDArray[np.float32]],
    truth: Iterable[npt.NDArray[np.bool_] | npt.NDArray[np.uint8]],
    floor_logit: float,
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
