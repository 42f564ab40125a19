"""Evaluate a segmentation model on labelled (and unlabelled) CT studies.

Every study goes through the model the way the gateway sends it: each slice is fitted into
the model's 512x512 input with :func:`api.dicom.geometry.resize_to_model`, and the answer is
mapped back with :meth:`~api.dicom.geometry.ResizeMapping.mask_to_original`, so masks are
compared with the reference at the slice's own size. Counting is
:class:`export.evaluation.metrics.SliceMetricsAccumulator`'s (the reference paper's per-slice
sensitivity and PPV, lesion-wise 3D sensitivity and PPV, false positives per scan, Dice).
A study without reference labels counts as negative: every detection on it is false.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from api.dicom.geometry import ResizeMapping, resize_to_model
from api.inference.protocol import ModelInfo, Segmentation, SegmentationModel
from export.evaluation.data import SliceBatch, Study
from export.evaluation.floor import StudyFloor
from export.evaluation.gallery import Gallery
from export.evaluation.metrics import MatchRule, SliceComponents, SliceMetricsAccumulator
from export.evaluation.mimics import MimicTally

__all__ = [
    "Evaluation",
    "evaluate",
    "evaluate_async",
    "probability_to_original",
    "study_row",
]

DEFAULT_BATCH = 8


@dataclass
class Evaluation:
    """What one evaluation found: the accumulator's result and a row per study."""

    metrics: dict[str, Any]
    per_study: list[dict[str, Any]] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)
    data: str = ""
    reporting_floor_mm: float = 0.0  # the gateway's; lesions under it were not counted
    normal_variants: dict[str, Any] | None = None  # false findings at them (eval_mimics)

    def to_json(self) -> dict[str, Any]:
        """The content of ``metrics.json``."""
        content = {
            "model": self.model,
            "data": self.data,
            "match_rule": self.metrics["rule"],
            "reporting_floor_mm": self.reporting_floor_mm,
            "metrics": self.metrics,
            "per_study": self.per_study,
        }
        if self.normal_variants is not None:
            content["normal_variants"] = self.normal_variants
        return content


def describe_model(info: ModelInfo, source: str = "") -> dict[str, Any]:
    """The model's identity for the report."""
    return {
        "source": source,
        "name": info.name,
        "version": info.version,
        "platform": info.platform,
        "threshold": info.threshold,
        "windows": [str(w) for w in info.windows],
        "input_size": info.input_size,
    }


