"""The evaluation's gallery: which reference components were missed, which findings were false."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from api.inference.contract import BONE_WINDOW
from api.lesions.render import OUTLINE_RGB
from export.evaluation.gallery import FALSE_POSITIVES_PNG, MISSES_PNG, Gallery
from export.evaluation.metrics import SliceMetricsAccumulator
from export.evaluation.report import write_report
from export.evaluation.run import evaluate
from export.evaluation.tiles import REFERENCE_RGB, crop_box, fit_text
from tests.unit.export.evaluation.test_evaluate import (
    FakeModel,
    empty,
    oracle,
    synthetic_studies,
    with_false_blob,
)


def _largest_slice_of_each_lesion() -> list[tuple[str, int, int]]:
    """(study, slice index, pixels) of each reference lesion's largest (first of equal) slice.

    The synthetic studies' lesions: a disc over slices 0-2 and a small one on the last slice.
    """
    found = []
    for study in synthetic_studies():
        batch = study.read(0, study.slice_count)
        sizes = [int(truth.sum()) for truth in batch.truth]
        first = max(range(3), key=lambda k: (sizes[k], -k))
        found += [(study.name, first, sizes[first]), (study.name, study.slice_count - 1,
                                                       sizes[-1])]
    return [f for f in found if f[2] > 0]


def test_a_blind_model_misses_each_lesion_once_largest_first() -> None:
    studies = synthetic_studies()
    gallery = Gallery(limit=24)
    evaluate(FakeModel.from_studies(studies, empty), studies, gallery=gallery)
    expected = _largest_slice_of_each_lesion()
    assert len(expected) == 4  # two lesions in each labelled study; 8 slices with a miss
    kept = [(f.study, f.slice_index, f.pixels) for f in gallery.misses]
    assert sorted(kept) == sorted(expected)
    assert [f.pixels for f in gallery.misses] == sorted((p for *_, p in expected), reverse=True)
    assert all(f.score == 0 for f in gallery.misses)  # nothing raised under any of them
    assert gallery.false_positives == []


def test_the_limit_keeps_the_largest() -> None:
    studies = synthetic_studies()
    everything, two = Gallery(limit=24), Gallery(limit=2)
    for gallery in (everything, two):
        evaluate(FakeModel.from_studies(studies, empty), studies, gallery=gallery)
    assert [(f.study, f.pixels) for f in two.misses] == [
        (f.study, f.pixels) for f in everything.misses[:2]
    ]
    assert two.misses[0].pixels > everything.misses[-1].pixels


def _slice(
    truth_boxes: list[tuple[slice, slice]],
    predicted: list[tuple[tuple[slice, slice], int]],
    shape: tuple[int, int] = (128, 128),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Truth and predicted masks and a full-resolution probability map (stride 1)."""
    truth = np.zeros(shape, dtype=bool)
    for box in truth_boxes:
        truth[box] = True
    mask = np.zeros(shape, dtype=bool)
    probability = np.zeros(shape, dtype=np.uint8)
    for box, score in predicted:
        mask[box] = True
        probability[box] = score
    return mask, probability, truth


def test_runs_keep_their_best_slice_and_false_findings_rank_by_score() -> None:
    counter, gallery = SliceMetricsAccumulator(), Gallery(limit=5)
    hounsfield = np.zeros((128, 128), dtype=np.int16)
    # A missed lesion over slices 0-2, largest on slice 1; the model came near it (p 0.4
    # under it, below its threshold). A small, very confident false finding on slices 0-1,
    # largest on slice 0; a big, less confident one on slice 2 only.
    lesion = [(slice(10, 14), slice(10, 14)), (slice(9, 16), slice(9, 16)),
              (slice(11, 13), slice(11, 13))]
    small, big = (slice(60, 63), slice(60, 63)), (slice(90, 110), slice(90, 110))
    answers = [
        [((slice(12, 13), slice(40, 41)), 0), (small, 250)],
        [(small, 240)],
        [(big, 180)],
    ]
    for index in range(3):
        mask, probability, truth = _slice([lesion[index]], answers[index])
        probability[lesion[index]] = 102  # under the reference, but no mask there
        components = counter.update_slice(mask, probability, truth)
        gallery.add("study", index, hounsfield, components)
    (miss,) = gallery.misses
    assert (miss.slice_index, miss.pixels, miss.score) == (1, 49, 102)
    ranked = [(f.slice_index, f.pixels, f.score) for f in gallery.false_positives]
    # By score, not by size; the small finding once, by its more confident slice; the
    # one-pixel finding at p 0 last.
    assert ranked == [(0, 9, 250), (2, 400, 180), (0, 1, 0)]


def test_a_new_study_starts_new_runs() -> None:
    counter, gallery = SliceMetricsAccumulator(), Gallery()
    hounsfield = np.zeros((128, 128), dtype=np.int16)
    for study in ("a", "b"):
        for index in range(2):  # the same missed component on slices 0 and 1 of each study
            mask, probability, truth = _slice([(slice(10, 20), slice(10, 20))], [])
            gallery.add(study, index, hounsfield, counter.update_slice(mask, probability, truth))
    assert [(f.study, f.slice_index) for f in gallery.misses] == [("a", 0), ("b", 0)]


