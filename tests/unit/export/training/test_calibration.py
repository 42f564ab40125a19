"""Threshold calibration reads the operating curve from logits, past the uint8 map's steps;
score calibration makes reported probabilities mean something and changes no mask."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from api.inference.contract import BONE_WINDOW
from api.inference.processing import sigmoid, window_channels
from export.model import ModelConfig, build_model
from export.training import prediction
from export.training.bank import SliceBank
from export.training.calibration import (
    LogitsAboveFloor,
    calibrate,
    operating_curve,
    ppv_lower_bound,
    threshold_from_logits,
)
from export.training.config import TrainConfig
from export.training.loop import finish
from export.training.prediction import predict_masks
from export.training.score_map import fit_score_calibration
from export.training.state import TrainState
from export.training.validation import validate

SIZE = 64


def _logits_and_truth() -> tuple[np.ndarray, np.ndarray]:
    """Two slices: true components peaking at 10, 6 and 1; false ones at 8 and 3."""
    logits = np.full((2, SIZE, SIZE), -5.0, dtype=np.float32)
    truth = np.zeros((2, SIZE, SIZE), dtype=bool)
    for z, (r, c, peak, real) in [
        (0, (5, 5, 10.0, True)),
        (0, (30, 30, 8.0, False)),
        (1, (5, 40, 6.0, True)),
        (1, (40, 5, 3.0, False)),
        (1, (40, 40, 1.0, True)),
    ]:
        logits[z, r : r + 4, c : c + 4] = peak - 0.5
        logits[z, r + 1, c + 1] = peak
        truth[z, r : r + 3, c : c + 3] |= real
    return logits, truth


def test_operating_curve_counts_components_at_every_peak() -> None:
    logits, truth = _logits_and_truth()
    curve = operating_curve(logits, truth, floor_logit=0.0)
    got = [(p["logit"], round(p["sensitivity"], 3), round(p["ppv"], 3)) for p in curve]
    assert got == [
        (9.0, 0.333, 1.0),
        (7.0, 0.333, 0.5),
        (4.5, 0.667, 0.667),
        (2.0, 0.667, 0.5),
        (0.5, 1.0, 0.6),
    ]


class LogitFromHounsfield(nn.Module):
    """A stand-in network whose logit is (HU - 400) / 45 under the bone window."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return (image - 0.5) * 40.0


def test_calibration_picks_the_lowest_threshold_reaching_the_ppv() -> None:
    logits, truth = _logits_and_truth()
    hounsfield = np.rint(400 + 45 * logits).astype(np.int16)  # inverts the stand-in network
    bank = SliceBank(hounsfield, truth.astype(np.uint8), ["c:0", "c:1"])
    model = LogitFromHounsfield()
    threshold, point = calibrate(model, bank, (BONE_WINDOW,), 0.66, 0.5, scores=False)
    assert threshold == pytest.approx(float(sigmoid(np.asarray(4.5))))
    assert point["sensitivity"] == pytest.approx(2 / 3) and point["ppv"] == pytest.approx(2 / 3)
    # A PPV only the top component reaches: past 254/255, where the uint8 map cannot go.
    threshold, point = calibrate(model, bank, (BONE_WINDOW,), 0.9, 0.5, scores=False)
    assert threshold == pytest.approx(float(sigmoid(np.asarray(9.0))))
    assert threshold > 254 / 255 and point["ppv"] == 1.0
    # Unreachable: the best-PPV point.
    threshold, point = calibrate(model, bank, (BONE_WINDOW,), 1.01, 0.5, scores=False)
    assert math.isclose(point["ppv"], 1.0)


def test_the_ppv_lower_bound_is_wilsons_and_tightens_with_more_components() -> None:
    # One-sided 95%: z = 1.645; 85 of 100 true gives 0.782 (Wilson score interval).
    assert ppv_lower_bound(0.85, 100, 0.95) == pytest.approx(0.782, abs=5e-4)
    bounds = [ppv_lower_bound(0.85, n, 0.95) for n in (10, 100, 1000, 100_000)]
    assert bounds == sorted(bounds) and bounds[-1] == pytest.approx(0.85, abs=2e-3)
    assert ppv_lower_bound(1.0, 1, 0.9) < 0.5 and ppv_lower_bound(0.5, 0, 0.9) == 0.0


def test_a_ppv_target_out_of_reach_keeps_the_best_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logits, truth = _logits_and_truth()
    with caplog.at_level("WARNING", logger="export.training.calibration"):
        reached, _ = threshold_from_logits(logits, truth, 0.35, 0.5, confidence=0.9)
    assert not caplog.records
    with caplog.at_level("WARNING", logger="export.training.calibration"):
        threshold, point = threshold_from_logits(logits, truth, 0.99, 0.5, confidence=0.9)
    # No cut reaches a 0.99 bound: the cut with the best bound (the top component, 0.38).
    assert threshold == reached and point["ppv_lower_bound"] == pytest.approx(0.378, abs=1e-3)
    (record,) = caplog.records
    assert "does not meet its PPV target" in record.getMessage()
    assert "(90% lower bound) reaches 0.378" in record.getMessage()


