"""Evaluation metrics on hand-built masks whose answers are counted by hand."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import ndimage

from api.lesions.components import Connectivity
from export.evaluation.metrics import MatchRule, SliceMetricsAccumulator
from export.evaluation.report import format_markdown_table

H = W = 16


def _empty(slices: int | None = None) -> NDArray[np.bool_]:
    shape = (H, W) if slices is None else (slices, H, W)
    return np.zeros(shape, dtype=np.bool_)


def _probability(value: int = 200) -> NDArray[np.uint8]:
    return np.full((H // 4, W // 4), value, dtype=np.uint8)


def _one_study(
    predicted: NDArray[np.bool_], truth: NDArray[np.bool_], rule: MatchRule | None = None
) -> dict[str, Any]:
    accumulator = SliceMetricsAccumulator(rule)
    for p, t in zip(predicted, truth, strict=True):
        accumulator.update(p, _probability(), t)
    return accumulator.result()


def test_two_truths_three_predictions_one_overlapping() -> None:
    truth, predicted = _empty(), _empty()
    truth[0:3, 0:3] = truth[10:13, 10:13] = True
    predicted[2:4, 2:4] = True  # shares pixel (2, 2) with the first truth
    predicted[0:2, 8:10] = predicted[14:16, 0:2] = True  # two false positives
    result = _one_study(predicted[np.newaxis], truth[np.newaxis])
    for level in ("per_slice", "lesion"):
        counts = result[level]
        assert (counts["truth"], counts["detected"]) == (2, 1)
        assert (counts["predicted"], counts["true_predicted"], counts["false_predicted"]) == (
            3,
            1,
            2,
        )
        assert counts["sensitivity"] == 0.5
        assert counts["ppv"] == pytest.approx(1 / 3)
        assert counts["false_positives_per_scan"] == 2.0


def test_nothing_anywhere_is_undefined_not_perfect() -> None:
    result = _one_study(_empty(3), _empty(3))
    for level in ("per_slice", "lesion"):
        assert result[level]["sensitivity"] is None
        assert result[level]["ppv"] is None
        assert result[level]["false_positives_per_scan"] == 0.0
        assert result[level]["curve"] == []
    assert result["dice"]["pooled"] is None and result["dice"]["mean_per_study"] is None
    assert result["dice"]["per_study"] == [{"study": "1", "dice": None}]
    assert result["studies"] == 1 and result["slices"] == 3


def test_no_studies_at_all() -> None:
    result = SliceMetricsAccumulator().result()
    assert result["studies"] == 0
    assert result["lesion"]["false_positives_per_scan"] is None


@pytest.mark.parametrize(
    ("rule", "matched"),
    [
        (MatchRule.overlap(), True),
        (MatchRule.overlap(8), True),
        (MatchRule.overlap(9), False),
        (MatchRule.iou(0.5), True),
        (MatchRule.iou(0.6), False),
        (MatchRule.iou(0.0), True),
    ],
)
def test_match_rules(rule: MatchRule, matched: bool) -> None:
    truth, predicted = _empty(), _empty()
    truth[4:8, 4:8] = True  # 16 pixels
    predicted[4:8, 4:6] = True  # 8 inside: IoU 0.5
    result = _one_study(predicted[np.newaxis], truth[np.newaxis], rule)
    assert result["per_slice"]["sensitivity"] == (1.0 if matched else 0.0)
    assert result["per_slice"]["ppv"] == (1.0 if matched else 0.0)


def test_iou_zero_still_needs_a_shared_pixel() -> None:
    truth, predicted = _empty(), _empty()
    truth[0:2, 0:2] = True
    predicted[8:10, 8:10] = True
    result = _one_study(predicted[np.newaxis], truth[np.newaxis], MatchRule.iou(0.0))
    assert result["per_slice"]["sensitivity"] == 0.0


def test_bad_rules_are_refused() -> None:
    with pytest.raises(ValueError):
        MatchRule.overlap(0)
    with pytest.raises(ValueError):
        MatchRule.iou(1.5)
    assert str(MatchRule()) == "overlap >= 1 px" and str(MatchRule.iou(0.1)) == "IoU >= 0.1"


def test_per_slice_counts_slices_lesion_wise_counts_lesions() -> None:
    truth, predicted = _empty(4), _empty(4)
    truth[0:3, 4:8, 4:8] = True  # one lesion on slices 0..2
    predicted[1, 5:7, 5:7] = True  # found on its middle slice only
    predicted[3, 0:2, 0:2] = True  # a false positive on slice 3
    result = _one_study(predicted, truth)
    per_slice, lesion = result["per_slice"], result["lesion"]
    assert (per_slice["truth"], per_slice["detected"], per_slice["predicted"]) == (3, 1, 2)
    assert per_slice["sensitivity"] == pytest.approx(1 / 3) and per_slice["ppv"] == 0.5
    assert (lesion["truth"], lesion["detected"], lesion["predicted"]) == (1, 1, 2)
    assert lesion["sensitivity"] == 1.0 and lesion["ppv"] == 0.5


def test_lesion_iou_uses_voxels_over_the_volume() -> None:
    truth, predicted = _empty(3), _empty(3)
    truth[0:2, 4:8, 4:8] = True  # 32 voxels
    predicted[0, 4:8, 4:8] = True  # 16 shared: IoU 0.5 lesion-wise, 1.0 and 0 per slice
    result = _one_study(predicted, truth, MatchRule.iou(0.5))
    assert result["lesion"]["sensitivity"] == 1.0
    assert result["per_slice"]["sensitivity"] == 0.5
    result = _one_study(predicted, truth, MatchRule.iou(0.51))
    assert result["lesion"]["sensitivity"] == 0.0


def test_studies_are_not_linked_and_false_positives_average_over_scans() -> None:
    accumulator = SliceMetricsAccumulator()
    blob = _empty()
    blob[2:4, 2:4] = True
    for name in ("a", "b"):
        accumulator.update(blob, _probability(), _empty())
        accumulator.end_study(name)
    accumulator.update(_empty(), _probability(), _empty())
    result = accumulator.result()
    assert result["studies"] == 3
    assert result["lesion"]["predicted"] == 2
    assert result["lesion"]["false_positives_per_scan"] == pytest.approx(2 / 3)
    assert [s["study"] for s in result["dice"]["per_study"]] == ["a", "b", "3"]


def test_dice_per_study_mean_and_pooled() -> None:
    accumulator = SliceMetricsAccumulator()
    truth, predicted = _empty(), _empty()
    truth[4:8, 4:8] = True
    predicted[4:8, 4:6] = True
    accumulator.update(predicted, _probability(), truth)  # 2 x 8 / (16 + 8)
    accumulator.end_study()
    accumulator.update(truth, _probability(), _empty())  # prediction only: 0
    accumulator.end_study()
    accumulator.update(_empty(), _probability(), _empty())  # nothing: undefined
    dice = accumulator.result()["dice"]
    assert [s["dice"] for s in dice["per_study"]] == [pytest.approx(2 / 3), 0.0, None]
    assert dice["mean_per_study"] == pytest.approx(1 / 3)
    assert dice["pooled"] == pytest.approx(16 / (16 + 8 + 16))


def test_curve_points_from_component_scores() -> None:
    truth, predicted = _empty(), _empty()
    probability = np.zeros((4, 4), dtype=np.uint8)
    truth[0:2, 0:2] = predicted[0:2, 0:2] = True  # block (0, 0)
    truth[8:10, 8:10] = predicted[8:10, 8:10] = True  # block (2, 2)
    predicted[12:14, 0:2] = True  # false positive, block (3, 0)
    probability[0, 0], probability[2, 2], probability[3, 0] = 200, 150, 250
    accumulator = SliceMetricsAccumulator()
    accumulator.update(predicted, probability, truth)
    curve = accumulator.result()["per_slice"]["curve"]
    assert curve == [
        {"threshold": 250 / 255, "sensitivity": 0.0, "ppv": 0.0, "false_positives_per_scan": 1.0},
        {"threshold": 200 / 255, "sensitivity": 0.5, "ppv": 0.5, "false_positives_per_scan": 1.0},
        {
            "threshold": 150 / 255,
            "sensitivity": 1.0,
            "ppv": pytest.approx(2 / 3),
            "false_positives_per_scan": 1.0,
        },
    ]


def test_lesion_score_is_the_largest_over_its_slices() -> None:
    truth, predicted = _empty(2), _empty(2)
    truth[:, 4:8, 4:8] = predicted[:, 4:8, 4:8] = True
    accumulator = SliceMetricsAccumulator()
    accumulator.update(predicted[0], _probability(130), truth[0])
    accumulator.update(predicted[1], _probability(240), truth[1])
    curve = accumulator.result()["lesion"]["curve"]
    assert [point["threshold"] for point in curve] == [240 / 255]
    assert curve[0]["sensitivity"] == 1.0


def test_min_pixels_drops_small_predictions() -> None:
    truth, predicted = _empty(), _empty()
    predicted[0, 0] = True
    predicted[5:8, 5:8] = truth[5:8, 5:8] = True
    accumulator = SliceMetricsAccumulator(min_pixels=2)
    accumulator.update(predicted, _probability(), truth)
    result = accumulator.result()
    assert result["per_slice"]["predicted"] == 1 and result["per_slice"]["ppv"] == 1.0
    assert result["dice"]["pooled"] == 1.0


@pytest.mark.parametrize("connectivity", [4, 8])
def test_lesions_equal_scipy_labelling_and_batches_equal_slices(connectivity: int) -> None:
    rng = np.random.default_rng(5)
    truth = rng.random((10, H, W)) < 0.3
    predicted = ndimage.binary_dilation(truth, np.ones((1, 1, 2))) & (rng.random(truth.shape) < 0.8)
    structure = np.zeros((3, 3, 3), dtype=np.bool_)
    structure[1] = True if connectivity == 8 else ndimage.generate_binary_structure(2, 1)
    structure[0, 1, 1] = structure[2, 1, 1] = True
    _, truth_count = ndimage.label(truth, structure=structure)
    _, predicted_count = ndimage.label(predicted, structure=structure)
    conn: Connectivity = 8 if connectivity == 8 else 4
    batched = SliceMetricsAccumulator(connectivity=conn)
    batched.update(predicted, np.full((10, H // 4, W // 4), 200, np.uint8), truth)
    sliced = SliceMetricsAccumulator(connectivity=conn)
    for p, t in zip(predicted, truth, strict=True):
        sliced.update(p, _probability(), t)
    result = batched.result()
    assert result == sliced.result()
    assert result["lesion"]["truth"] == truth_count
    assert result["lesion"]["predicted"] == predicted_count
    shared = int((truth & predicted).sum())
    assert result["dice"]["pooled"] == pytest.approx(
        2 * shared / (int(truth.sum()) + int(predicted.sum()))
    )


def test_markdown_table() -> None:
    truth, predicted = _empty(), _empty()
    truth[0:3, 0:3] = truth[10:13, 10:13] = True
    predicted[0:3, 0:3] = True
    table = format_markdown_table(
        {
            "model": _one_study(predicted[np.newaxis], truth[np.newaxis]),
            "empty": _one_study(_empty(1), _empty(1)),
        }
    )
    assert table.splitlines() == [
        "| run | studies | slice sensitivity | slice PPV | lesion sensitivity | lesion PPV"
        " | FP / scan | Dice (pooled) | Dice (mean) |",
        "|---|---|---|---|---|---|---|---|---|",
        "| model | 1 | 0.500 (1/2) | 1.000 (1/1) | 0.500 (1/2) | 1.000 (1/1) | 0.000"
        " | 0.667 | 0.667 |",
        "| empty | 1 | n/a | n/a | n/a | n/a | 0.000 | n/a | n/a |",
    ]