async def evaluate_async(
    model: SegmentationModel,
    studies: Iterable[Study],
    *,
    rule: MatchRule | None = None,
    batch: int = DEFAULT_BATCH,
    accumulator: SliceMetricsAccumulator | None = None,
    gallery: Gallery | None = None,
    on_study: Callable[[Study], None] | None = None,
    floor_mm: float = 0.0,
) -> Evaluation:
    """Run ``model`` over ``studies`` (one at a time) and count; ``on_study`` after each.

    With a ``gallery``, every counted slice is offered to it (its misses and false findings).
    False findings at normal variants (phantoms with ``--bone-variants``) are counted by kind.
    Lesions under ``floor_mm`` (the gateway's reporting floor) are taken out of the model's
    answers before anything is counted, as the gateway hides them.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    counter = accumulator or SliceMetricsAccumulator(rule)
    info = await model.info()
    rows = []
    before = counter.result()
    mimics = MimicTally()
    for study in studies:
        await _segment_study(
            model, study, counter, min(batch, info.max_batch_size), info, gallery, mimics,
            floor_mm,
        )
        counter.end_study(study.name)
        after = counter.result()
        rows.append(study_row(study, before, after))
        before = after
        if on_study is not None:
            on_study(study)
    return Evaluation(metrics=before, per_study=rows, model=describe_model(info),
                      reporting_floor_mm=floor_mm, normal_variants=mimics.result())


def evaluate(
    model: SegmentationModel,
    studies: Iterable[Study],
    *,
    rule: MatchRule | None = None,
    batch: int = DEFAULT_BATCH,
    gallery: Gallery | None = None,
    on_study: Callable[[Study], None] | None = None,
    floor_mm: float = 0.0,
) -> Evaluation:
    """Synchronous :func:`evaluate_async`, closing the model afterwards."""

    async def run() -> Evaluation:
        try:
            return await evaluate_async(
                model, studies, rule=rule, batch=batch, gallery=gallery, on_study=on_study,
                floor_mm=floor_mm,
            )
        finally:
            await model.close()

    return asyncio.run(run())


async def _segment_study(
    model: SegmentationModel,
    study: Study,
    counter: SliceMetricsAccumulator,
    batch: int,
    info: ModelInfo,
    gallery: Gallery | None = None,
    mimics: MimicTally | None = None,
    floor_mm: float = 0.0,
) -> None:
    """Feed one study's slices through the model and the accumulator, in slice order.

    With a floor, the model sees the study once and the floor decides its lesions; the
    slices are then read again and counted against the floored answers.
    """
    answers = _answers(model, study, batch, info)
    if floor_mm > 0:
        answers = await _floored(answers, study, batch, info, floor_mm)
    async for start, slices, mappings, answer in answers:
        counted = _count(counter, slices, answer, mappings)
        if mimics is not None:
            for offset, components in enumerate(counted):
                mimics.add_slice(study.name, study.mimics.get(start + offset, []), components)
        if gallery is not None:
            for offset, (plane, components) in enumerate(
                zip(slices.hounsfield, counted, strict=True)
            ):
                gallery.add(study.name, start + offset, plane, components)


Answers = AsyncIterator[tuple[int, SliceBatch, list[ResizeMapping], Segmentation]]


def _reader(study: Study, batch: int, info: ModelInfo) -> Callable[
        [int], tuple[SliceBatch, npt.NDArray[np.int16], list[ResizeMapping]]]:
    def read(start: int) -> tuple[SliceBatch, npt.NDArray[np.int16], list[ResizeMapping]]:
        slices = study.read(start, min(start + batch, study.slice_count))
        fitted = [resize_to_model(plane, info.input_size) for plane in slices.hounsfield]
        return slices, np.stack([image for image, _ in fitted]), [m for _, m in fitted]

    return read


async def _answers(model: SegmentationModel, study: Study, batch: int, info: ModelInfo
                   ) -> Answers:
    """(first index, slices, mappings, model answer) per batch, in slice order."""
    starts = list(range(0, study.slice_count, batch))
    if not starts:
        return
    read = _reader(study, batch, info)
    # Decode the next batch while the model works on this one.
    pending = asyncio.ensure_future(asyncio.to_thread(read, starts[0]))
    try:
        for position, start in enumerate(starts):
            slices, hounsfield, mappings = await pending
            if position + 1 < len(starts):
                pending = asyncio.ensure_future(asyncio.to_thread(read, starts[position + 1]))
            yield start, slices, mappings, await model.segment(hounsfield)
    finally:
        pending.cancel()


async def _floored(answers: Answers, study: Study, batch: int, info: ModelInfo,
                   floor_mm: float) -> Answers:
    """``answers`` with the lesions under the floor taken out, decided over the whole study."""
    if study.pixel_spacing_mm is None:
        raise ValueError(f"{study.name}: no pixel spacing to measure lesions against the"
                         " reporting floor; evaluate with --reporting-floor-mm 0")
    floor = StudyFloor(floor_mm, study.pixel_spacing_mm)
    async for start, _, mappings, answer in answers:
        for offset, mapping in enumerate(mappings):
            floor.add(start + offset, answer.mask[offset], answer.probability[offset], mapping)
    floor.finish()
    return _replayed(floor, study, batch, info)


async def _replayed(floor: StudyFloor, study: Study, batch: int, info: ModelInfo) -> Answers:
    read = _reader(study, batch, info)
    for start in range(0, study.slice_count, batch):
        slices, _, mappings = await asyncio.to_thread(read, start)
        yield start, slices, mappings, floor.answer(start, len(mappings))


def _count(
    counter: SliceMetricsAccumulator,
    slices: SliceBatch,
    answer: Segmentation,
    mappings: list[ResizeMapping],
) -> list[SliceComponents]:
    """Map each model answer back to its slice's own grid and count it against the reference."""
    counted = []
    for index, mapping in enumerate(mappings):
        mask = mapping.mask_to_original(answer.mask[index])
        probability = answer.probability[index]
        if not mapping.is_identity:
            probability = probability_to_original(probability, mapping)
        counted.append(counter.update_slice(mask, probability, slices.truth[index]))
    return counted


def probability_to_original(
    probability: npt.NDArray[np.uint8], mapping: ResizeMapping
) -> npt.NDArray[np.uint8]:
    """A block probability map of the model's square onto the stored grid (nearest), stride 1."""
    stride = mapping.size // probability.shape[0]
    rows, columns = mapping.original_shape
    model_rows, model_columns = mapping.to_model(
        np.arange(rows, dtype=np.float64), np.arange(columns, dtype=np.float64)
    )
    # The same nearest-centre rule as ResizeMapping.mask_to_original, then the 4x4 block.
    r = np.clip(np.rint(model_rows).astype(np.intp), 0, mapping.size - 1) // stride
    c = np.clip(np.rint(model_columns).astype(np.intp), 0, mapping.size - 1) // stride
    return np.asarray(probability[np.ix_(r, c)], dtype=np.uint8)


_COUNTS = ("truth", "detected", "predicted", "true_predicted", "false_predicted")


def study_row(study: Study, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """One study's counts: the accumulator's totals after it minus those before it."""

    def delta(level: str) -> dict[str, int]:
        return {key: int(after[level][key]) - int(before[level][key]) for key in _COUNTS}

    per_slice, lesion = delta("per_slice"), delta("lesion")
    slices = int(after["slices"]) - int(before["slices"])
    # A study without slices adds no Dice entry; the last one would be another study's.
    dice = after["dice"]["per_study"][-1]["dice"] if slices else None
    return {
        "study": study.name,
        "labelled": study.labelled,
        "slices": slices,
        "truth_lesions": lesion["truth"],
        "detected_lesions": lesion["detected"],
        "predicted_lesions": lesion["predicted"],
        "false_positive_lesions": lesion["false_predicted"],
        "truth_components": per_slice["truth"],
        "detected_components": per_slice["detected"],
        "predicted_components": per_slice["predicted"],
        "false_positive_components": per_slice["false_predicted"],
        "dice": dice,
    }