def test_a_confidence_keeps_the_threshold_where_few_components_vouch_for_the_ppv() -> None:
    logits, truth = _logits_and_truth()
    # PPV 0.6 of 5 components clears 0.35; as a 90% lower bound it does not (0.33), and
    # only the top component's bound (1 of 1: 0.38) does.
    threshold, point = threshold_from_logits(logits, truth, 0.35, 0.5)
    assert threshold == pytest.approx(float(sigmoid(np.asarray(0.5))))
    assert point["ppv"] == pytest.approx(0.6) and "ppv_lower_bound" not in point
    threshold, point = threshold_from_logits(logits, truth, 0.35, 0.5, confidence=0.9)
    assert threshold == pytest.approx(float(sigmoid(np.asarray(9.0))))
    assert point["ppv"] == 1.0 and point["ppv_lower_bound"] == pytest.approx(0.378, abs=1e-3)
    with pytest.raises(ValueError, match="calibrate_confidence needs calibrate_min_ppv"):
        TrainConfig(calibrate_confidence=0.95)
    with pytest.raises(ValueError, match=r"calibrate_confidence must be in \[0.5, 1\)"):
        TrainConfig(calibrate_min_ppv=0.85, calibrate_confidence=1.0)
    # A floor above the search's highest cut (logit 12) would leave cuts below the floor.
    for floor in (0.0, 0.999995, 1.0):  # sigmoid(12) = 0.9999939
        with pytest.raises(ValueError, match="calibration_floor must be in"):
            TrainConfig(calibrate_min_ppv=0.85, calibration_floor=floor)
    assert TrainConfig(calibrate_min_ppv=0.85, calibration_floor=0.9999).calibration_floor


def test_score_calibration_recovers_a_known_logistic_and_never_sharpens() -> None:
    rng = np.random.default_rng(0)
    peaks = rng.uniform(-5.0, 30.0, 20_000)
    true = rng.random(peaks.size) < sigmoid(0.3 * peaks - 4.0)
    fit = fit_score_calibration(peaks, true)
    assert fit is not None
    assert fit.scale == pytest.approx(0.3, abs=0.02)
    assert fit.shift == pytest.approx(-4.0, abs=0.3)
    # Separable components would want an infinite slope; calibration only softens.
    separable = fit_score_calibration(
        np.array([-2.0, -1.0, 3.0, 4.0]), np.array([False, False, True, True])
    )
    assert separable is not None and separable.scale == pytest.approx(1.0)
    assert fit_score_calibration(peaks, np.ones(peaks.size, dtype=bool)) is None
    assert fit_score_calibration(np.array([]), np.array([], dtype=bool)) is None


def test_folding_the_calibration_into_the_network_is_affine_and_increasing() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(depth=18, width=0.125)).eval()
    image = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        before = model(image)
        model.fold_logit_affine(0.25, -3.0)
        after = model(image)
    torch.testing.assert_close(after, 0.25 * before - 3.0, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="scale must be > 0"):
        model.fold_logit_affine(0.0, 1.0)


class FoldableLogitFromHounsfield(LogitFromHounsfield):
    """The stand-in network with a foldable last layer, as DeepLabV3Plus has."""

    def __init__(self) -> None:
        super().__init__()
        self.scale, self.shift = 1.0, 0.0

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.scale * super().forward(image) + self.shift

    def fold_logit_affine(self, scale: float, shift: float) -> None:
        self.scale, self.shift = scale * self.scale, scale * self.shift + shift


def test_calibrate_folds_the_scores_and_keeps_every_mask() -> None:
    logits, truth = _logits_and_truth()
    hounsfield = np.rint(400 + 45 * logits).astype(np.int16)
    bank = SliceBank(hounsfield, truth.astype(np.uint8), ["c:0", "c:1"])
    raw = LogitFromHounsfield()
    raw_threshold, _ = calibrate(raw, bank, (BONE_WINDOW,), 0.66, 0.5, scores=False)
    model = FoldableLogitFromHounsfield()
    threshold, record = calibrate(model, bank, (BONE_WINDOW,), 0.66, 0.5, scores=True)
    assert record["raw_threshold"] == pytest.approx(raw_threshold)
    assert 0 < model.scale <= 1.0 and model.scale == record["score_scale"]
    assert threshold == pytest.approx(
        float(
            sigmoid(
                np.asarray(
                    model.scale * math.log(raw_threshold / (1 - raw_threshold)) + model.shift
                )
            )
        )
    )
    # The folded network at the served threshold marks exactly what the raw one did.
    folded = predict_masks(model, hounsfield, (BONE_WINDOW,), threshold)
    unfolded = predict_masks(raw, hounsfield, (BONE_WINDOW,), raw_threshold)
    assert folded.any() and np.array_equal(folded, unfolded)
    # The scores it reports now differ between components (not all the last uint8 step).
    with torch.no_grad():
        calibrated = torch.sigmoid(
            model(torch.from_numpy(window_channels(hounsfield, (BONE_WINDOW,))))
        ).numpy()
    peaks = [calibrated[z, 0, r + 1, c + 1] for z, r, c in [(0, 5, 5), (1, 5, 40)]]
    assert peaks[0] > peaks[1] and peaks[0] < 254 / 255
    # Without score calibration the network is left as it was.
    untouched = FoldableLogitFromHounsfield()
    same, plain = calibrate(untouched, bank, (BONE_WINDOW,), 0.66, 0.5, scores=False)
    assert same == pytest.approx(raw_threshold) and untouched.scale == 1.0
    assert "score_scale" not in plain


