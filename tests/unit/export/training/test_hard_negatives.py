"""Hard-negative mining: it finds the network's false marks, and crops go where they are."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from api.inference.contract import BONE_WINDOW
from export.training.augment import AugmentConfig
from export.training.bank import SliceBank
from export.training.datasets import BalancedSampler, BatchSpec, training_batch
from export.training.hard_negatives import (
    HardNegatives,
    MiningConfig,
    _false_peaks,
    mine_false_positives,
)

SIZE = 96
NO_AUGMENT = AugmentConfig.none()


class DenseIsLesion(nn.Module):
    """A stand-in network that marks every pixel brighter than ~1000 HU (bone window input)."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        # The bone window maps -500..1300 HU to 0..1, so 1000 HU is 1500/1800.
        return (image - 1500.0 / 1800.0) * 100.0


def _bank() -> SliceBank:
    """Two slices: a true dense lesion on slice 0, a false dense spot on each."""
    hounsfield = np.full((2, SIZE, SIZE), 40, dtype=np.int16)
    labels = np.zeros((2, SIZE, SIZE), dtype=np.uint8)
    hounsfield[0, 20:26, 20:26] = 1200  # a blastic lesion, labelled
    labels[0, 20:26, 20:26] = 1
    hounsfield[0, 70:74, 60:64] = 1150  # normal dense cortex, not labelled
    hounsfield[1, 40:43, 10:13] = 1100
    return SliceBank(hounsfield, labels, ["a:0", "a:1"])


def test_false_peaks_skip_marks_touching_the_reference_and_rank_by_confidence() -> None:
    logit = np.full((SIZE, SIZE), -5.0, dtype=np.float32)
    truth = np.zeros((SIZE, SIZE), dtype=bool)
    truth[10:15, 10:15] = True
    logit[10:16, 10:16] = 3.0  # the true lesion, a little overgrown
    logit[17:19, 17:19] = 2.0  # within the 4 px margin: part of the same finding
    logit[50:53, 50:53] = 1.0
    logit[51, 52] = 2.5  # peak of a weak false mark
    logit[80:82, 30:32] = 5.0
    logit[80, 30] = 6.0  # peak of a confident false mark
    peaks = _false_peaks(logit, truth, margin_px=4, per_slice=8)
    assert peaks[0] == (80, 30)
    assert peaks[1] == (51, 52)
    assert len(peaks) == 2
    assert _false_peaks(logit, truth, margin_px=4, per_slice=1) == [(80, 30)]
    # Without a margin the mark 2 px from the lesion is false too.
    near = [p for p in _false_peaks(logit, truth, margin_px=0, per_slice=8) if p[0] < 20]
    assert len(near) == 1 and 17 <= near[0][0] < 19 and 17 <= near[0][1] < 19


def test_mining_finds_the_unlabelled_dense_spots_only() -> None:
    bank = _bank()
    config = MiningConfig(every=10, slices=5, margin_px=2)
    hard = mine_false_positives(
        DenseIsLesion(), bank, (BONE_WINDOW,), np.random.default_rng(0), config=config, step=7
    )
    assert hard.step == 7 and hard.slices_searched == 2
    found = {(int(i), int(r), int(c)) for i, r, c in hard.points}
    assert len(found) == 2
    (i0, r0, c0), (i1, r1, c1) = sorted(found)
    assert i0 == 0 and 70 <= r0 < 74 and 60 <= c0 < 64
    assert i1 == 1 and 40 <= r1 < 43 and 10 <= c1 < 13


def test_background_crops_centre_on_mined_points() -> None:
    bank = _bank()
    hard = HardNegatives(np.array([[1, 41, 11]], dtype=np.intp), step=0, slices_searched=2)
    sampler = BalancedSampler(bank.positive, positive_fraction=0.0)
    spec = BatchSpec(batch_size=6, crop=32, jitter=0.3, hard_negative_fraction=1.0)
    images, labels = training_batch(
        bank, sampler, np.random.default_rng(1), spec, NO_AUGMENT, (BONE_WINDOW,), hard
    )
    # The dense spot sits within jitter/3 of the centre of every crop.
    dense = images[:, 0] > 1500.0 / 1800.0
    assert dense.any(axis=(1, 2)).all()
    middle = slice(32 // 2 - 6, 32 // 2 + 6)
    assert dense[:, middle, middle].any(axis=(1, 2)).all()
    assert not labels.any()
    # Without mined points (or with a zero share) background crops fall anywhere.
    plain = BatchSpec(batch_size=6, crop=32, jitter=0.3, hard_negative_fraction=0.0)
    images, _ = training_batch(
        bank, sampler, np.random.default_rng(1), plain, NO_AUGMENT, (BONE_WINDOW,), hard
    )
    assert not (images[:, 0, middle, middle] > 1500.0 / 1800.0).any(axis=(1, 2)).all()


def test_mining_schedule() -> None:
    config = MiningConfig(every=100, start=250)
    assert not config.due(0, mined=False)
    assert config.due(250, mined=False)
    assert not config.due(300, mined=True)
    assert config.due(350, mined=True)
    # A resumed run holds nothing yet and mines at once.
    assert config.due(300, mined=False)
    assert not MiningConfig().due(1000, mined=False)
    with pytest.raises(ValueError, match="hard_negative_fraction"):
        BatchSpec(hard_negative_fraction=1.5)
    with pytest.raises(ValueError):
        MiningConfig(slices=0)
