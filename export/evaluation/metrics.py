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

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from api.lesions.components import (
    DEFAULT_CONNECTIVITY,
    Connectivity,
    label_components,
    probability_stride,
)
from api.lesions.linking import DisjointSets, overlapping_labels

_LEVELS = 256  # uint8 probability scores 0..255


@dataclass(frozen=True)
class MatchRule:
    """When a predicted component matches a truth component."""

    kind: Literal["overlap", "iou"] = "overlap"
    threshold: float = 1.0  # pixels shared (overlap) or minimum IoU (iou)

    def __post_init__(self) -> None:
        if self.kind == "overlap" and (self.threshold < 1 or self.threshold != int(self.threshold)):
            raise ValueError(f"overlap needs a whole number of pixels >= 1, got {self.threshold}")
        if self.kind == "iou" and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"IoU threshold must be in [0, 1], got {self.threshold}")

    @classmethod
    def overlap(cls, pixels: int = 1) -> MatchRule:
        """Match on at least ``pixels`` shared pixels (voxels, lesion-wise)."""
        return cls("overlap", float(pixels))

    @classmethod
    def iou(cls, minimum: float) -> MatchRule:
        """Match on intersection over union >= ``minimum`` (and one shared pixel)."""
        return cls("iou", minimum)

    def matches(
        self,
        intersection: NDArray[np.int64],
        truth_size: NDArray[np.int64],
        predicted_size: NDArray[np.int64],
    ) -> NDArray[np.bool_]:
        """Elementwise match of (truth, predicted) pairs from their pixel counts."""
        if self.kind == "overlap":
            return np.asarray(intersection >= self.threshold)
        union = truth_size + predicted_size - intersection
        return np.asarray((intersection > 0) & (intersection >= self.threshold * union))

    def __str__(self) -> str:
        if self.kind == "overlap":
            return f"overlap >= {int(self.threshold)} px"
        return f"IoU >= {self.threshold:g}"


def _ratio(numerator: int | float, denominator: int | float) -> float | None:
    return None if denominator == 0 else float(numerator) / float(denominator)


@dataclass
class _Tally:
    """Counts for one level (per-slice components or lesions), with score histograms."""

    truth: int = 0
    detected: int = 0
    true_scores: NDArray[np.int64] = field(default_factory=lambda: np.zeros(_LEVELS, np.int64))
    false_scores: NDArray[np.int64] = field(default_factory=lambda: np.zeros(_LEVELS, np.int64))
    best_scores: NDArray[np.int64] = field(default_factory=lambda: np.zeros(_LEVELS, np.int64))

    def add(self, matched: NDArray[np.bool_], scores: NDArray[np.int64]) -> None:
        """``matched``: bool (truth, predicted); ``scores``: each prediction's 0..255 score."""
        self.truth += matched.shape[0]
        is_true = matched.any(axis=0)
        np.add.at(self.true_scores, scores[is_true], 1)
        np.add.at(self.false_scores, scores[~is_true], 1)
        best = np.where(matched, scores[np.newaxis, :], -1).max(axis=1, initial=-1)
        self.detected += int((best >= 0).sum())
        np.add.at(self.best_scores, best[best >= 0], 1)

    def summary(self, studies: int) -> dict[str, Any]:
        true_predicted = int(self.true_scores.sum())
        false_predicted = int(self.false_scores.sum())
        predicted = true_predicted + false_predicted
        return {
            "truth": self.truth,
            "detected": self.detected,
            "predicted": predicted,
            "true_predicted": true_predicted,
            "false_predicted": false_predicted,
            "sensitivity": _ratio(self.detected, self.truth),
            "ppv": _ratio(true_predicted, predicted),
            "false_positives_per_scan": _ratio(false_predicted, studies),
            "curve": self.curve(studies),
        }

    def curve(self, studies: int) -> list[dict[str, float | None]]:
        """One point per distinct prediction score, from the highest threshold down."""
        # Reversed cumulative sums: entry k counts scores >= k.
        kept_true = np.cumsum(self.true_scores[::-1])[::-1]
        kept_false = np.cumsum(self.false_scores[::-1])[::-1]
        found = np.cumsum(self.best_scores[::-1])[::-1]
        present = np.flatnonzero(self.true_scores + self.false_scores)[::-1]
        return [
            {
                "threshold": int(k) / 255.0,
                "sensitivity": _ratio(int(found[k]), self.truth),
                "ppv": _ratio(int(kept_true[k]), int(kept_true[k] + kept_false[k])),
                "false_positives_per_scan": _ratio(int(kept_false[k]), studies),
            }
            for k in present
        ]


