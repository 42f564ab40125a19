"""The operating threshold and the score map, chosen on validation slices after training.

The threshold is the lowest whose per-slice PPV (or its Wilson lower bound) reaches the
target, read from the logits' operating curve. Component peaks are then Platt-scaled
(:func:`export.training.score_map.fit_score_calibration`) and the map folded into the
network's last layer, so every serving path reports calibrated probabilities. A bank is
segmented once, a chunk at a time, keeping only each slice's pixels above the floor
(:class:`LogitsAboveFloor`), not the bank's logits (3.2 GB for 3,072 slices).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import numpy.typing as npt
from scipy import ndimage, stats
from torch import nn

from api.inference.contract import Window
from api.inference.processing import logit_threshold, sigmoid
from api.lesions.components import DEFAULT_CONNECTIVITY, structure
from export.training.bank import SliceBank
from export.training.prediction import logit_chunks
from export.training.score_map import fit_score_calibration

logger = logging.getLogger(__name__)

# Components as export.evaluation.metrics counts them (8-connected in plane by default).
_COMPONENTS = structure(DEFAULT_CONNECTIVITY)


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
    _, height, width = bank.labels.shape
    logits = LogitsAboveFloor((height, width), logit_threshold(floor))
    for _, chunk in logit_chunks(model, bank.planes, windows):
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
    return _fold_score_map(fold, logits, truth, threshold, floor, record)


def _fold_score_map(
    fold: Callable[[float, float], None],
    logits: LogitsAboveFloor,
    truth: npt.NDArray[np.uint8],
    threshold: float,
    floor: float,
    record: dict[str, float],
) -> tuple[float, dict[str, float]]:
    """Fit the score map on the components cut at ``threshold`` (else at ``floor``), fold
    it into the network, and return the threshold mapped the same way."""
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
