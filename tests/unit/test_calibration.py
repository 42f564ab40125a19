"""Threshold calibration reads the operating curve from logits, past the uint8 map's steps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from api.inference.contract import BONE_WINDOW
from api.inference.processing import sigmoid
from export.datasets import SliceBank
from export.train_validation import calibrated_threshold, operating_curve

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
    threshold, point = calibrated_threshold(model, bank, (BONE_WINDOW,), 0.66, floor=0.5)
    assert threshold == pytest.approx(float(sigmoid(np.asarray(4.5))))
    assert point["sensitivity"] == pytest.approx(2 / 3) and point["ppv"] == pytest.approx(2 / 3)
    # A PPV only the top component reaches: past 254/255, where the uint8 map cannot go.
    threshold, point = calibrated_threshold(model, bank, (BONE_WINDOW,), 0.9, floor=0.5)
    assert threshold == pytest.approx(float(sigmoid(np.asarray(9.0))))
    assert threshold > 254 / 255 and point["ppv"] == 1.0
    # Unreachable: the best-PPV point.
    threshold, point = calibrated_threshold(model, bank, (BONE_WINDOW,), 1.01, floor=0.5)
    assert math.isclose(point["ppv"], 1.0)