def test_finish_serves_the_folded_network_at_the_mapped_threshold() -> None:
    logits, truth = _logits_and_truth()
    hounsfield = np.rint(400 + 45 * logits).astype(np.int16)
    bank = SliceBank(hounsfield, truth.astype(np.uint8), ["c:0", "c:1"])
    model = FoldableLogitFromHounsfield()
    state = TrainState(model, torch.optim.AdamW([nn.Parameter(torch.zeros(1))]), step=1)
    config = TrainConfig(calibrate_min_ppv=0.66, calibration_floor=0.5, calibrate_scores=True)
    finish(state, config, bank)
    record = state.calibration
    assert record is not None and state.threshold == record["threshold"]
    assert record["raw_threshold"] == pytest.approx(float(sigmoid(np.asarray(4.5))))
    assert record["score_scale"] == model.scale < 1.0
    # Validated after the fold, at the served threshold: the point calibration chose.
    last = state.validation[-1]
    assert last["sensitivity"] == pytest.approx(2 / 3) and last["ppv"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="calibrate_scores needs calibrate_min_ppv"):
        TrainConfig(calibrate_scores=True)


def _blobs(slices: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random logits, far below 0 but for blobs; most blobs are over a reference
    disc and peak higher than the false ones, some discs get no blob."""
    rng = np.random.default_rng(seed)
    logits = np.full((slices, SIZE, SIZE), -8.0, dtype=np.float32)
    truth = np.zeros((slices, SIZE, SIZE), dtype=bool)
    rows, cols = np.mgrid[:SIZE, :SIZE]
    for z in range(slices):
        for _ in range(int(rng.integers(0, 4))):
            r, c = rng.integers(6, SIZE - 6, 2)
            disc = (rows - r) ** 2 + (cols - c) ** 2
            real = rng.random() < 0.6
            truth[z] |= real & (disc <= 4)
            if rng.random() < 0.8:
                peak = rng.uniform(-3.0, 9.0) + 3.0 * real
                blob = peak - disc / rng.uniform(2.0, 5.0) ** 2
                logits[z] = np.maximum(logits[z], blob)
    return logits, truth


def test_logits_above_the_floor_read_back_every_pixel_that_counts() -> None:
    logits, _ = _blobs(6, seed=1)
    logits[2] = 5.0  # a slice marked everywhere is kept whole
    kept = LogitsAboveFloor((SIZE, SIZE), floor_logit=-1.0)
    kept.add(logits[:4])
    kept.add(logits[4:])
    back = np.stack(list(kept))
    assert len(kept) == 6 and back.dtype == np.float32
    above = logits > -1.0
    assert np.array_equal(back[above], logits[above])
    assert np.all(back[~above & (np.arange(6) != 2)[:, None, None]] == -np.inf)
    assert np.array_equal(np.stack(list(kept)), back)  # iterable again, unchanged


def test_the_operating_curve_from_kept_pixels_is_the_full_one() -> None:
    logits, truth = _blobs(40, seed=2)
    floor_logit = -1.0
    kept = LogitsAboveFloor((SIZE, SIZE), floor_logit)
    kept.add(logits)
    full = operating_curve(logits, truth, floor_logit)
    assert len(full) > 5
    assert operating_curve(kept, truth.astype(np.uint8), floor_logit) == full


def test_streamed_validation_and_calibration_do_not_depend_on_the_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logits, truth = _blobs(11, seed=3)
    hounsfield = np.rint(400 + 45 * np.clip(logits, -8.0, 25.0)).astype(np.int16)
    bank = SliceBank(hounsfield, truth.astype(np.uint8), [f"b:{z}" for z in range(11)])
    model = LogitFromHounsfield()
    results = []
    for chunk in (64, 3):  # one chunk; chunks that split the bank unevenly
        monkeypatch.setattr(prediction, "STREAM_SLICES", chunk)
        threshold, point = calibrate(model, bank, (BONE_WINDOW,), 0.7, 0.3, scores=False)
        results.append((threshold, point, validate(model, bank, (BONE_WINDOW,), threshold)))
    assert results[0] == results[1]
    _, point, scores = results[0]
    assert 0 < point["sensitivity"] < 1 and point["ppv"] >= 0.7
    assert 0 < scores["sensitivity"] < 1 and 0 < scores["dice"] < 1
    assert scores["false_components"] > 0
