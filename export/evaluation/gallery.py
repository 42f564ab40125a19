"""Pictures of what a model got wrong: the reference components it missed, its false findings.

Sensitivity says how many lesions were missed; a radiologist reviewing a model wants to see
which, and what the model marked instead. Over a whole evaluation a :class:`Gallery` keeps
the ``limit`` largest reference components that no detection matched (per slice, under the
evaluation's match rule) and the ``limit`` highest-scoring detections that matched no
reference, and draws each as a crop of its slice in a display window: the reference outline
green, the model's red (:mod:`export.evaluation.tiles`).

One tile per run: misses (or false findings) that overlap on consecutive slices of a study
are one run, a 3D lesion's cross-sections, and only its best slice is drawn, so one long
lesion cannot fill the gallery. Crops are drawn as they are kept, so memory holds the kept
pictures, each run's best of the current study, and one slice of run labels, never a volume.
"""

from __future__ import annotations

import heapq
import itertools
from pathlib import Path
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from api.inference.contract import BONE_WINDOW, Window
from export.evaluation.metrics import SliceComponents
from export.evaluation.tiles import Finding, draw_tile, write_sheet

__all__ = ["FALSE_POSITIVES_PNG", "MISSES_PNG", "Finding", "Gallery"]

MISSES_PNG = "misses.png"
FALSE_POSITIVES_PNG = "false-positives.png"
DEFAULT_LIMIT = 24
DEFAULT_CROP = 96  # pixels: 65-95 mm at the usual 0.68-0.98 mm, a vertebra and its ribs' heads


class _Entry(NamedTuple):
    key: tuple[int, ...]  # rank: larger is worse, shown first
    arrival: int  # minus the order of arrival: among equal keys the earlier ranks higher
    finding: Finding


class _Kind:
    """One kind of finding (misses, or false findings): the kept entries, and the runs of the
    study in progress, linked slice to slice."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept: list[_Entry] = []  # a min-heap: its root is the first to give way
        # run id -> the run's best slice so far, among those good enough to be kept: the
        # kept entries change only between studies, so a slice that could not enter then
        # cannot enter at the study's end either, and is never drawn.
        self.runs: dict[int, _Entry] = {}
        self.labels: NDArray[np.int32] | None = None  # run ids on the last slice seen
        self.slice_index = -2
        self.next_run = 1

    def run_of(self, mask: NDArray[np.bool_], slice_index: int) -> int:
        """The run ``mask`` continues (it overlaps one on the slice before), else a new one."""
        if self.labels is not None and slice_index == self.slice_index + 1:
            below = self.labels[mask]
            below = below[below > 0]
            if below.size:
                return int(below.min())
        self.next_run += 1
        return self.next_run - 1

    def would_keep(self, key: tuple[int, ...], arrival: int, run: int) -> bool:
        """Whether a finding ranked (key, arrival) would become its run's best and be kept."""
        best = self.runs.get(run)
        if best is not None and (key, arrival) <= best[:2]:
            return False
        return len(self.kept) < self.limit or (key, arrival) > self.kept[0][:2]

    def end_study(self) -> None:
        """Offer each run's best slice to the kept entries; forget the study's runs."""
        for entry in self.runs.values():
            if len(self.kept) < self.limit:
                heapq.heappush(self.kept, entry)
            elif entry[:2] > self.kept[0][:2]:
                heapq.heapreplace(self.kept, entry)
        self.runs.clear()
        self.labels, self.slice_index, self.next_run = None, -2, 1

    def ranked(self) -> list[Finding]:
        return [entry.finding for entry in sorted(self.kept, reverse=True)]


class Gallery:
    """The worst misses and false findings of an evaluation, drawn as crops.

    Misses are ranked by size (the largest missed cross-section first), false findings by
    score, then size (the most confident first); a run of overlapping findings on
    consecutive slices counts once, by its best slice. Ties keep the earlier finding. Feed
    slices in study order (a new study name ends the last study); read :attr:`misses`,
    :attr:`false_positives` or :meth:`write` when the evaluation is done.
    """

    def __init__(
        self, limit: int = DEFAULT_LIMIT, window: Window = BONE_WINDOW, crop: int = DEFAULT_CROP
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        if crop < 8:
            raise ValueError(f"crop must be >= 8 pixels, got {crop}")
        self.limit = limit
        self.window = window
        self.crop = crop
        self._order = itertools.count()
        self._study: str | None = None
        self._misses = _Kind(limit)
        self._false = _Kind(limit)

    @property
    def misses(self) -> list[Finding]:
        """Kept missed reference components, in rank order (ends the study in progress)."""
        self.end_study()
        return self._misses.ranked()

    @property
    def false_positives(self) -> list[Finding]:
        """Kept false findings, in rank order (ends the study in progress)."""
        self.end_study()
        return self._false.ranked()

    def end_study(self) -> None:
        """Close the study in progress: its runs' best slices compete for the kept tiles."""
        self._misses.end_study()
        self._false.end_study()
        self._study = None

    def add(
        self,
        study: str,
        slice_index: int,
        hounsfield: NDArray[np.int16],
        components: SliceComponents,
    ) -> None:
        """Consider one counted slice (HU and components on the slice's own grid)."""
        if hounsfield.shape != components.truth.shape:
            raise ValueError(f"slice {hounsfield.shape} and labels {components.truth.shape} differ")
        if study != self._study:
            self.end_study()
            self._study = study
        for kind, labels, found, scores, by_score in (
            (self._misses, components.truth, components.missed, components.truth_scores, False),
            (
                self._false,
                components.predicted,
                components.false,
                components.predicted_scores,
                True,
            ),
        ):
            runs = np.zeros(labels.shape, dtype=np.int32)
            for label in found:
                mask = labels == label
                size = int(np.count_nonzero(mask))
                score = int(scores[label - 1])
                key = (score, size) if by_score else (size,)
                run = kind.run_of(mask, slice_index)
                runs[mask] = run
                arrival = -next(self._order)
                if kind.would_keep(key, arrival, run):
                    rgb = draw_tile(hounsfield, components, mask, self.crop, self.window)
                    finding = Finding(study, slice_index, size, score, rgb)
                    kind.runs[run] = _Entry(key, arrival, finding)
            kind.labels, kind.slice_index = runs, slice_index

    def write(self, out_dir: Path) -> list[Path]:
        """Write ``misses.png`` and ``false-positives.png`` into ``out_dir``."""
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = [out_dir / MISSES_PNG, out_dir / FALSE_POSITIVES_PNG]
        write_sheet(
            self.misses,
            paths[0],
            f"Missed reference components, largest first (at most {self.limit}; "
            "a lesion missed on several slices shows its largest)",
            "No reference component was missed.",
            self.window,
        )
        write_sheet(
            self.false_positives,
            paths[1],
            f"False findings, most confident first (at most {self.limit}; "
            "one found on several slices shows its most confident)",
            "The model reported no false finding.",
            self.window,
        )
        return paths
