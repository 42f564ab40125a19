"""What :class:`~export.evaluation.metrics.SliceMetricsAccumulator` counts: the match rule,
a tally of matches and score histograms per level, and one study's components linked into
lesions as its slices arrive (see :mod:`export.evaluation.metrics` for the rules).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

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


def ratio(numerator: int | float, denominator: int | float) -> float | None:
    """numerator / denominator, None (undefined) when the denominator is 0."""
    return None if denominator == 0 else float(numerator) / float(denominator)


@dataclass
class Tally:
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
            "sensitivity": ratio(self.detected, self.truth),
            "ppv": ratio(true_predicted, predicted),
            "false_positives_per_scan": ratio(false_predicted, studies),
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
                "sensitivity": ratio(int(found[k]), self.truth),
                "ppv": ratio(int(kept_true[k]), int(kept_true[k] + kept_false[k])),
                "false_positives_per_scan": ratio(int(kept_false[k]), studies),
            }
            for k in present
        ]


@dataclass
class StudyCounts:
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
        return ratio(2 * self.shared_voxels, self.truth_voxels + self.predicted_voxels)

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
