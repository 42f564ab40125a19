"""Quick metrics on held-out full-size slices, shown while training runs.

The model runs exactly as served (:mod:`export.training.prediction`). Detection is scored
with :class:`export.evaluation.metrics.SliceMetricsAccumulator`, the reference paper's
per-slice rules that the held-out evaluation uses too: connected components of each
slice, sensitivity over truth components, PPV over predicted ones.
Added: mean Dice of the slices with metastasis, and the share of slices without metastasis
on which nothing at all is marked.

A bank is scored a chunk of slices at a time (:func:`~export.training.prediction.logit_chunks`),
keeping only running counts, so memory never holds the bank's logits (3.2 GB for 3,072
slices).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from torch import nn

from api.inference.contract import Window
from api.inference.processing import postprocess, unpack_mask
from export.evaluation.metrics import SliceMetricsAccumulator
from export.training.bank import SliceBank
from export.training.prediction import logit_chunks


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
    for start, logits in logit_chunks(model, bank.planes, windows):
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