def test_a_component_wider_than_the_crop_gets_no_edge_at_the_crop_border() -> None:
    counter, gallery = SliceMetricsAccumulator(), Gallery(crop=32)
    mask, probability, truth = _slice([(slice(0, 128), slice(20, 100))], [])
    gallery.add("wide", 0, np.zeros((128, 128), np.int16),
                counter.update_slice(mask, probability, truth))
    (miss,) = gallery.misses
    green = (miss.rgb == np.asarray(REFERENCE_RGB, np.uint8)).all(axis=2)
    # The crop (rows 48-79, columns 44-75) lies wholly inside the component: no outline.
    assert miss.rgb.shape == (64, 64, 3) and not green.any()


def test_a_perfect_model_has_nothing_to_show(tmp_path: Path) -> None:
    studies = synthetic_studies()
    gallery = Gallery()
    evaluate(FakeModel.from_studies(studies, oracle), studies, gallery=gallery)
    assert gallery.misses == [] and gallery.false_positives == []
    paths = gallery.write(tmp_path)
    assert [p.name for p in paths] == [MISSES_PNG, FALSE_POSITIVES_PNG]
    for path in paths:  # a short picture that says so, not a missing file
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == (640, 54)


def test_a_false_finding_on_every_slice_is_one_tile_per_study_outlined_red() -> None:
    studies = synthetic_studies()
    gallery = Gallery(limit=24)
    evaluate(FakeModel.from_studies(studies, with_false_blob), studies, gallery=gallery)
    assert gallery.misses == []
    false = gallery.false_positives
    assert sorted(f.study for f in false) == ["negative", "s0", "s1"]  # one run each
    assert all(f.score == 230 for f in false)
    first = next(f for f in false if f.study == "s0")
    assert (first.slice_index, first.pixels) == (0, 64)  # the 8 x 8 blob at 100-107
    # Crop of 96 centred on the blob's box (row and column 103): the blob at 45-52, drawn
    # 2x: its outline is red at rows and columns 90 and 105, its inside stays grey.
    rgb = first.rgb
    assert rgb.shape == (192, 192, 3)
    assert tuple(rgb[90, 97]) == OUTLINE_RGB and tuple(rgb[105, 97]) == OUTLINE_RGB
    assert tuple(rgb[97, 90]) == OUTLINE_RGB and tuple(rgb[97, 105]) == OUTLINE_RGB
    inside = rgb[92:104, 92:104]
    assert (inside[..., 0] == inside[..., 1]).all() and (inside[..., 1] == inside[..., 2]).all()
    assert not (rgb == np.asarray(REFERENCE_RGB, np.uint8)).all(axis=2).any()  # no lesion near


def test_a_miss_at_the_edge_of_a_small_slice_is_padded_and_outlined_green() -> None:
    truth = np.zeros((40, 40), dtype=bool)
    truth[0:6, 30:40] = True  # a corner component: the crop reaches past two edges
    hounsfield = np.full((40, 40), 1000, dtype=np.int16)
    counter = SliceMetricsAccumulator()
    components = counter.update_slice(
        np.zeros_like(truth), np.zeros((10, 10), dtype=np.uint8), truth
    )
    assert list(components.missed) == [1] and list(components.false) == []
    assert crop_box(truth, 96) == (2 - 48, 34 - 48)
    gallery = Gallery(limit=2, window=BONE_WINDOW)
    gallery.add("edge", 7, hounsfield, components)
    (miss,) = gallery.misses
    assert (miss.study, miss.slice_index, miss.pixels, miss.score) == ("edge", 7, 60, 0)
    rgb = miss.rgb
    # The slice sits at crop rows 46-85 and columns 14-53 (zoomed: 92-171, 28-107); outside
    # it, padding at the window's low end is black.
    assert (rgb[:92] == 0).all() and (rgb[:, 108:] == 0).all()
    grey = int(np.floor((1000 - BONE_WINDOW.low) / BONE_WINDOW.width * 255 + 0.5))
    assert tuple(rgb[150, 40]) == (grey, grey, grey)
    assert tuple(rgb[92, 98]) == REFERENCE_RGB  # its top edge: slice row 0, column 35


def test_the_report_writes_the_gallery(tmp_path: Path) -> None:
    studies = synthetic_studies()
    gallery = Gallery(limit=4)
    evaluation = evaluate(FakeModel.from_studies(studies, with_false_blob), studies,
                          gallery=gallery)
    paths = write_report(evaluation, tmp_path, gallery=gallery)
    assert [p.name for p in paths][-2:] == [MISSES_PNG, FALSE_POSITIVES_PNG]
    with Image.open(tmp_path / FALSE_POSITIVES_PNG) as image:
        # Three tiles (one per study) in one row, red outlines drawn.
        assert image.size == (640, 46 + 230)  # title and legend, then 192 px tiles + captions
        pixels = np.asarray(image.convert("RGB"))
        assert (pixels == np.asarray(OUTLINE_RGB, np.uint8)).all(axis=2).sum() > 100


@pytest.mark.parametrize("limit, crop", [(0, 96), (3, 4)])
def test_bad_gallery_settings_are_refused(limit: int, crop: int) -> None:
    with pytest.raises(ValueError):
        Gallery(limit=limit, crop=crop)


def test_long_captions_are_shortened_in_the_middle_to_fit_a_tile() -> None:
    name = "S02_ge_hispeed_head_tilt_variable_spacing #17"
    assert fit_text(name, 1000, len) == name
    short = fit_text(name, 24, len)
    assert len(short) == 24 and short.startswith("S02_ge_hisp") and short.endswith("ing #17")
    assert "\u2026" in short
    assert fit_text(name, 0.5, len) == "\u2026"
