"""Detection and overlap metrics, after the reference paper (Spine 2024, DeepLabV3+ on CT).

Streamed: feed slices in order with :meth:`SliceMetricsAccumulator.update`, close each study
with :meth:`~SliceMetricsAccumulator.end_study`, read :meth:`~SliceMetricsAccumulator.result`.
Memory holds the previous slice's label images and one number per component, never a volume.

Rules:

- Components: connected components of a slice mask (4- or 8-connectivity in-plane, default
  8), truth and prediction alike; predicted ones under ``min_pixels`` are dropped (default 1:
  none), everywhere including Dice.
- Match (:class:`MatchRule`): a predicted and a truth component match when they share at
  least N pixels (default N = 1), or when their IoU is at least t; IoU always needs one shared
  pixel.
- Per slice (the paper's evaluation): every slice's components count on their own.
  Sensitivity = truth components matched by at least one predicted component on the same
  slice / all truth components. PPV = predicted components matching at least one truth
  component / all predicted components. A false positive is a predicted component matching
  none.
- Lesion-wise: lesions are the connected components of each study's volume: in-plane
  connectivity as above, through-plane the same (row, column) on the adjacent slice (see
  :mod:`api.lesions.linking`). The match rule applies to voxel counts. Sensitivity and PPV as
  above over lesions; false positives per scan = unmatched predicted lesions / studies.
- Dice = 2 |P & T| / (|P| + |T|) over voxels: per study, its mean over studies, and pooled (the
  sums over all studies).
- Scores: a component's score is the largest probability under its pixels (the probability
  map sampled at the nearest block, uint8 / 255); a lesion's, its components' largest. A
  curve point at threshold s keeps the predicted components (lesions) scoring >= s, with no
  re-segmentation: sensitivity(s) counts truth matched by a kept prediction, PPV(s) and false
  positives per scan(s) the kept predictions. Points at each distinct score, descending: the
  FROC (sensitivity vs false positives per scan) and precision-recall curves.
- Undefined values are ``None`` (JSON null), never 0 or 1: sensitivity without truth, PPV
  without predictions, Dice when both masks are empty, anything per scan without studies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from api.lesions.components import (
    DEFAULT_CONNECTIVITY,
    Connectivity,
    label_components,
    probability_stride,
)
from export.evaluation.counting import MatchRule, StudyCounts, Tally, ratio

__all__ = ["MatchRule", "SliceComponents", "SliceMetricsAccumulator"]


@dataclass(frozen=True)
class SliceComponents:
    """One slice's components as counted: label images (0 background, k = component k) and
    the match matrix (truth, predicted) of the rule.

    Scores are uint8 probabilities (0..255), each component's largest over the probability
    map's blocks under its pixels (see :func:`_component_scores`). For a truth component
    that is how near the model came to it; with the service's 4 x 4 blocks it may come from
    a pixel of the same block just outside the component.
    """

    truth: NDArray[np.int32]
    predicted: NDArray[np.int32]
    matched: NDArray[np.bool_]
    truth_scores: NDArray[np.int64]
    predicted_scores: NDArray[np.int64]

    @property
    def missed(self) -> NDArray[np.intp]:
        """Labels (1-based) of the truth components that no predicted component matched."""
        return np.flatnonzero(~self.matched.any(axis=1)) + 1

    @property
    def false(self) -> NDArray[np.intp]:
        """Labels (1-based) of the predicted components that matched no truth component."""
        return np.flatnonzero(~self.matched.any(axis=0)) + 1


def _component_scores(
    labels: NDArray[np.int32], count: int, probability: NDArray[np.uint8]
) -> NDArray[np.int64]:
    """Each component's largest probability (0..255) under its pixels, nearest block."""
    stride = probability_stride(labels.shape, probability.shape)
    rows, cols = np.nonzero(labels)
    scores = np.zeros(count + 1, dtype=np.int64)
    np.maximum.at(scores, labels[rows, cols], probability[rows // stride, cols // stride])
    return scores[1:]


def _intersections(
    truth: NDArray[np.int32], truth_count: int, predicted: NDArray[np.int32], predicted_count: int
) -> NDArray[np.int64]:
    """Shared pixels of every (truth, predicted) component pair, shape (truth, predicted)."""
    both = (truth != 0) & (predicted != 0)
    codes = (truth[both].astype(np.int64) - 1) * predicted_count + predicted[both] - 1
    counts = np.bincount(codes, minlength=truth_count * predicted_count)
    return counts.reshape(truth_count, predicted_count).astype(np.int64)


class SliceMetricsAccumulator:
    """Per-slice and lesion-wise detection metrics and Dice, accumulated study by study."""

    def __init__(
        self,
        rule: MatchRule | None = None,
        *,
        connectivity: Connectivity = DEFAULT_CONNECTIVITY,
        min_pixels: int = 1,
    ) -> None:
        self.rule = rule or MatchRule()
        self.connectivity: Connectivity = connectivity
        self.min_pixels = min_pixels
        self._per_slice = Tally()
        self._lesion = Tally()
        self._study = StudyCounts()
        self._dice: list[tuple[str, float | None]] = []
        self._sums = np.zeros(3, dtype=np.int64)  # pooled shared, truth, predicted voxels
        self._slices = 0

    def update(
        self,
        predicted_mask: NDArray[np.bool_],
        probability: NDArray[np.uint8],
        truth_mask: NDArray[np.bool_],
    ) -> None:
        """Add the study's next slice (H, W), or next slices (N, H, W), in slice order.

        ``probability``: uint8 (H/s, W/s) [or (N, H/s, W/s)], sigmoid x 255, max-pooled over
        s x s blocks (s = 4 from the service's model, 1 for a full-resolution map).
        """
        if predicted_mask.ndim == 3:
            for one in zip(predicted_mask, probability, truth_mask, strict=True):
                self.update_slice(*one)
            return
        self.update_slice(predicted_mask, probability, truth_mask)

    def update_slice(
        self,
        predicted_mask: NDArray[np.bool_],
        probability: NDArray[np.uint8],
        truth_mask: NDArray[np.bool_],
    ) -> SliceComponents:
        """Add the study's next slice (H, W); returns its components and how they matched."""
        if predicted_mask.shape != truth_mask.shape or predicted_mask.ndim != 2:
            raise ValueError(f"masks differ: {predicted_mask.shape} != {truth_mask.shape}")
        truth, truth_count = label_components(
            truth_mask.astype(np.bool_, copy=False), connectivity=self.connectivity
        )
        predicted, predicted_count = label_components(
            predicted_mask.astype(np.bool_, copy=False),
            connectivity=self.connectivity,
            min_pixels=self.min_pixels,
        )
        scores = _component_scores(predicted, predicted_count, probability)
        intersection = _intersections(truth, truth_count, predicted, predicted_count)
        truth_sizes = np.bincount(truth.ravel(), minlength=truth_count + 1)[1:].astype(np.int64)
        predicted_sizes = np.bincount(predicted.ravel(), minlength=predicted_count + 1)[1:]
        predicted_sizes = predicted_sizes.astype(np.int64)
        matched = self.rule.matches(
            intersection, truth_sizes[:, np.newaxis], predicted_sizes[np.newaxis, :]
        )
        self._per_slice.add(matched, scores)
        self._study.add_slice(
            (truth, truth_sizes), (predicted, predicted_sizes, scores), intersection
        )
        self._slices += 1
        return SliceComponents(
            truth=truth,
            predicted=predicted,
            matched=matched,
            truth_scores=_component_scores(truth, truth_count, probability),
            predicted_scores=scores,
        )

    def end_study(self, name: str | None = None) -> None:
        """Close the current study (lesions are counted now); the next update starts another."""
        study, self._study = self._study, StudyCounts()
        if study.slices == 0:
            return
        matched, scores = study.lesions(self.rule)
        self._lesion.add(matched, scores)
        self._dice.append((name or str(len(self._dice) + 1), study.dice()))
        self._sums += (study.shared_voxels, study.truth_voxels, study.predicted_voxels)

    def result(self) -> dict[str, Any]:
        """Every metric as JSON-ready values (see the module docstring); ends an open study."""
        self.end_study()
        studies = len(self._dice)
        defined = [d for _, d in self._dice if d is not None]
        shared, truth, predicted = (int(v) for v in self._sums)
        return {
            "rule": str(self.rule),
            "connectivity": self.connectivity,
            "min_pixels": self.min_pixels,
            "studies": studies,
            "slices": self._slices,
            "per_slice": self._per_slice.summary(studies),
            "lesion": self._lesion.summary(studies),
            "dice": {
                "pooled": ratio(2 * shared, truth + predicted),
                "mean_per_study": ratio(sum(defined), len(defined)),
                "per_study": [{"study": n, "dice": d} for n, d in self._dice],
            },
        }