@dataclass
class _Study:
    """One study in progress: component sizes, links and overlaps; no masks but the last."""

    truth_sets: DisjointSets = field(default_factory=DisjointSets)
    predicted_sets: DisjointSets = field(default_factory=DisjointSets)
    truth_sizes: list[int] = field(default_factory=list)
    predicted_sizes: list[int] = field(default_factory=list)
    predicted_scores: list[int] = field(default_factory=list)
    overlaps: dict[tuple[int, int], int] = field(default_factory=dict)  # (truth, predicted) ids
    previous: tuple[NDArray[np.int32], NDArray[np.int32], int, int] | None = None
    slices: int = 0
    shared_voxels: int = 0  # |P & T|, for Dice
    truth_voxels: int = 0
    predicted_voxels: int = 0

    def add_slice(
        self,
        truth: tuple[NDArray[np.int32], NDArray[np.int64]],
        predicted: tuple[NDArray[np.int32], NDArray[np.int64], NDArray[np.int64]],
        intersection: NDArray[np.int64],
    ) -> None:
        """Record one slice's components (label image, sizes[, scores]) and their overlaps."""
        truth_labels, truth_sizes = truth
        predicted_labels, predicted_sizes, scores = predicted
        truth_base, predicted_base = len(self.truth_sizes), len(self.predicted_sizes)
        for _ in truth_sizes:
            self.truth_sets.add()
        for _ in predicted_sizes:
            self.predicted_sets.add()
        self.truth_sizes.extend(truth_sizes.tolist())
        self.predicted_sizes.extend(predicted_sizes.tolist())
        self.predicted_scores.extend(scores.tolist())
        for t, p in zip(*np.nonzero(intersection), strict=True):
            key = (truth_base + int(t), predicted_base + int(p))
            self.overlaps[key] = self.overlaps.get(key, 0) + int(intersection[t, p])
        if self.previous is not None:
            last_truth, last_predicted, last_truth_base, last_predicted_base = self.previous
            for a, b in overlapping_labels(last_truth, truth_labels):
                self.truth_sets.union(last_truth_base + int(a) - 1, truth_base + int(b) - 1)
            for a, b in overlapping_labels(last_predicted, predicted_labels):
                self.predicted_sets.union(
                    last_predicted_base + int(a) - 1, predicted_base + int(b) - 1
                )
        self.previous = (truth_labels, predicted_labels, truth_base, predicted_base)
        self.slices += 1
        self.shared_voxels += int(intersection.sum())
        self.truth_voxels += int(truth_sizes.sum())
        self.predicted_voxels += int(predicted_sizes.sum())

    def dice(self) -> float | None:
        return _ratio(2 * self.shared_voxels, self.truth_voxels + self.predicted_voxels)

    def lesions(self, rule: MatchRule) -> tuple[NDArray[np.bool_], NDArray[np.int64]]:
        """Lesion-wise match matrix (truth, predicted) and each predicted lesion's score."""
        _, truth_of = np.unique(self.truth_sets.roots(), return_inverse=True)
        _, predicted_of = np.unique(self.predicted_sets.roots(), return_inverse=True)
        truth_size = np.bincount(truth_of, weights=self.truth_sizes).astype(np.int64)
        predicted_size = np.bincount(predicted_of, weights=self.predicted_sizes).astype(np.int64)
        scores = np.zeros(predicted_size.size, dtype=np.int64)
        np.maximum.at(scores, predicted_of, np.asarray(self.predicted_scores, dtype=np.int64))
        intersection = np.zeros((truth_size.size, predicted_size.size), dtype=np.int64)
        for (t, p), shared in self.overlaps.items():
            intersection[truth_of[t], predicted_of[p]] += shared
        matched = rule.matches(intersection, truth_size[:, np.newaxis], predicted_size)
        return matched, scores


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
        self._per_slice = _Tally()
        self._lesion = _Tally()
        self._study = _Study()
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
        study, self._study = self._study, _Study()
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
                "pooled": _ratio(2 * shared, truth + predicted),
                "mean_per_study": _ratio(sum(defined), len(defined)),
                "per_study": [{"study": n, "dice": d} for n, d in self._dice],
            },
        }


def _cell(value: float | None, numerator: int | None = None, denominator: int | None = None) -> str:
    if value is None:
        return "n/a"
    if numerator is None:
        return f"{value:.3f}"
    return f"{value:.3f} ({numerator}/{denominator})"


def format_markdown_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """A Markdown table, one row per named :meth:`SliceMetricsAccumulator.result`."""
    header = (
        "| run | studies | slice sensitivity | slice PPV | lesion sensitivity | lesion PPV"
        " | FP / scan | Dice (pooled) | Dice (mean) |"
    )
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for name, result in results.items():
        per_slice, lesion, dice = result["per_slice"], result["lesion"], result["dice"]
        cells = [
            name,
            str(result["studies"]),
            _cell(per_slice["sensitivity"], per_slice["detected"], per_slice["truth"]),
            _cell(per_slice["ppv"], per_slice["true_predicted"], per_slice["predicted"]),
            _cell(lesion["sensitivity"], lesion["detected"], lesion["truth"]),
            _cell(lesion["ppv"], lesion["true_predicted"], lesion["predicted"]),
            _cell(lesion["false_positives_per_scan"]),
            _cell(dice["pooled"]),
            _cell(dice["mean_per_study"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
