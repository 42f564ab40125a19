"""The model's pre/post-processing against naive reference code, value by value."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from api.inference.contract import BONE_WINDOW, Window
from api.inference.processing import (
    logit_threshold,
    postprocess,
    sigmoid,
    unpack_mask,
    window_channels,
)


def _reference_probability(logits: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Per pixel: floor(255 sigmoid + 0.5), then the max of each 4x4 block, by loops."""
    n, _, h, w = logits.shape
    pixel = np.floor(255.0 / (1.0 + np.exp(-logits[:, 0].astype(np.float64))) + 0.5)
    pooled = np.zeros((n, h // 4, w // 4), dtype=np.uint8)
    for i in range(h // 4):
        for j in range(w // 4):
            pooled[:, i, j] = pixel[:, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4].max(axis=(1, 2))
    return pooled


def _reference_pack(mask: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Most significant bit first, by arithmetic."""
    n, h, w = mask.shape
    packed = np.zeros((n, h, w // 8), dtype=np.uint8)
    for bit in range(8):
        packed |= (mask[:, :, bit::8].astype(np.uint8) << (7 - bit)).astype(np.uint8)
    return packed


def test_bone_window_maps_exact_hu_values() -> None:
    hu = np.array([[[-1024, -500, 400, 1300, 3000, -49, 850]]], dtype=np.int16)
    channels = window_channels(hu, (BONE_WINDOW,))
    assert channels.dtype == np.float32
    assert channels.shape == (1, 1, 1, 7)
    expected = [0.0, 0.0, 0.5, 1.0, 1.0, 451 / 1800, 0.75]
    np.testing.assert_allclose(channels[0, 0, 0], expected, rtol=0, atol=1e-7)


def test_one_channel_per_window_in_order() -> None:
    hu = np.array([[[0, 40, 240]]], dtype=np.int16)
    channels = window_channels(hu, (Window(40, 400), BONE_WINDOW))
    np.testing.assert_allclose(channels[0, 0, 0], [0.4, 0.5, 1.0], atol=1e-7)
    np.testing.assert_allclose(channels[0, 1, 0], [500 / 1800, 540 / 1800, 740 / 1800], atol=1e-7)


def test_window_channels_is_the_float32_formula_over_the_whole_int16_range() -> None:
    hu = np.arange(-32768, 32768, dtype=np.int16).reshape(1, 256, 256)
    windows = (BONE_WINDOW, Window(40, 400), Window(-612.3, 1517.9))
    channels = window_channels(hu, windows)
    for index, window in enumerate(windows):
        low, width = np.float32(window.low), np.float32(window.width)
        reference = np.clip((hu[0].astype(np.float32) - low) / width, 0, 1).astype(np.float32)
        assert channels[0, index].tobytes() == reference.tobytes()


def test_window_channels_rejects_wrong_rank() -> None:
    with pytest.raises(ValueError, match="N, H, W"):
        window_channels(np.zeros((4, 4), dtype=np.int16), (BONE_WINDOW,))


def test_logit_threshold_inverts_sigmoid() -> None:
    assert logit_threshold(0.5) == 0.0
    assert logit_threshold(0.0) == -math.inf
    assert logit_threshold(1.0) == math.inf
    assert sigmoid(np.array([logit_threshold(0.3)]))[0] == pytest.approx(0.3, abs=1e-15)
    with pytest.raises(ValueError):
        logit_threshold(1.5)


def test_sigmoid_is_stable_for_huge_logits() -> None:
    with np.errstate(over="raise"):
        values = sigmoid(np.array([-1e4, -50.0, 0.0, 50.0, 1e4]))
    assert values[0] == 0.0 and values[2] == 0.5 and values[4] == 1.0
    assert 0 < values[1] < 1e-21 and values[3] == 1.0


def test_mask_matches_sigmoid_threshold_away_from_the_boundary() -> None:
    rng = np.random.default_rng(7)
    logits = rng.normal(0.0, 4.0, size=(3, 1, 16, 32)).astype(np.float32)
    for threshold in (0.1, 0.5, 0.73, 0.99):
        packed, _ = postprocess(logits, threshold)
        probability = 1.0 / (1.0 + np.exp(-logits[:, 0].astype(np.float64)))
        expected = probability >= threshold
        assert packed.shape == (3, 16, 4)
        np.testing.assert_array_equal(packed, _reference_pack(expected))
        np.testing.assert_array_equal(unpack_mask(packed, 32), expected)


def test_probability_equal_to_threshold_counts_as_lesion() -> None:
    # sigmoid(0) is exactly 0.5; the float32 neighbours of 0 fall on either side.
    tiny = np.float32(1e-30)
    row = np.array([-tiny, 0.0, tiny, -1.0, 1.0, 0.0, -0.0, -tiny], dtype=np.float32)
    logits = np.tile(row, (4, 1))[None, None]
    packed, _ = postprocess(logits, 0.5)
    expected = [False, True, True, False, True, True, True, False]
    assert unpack_mask(packed, 8)[0, 0].tolist() == expected


def test_threshold_limits() -> None:
    logits = np.array([[-1e30, -3.0, 0.0, 3.0, 1e30, 88.0, -88.0, 0.5]], dtype=np.float32)
    logits = np.tile(logits, (4, 1))[None, None]
    everything, _ = postprocess(logits, 0.0)
    nothing, _ = postprocess(logits, 1.0)
    assert unpack_mask(everything, 8).all()
    assert not unpack_mask(nothing, 8).any()


def test_threshold_boundary_is_decided_in_logit_space() -> None:
    # 0.7 has no float32 logit image; the pixel just below logit(0.7) must stay out
    # and the one just above must come in, whatever sigmoid rounding would say.
    exact = logit_threshold(0.7)
    above = np.float32(exact)
    if float(above) < exact:
        above = np.nextafter(above, np.float32(np.inf))
    below = np.nextafter(above, np.float32(-np.inf))
    assert float(below) < exact <= float(above)
    row = np.array([below, above] * 4, dtype=np.float32)
    packed, _ = postprocess(np.tile(row, (4, 1))[None, None], 0.7)
    assert unpack_mask(packed, 8)[0, 0].tolist() == [False, True] * 4


def test_probability_is_quantised_block_maximum() -> None:
    rng = np.random.default_rng(11)
    logits = rng.normal(0.0, 3.0, size=(2, 1, 32, 16)).astype(np.float32)
    logits[0, 0, 5, 5] = 40.0  # saturates: 255
    logits[1, 0, 9:13, 0:4] = -40.0  # a whole block at ~0: 0
    _, probability = postprocess(logits, 0.5)
    assert probability.dtype == np.uint8 and probability.shape == (2, 8, 4)
    np.testing.assert_array_equal(probability, _reference_probability(logits))
    assert probability[0, 1, 1] == 255


def test_probability_rounds_half_up() -> None:
    # sigmoid(x) * 255 = k + 0.5 exactly is impossible in binary; test both sides of 127.5.
    p_low, p_high = 127.49 / 255, 127.51 / 255
    logits = np.zeros((1, 1, 4, 8), dtype=np.float32)
    logits[..., :4] = np.float32(math.log(p_low / (1 - p_low)))
    logits[..., 4:] = np.float32(math.log(p_high / (1 - p_high)))
    _, probability = postprocess(logits, 0.5)
    assert probability.tolist() == [[[127, 128]]]


def test_nan_logits_are_background() -> None:
    logits = np.full((1, 1, 4, 8), np.nan, dtype=np.float32)
    packed, probability = postprocess(logits, 0.5)
    assert not packed.any() and not probability.any()


def test_postprocess_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="N, 1, H, W"):
        postprocess(np.zeros((1, 2, 8, 8), dtype=np.float32), 0.5)
    with pytest.raises(ValueError, match="multiple"):
        postprocess(np.zeros((1, 1, 8, 12), dtype=np.float32), 0.5)


def test_unpack_inverts_packbits_for_a_full_slice() -> None:
    rng = np.random.default_rng(3)
    mask = rng.random((2, 512, 512)) < 0.3
    packed = np.packbits(mask, axis=-1)
    assert packed.shape == (2, 512, 64)
    restored = unpack_mask(packed, 512)
    assert restored.dtype == np.bool_
    np.testing.assert_array_equal(restored, mask)
    with pytest.raises(ValueError):
        unpack_mask(packed, 520)


def test_unpacking_skips_empty_slices_but_gives_numpys_unpacking() -> None:
    """Slices without a set bit are left as zeros: the result is unpackbits' all the same,
    for batches with none, some and all slices lit, and widths short of the packed rows."""
    rng = np.random.default_rng(7)
    for lit in ([], [1], [0, 2, 3], [0, 1, 2, 3]):
        packed = np.zeros((4, 6, 3), np.uint8)
        packed[lit] = rng.integers(0, 256, (len(lit), 6, 3), dtype=np.uint8)
        for width in (24, 21):
            expected = np.unpackbits(packed, axis=-1, count=width).astype(bool)
            mask = unpack_mask(packed, width)
            assert mask.dtype == np.bool_ and mask.shape == (4, 6, width)
            np.testing.assert_array_equal(mask, expected)
    assert unpack_mask(np.array([0b10100000], np.uint8), 3).tolist() == [True, False, True]
