"""The modality LUT's shortcuts give the very HU of the plain formula, to the bit.

:func:`api.dicom.pixels.apply_rescale` adds an integer intercept straight into int16 when
the stored range shows no sum can leave int16, and :func:`check_plausible` stops at a
min/max when nothing lies beyond the plausible range. Both are checked here against the
formulas as first written (widen, add, clip, narrow; index every outlier), on hostile
inputs: full-range stored values, intercepts that overflow, padding, every stored dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from api.dicom.geometry import AIR_HU
from api.dicom.hounsfield import (
    IMPLAUSIBLE_SHARE,
    INT16_MAX,
    INT16_MIN,
    PLAUSIBLE_HU,
    Rescale,
    apply_rescale,
    check_plausible,
)
from api.errors import CorruptPixelData


def reference_rescale(stored: NDArray[Any], rescale: Rescale) -> NDArray[np.int16]:
    """The modality LUT as the plain formula: float64 where needed, clip, narrow."""
    if rescale.slope == 1.0 and float(rescale.intercept).is_integer():
        values: NDArray[Any] = stored.astype(np.int64) + int(rescale.intercept)
    else:
        values = np.rint(stored.astype(np.float64) * rescale.slope + rescale.intercept)
    hounsfield = np.clip(values, INT16_MIN, INT16_MAX).astype(np.int16)
    if rescale.padding is not None:
        low, high = rescale.padding
        hounsfield[(stored >= low) & (stored <= high)] = AIR_HU
    return hounsfield


def reference_plausible(hounsfield: NDArray[np.int16]) -> str | None:
    """check_plausible's verdict as first written: its message, or None."""
    low, high = PLAUSIBLE_HU
    outliers = hounsfield[(hounsfield < low) | (hounsfield > high)]
    if outliers.size <= IMPLAUSIBLE_SHARE * hounsfield.size:
        return None
    _, counts = np.unique(outliers, return_counts=True)
    share = (outliers.size - int(counts.max())) / hounsfield.size
    if share > IMPLAUSIBLE_SHARE:
        return f"{share:.0%}"
    return None


def _stored(dtype: str, seed: int) -> NDArray[Any]:
    info = np.iinfo(dtype)
    rng = np.random.default_rng(seed)
    values = rng.integers(info.min, info.max, size=(24, 24), endpoint=True, dtype=np.int64)
    values[0, :4] = (info.min, info.max, 0, info.min + 1)
    return values.astype(dtype)


def _narrow(dtype: str, low: int, high: int, seed: int) -> NDArray[Any]:
    rng = np.random.default_rng(seed)
    return rng.integers(low, high, size=(24, 24), endpoint=True).astype(dtype)


STORED = [
    *(_stored(dtype, seed) for seed, dtype in enumerate(("int16", "uint16", "int8", "uint8",
                                                          "int32", "uint32"))),
    _narrow("int16", -1024, 3071, 7),  # a CT's usual range: the fast path
    _narrow("uint16", 0, 4095, 8),  # 12-bit unsigned
    _narrow("uint16", 30000, 65535, 9),  # fits only with a large negative intercept
    _narrow("int32", -2048, 2047, 10),  # what read_native gives for BitsStored < 16
    np.full((4, 4), -32768, np.int16),
    np.full((4, 4), 32767, np.int16),
]
RESCALES = [
    Rescale(1.0, -1024.0), Rescale(1.0, 0.0), Rescale(1.0, 1024.0), Rescale(1.0, -32768.0),
    Rescale(1.0, 40000.0), Rescale(1.0, -40000.0), Rescale(1.0, -65535.0),
    Rescale(1.0, -1024.0, padding=(-2000, -2000)), Rescale(1.0, -1024.0, padding=(0, 100)),
    Rescale(1.0, -1024.0, padding=(-32768, -30000)),
    Rescale(2.0, -1024.0), Rescale(0.5, -1024.5), Rescale(1.0, 0.5), Rescale(-1.0, 3.0),
]


@pytest.mark.parametrize("rescale", RESCALES, ids=repr)
@pytest.mark.parametrize("index", range(len(STORED)))
def test_rescaled_hu_equal_the_plain_formula(index: int, rescale: Rescale) -> None:
    stored = STORED[index]
    expected = reference_rescale(stored, rescale)
    assert apply_rescale(stored, rescale).tobytes() == expected.tobytes()
    out = np.full(stored.shape, 12345, np.int16)
    assert apply_rescale(stored, rescale, out) is out
    assert out.tobytes() == expected.tobytes()


def _hu(values: list[int], fill: int, size: int = 400) -> NDArray[np.int16]:
    hounsfield = np.full(size, fill, np.int16)
    hounsfield[:len(values)] = values
    return hounsfield.reshape(20, 20)


PLAUSIBILITY_CASES = [
    _hu([], 40),  # all plausible
    _hu([-4096, 4096], 0),  # the bounds themselves are plausible
    _hu([5000] * 40, 0),  # exactly 10 %: allowed
    _hu([5000] * 41, 0),  # just over, one value: a constant fill, allowed
    _hu([5000] * 30 + [-5000] * 30, 0),  # two values: the smaller one is too much? 7.5 %
    _hu(list(range(5000, 5041)) + [-32768] * 100, 0),  # fill plus 10.25 % others: refused
    _hu(list(range(5000, 5100)), -32768),  # mostly fill, 25 % others: refused
    np.full((20, 20), -32768, np.int16),  # all fill: allowed
    np.zeros((0, 0), np.int16),
]


@pytest.mark.parametrize("index", range(len(PLAUSIBILITY_CASES)))
def test_plausibility_verdicts_equal_the_plain_count(index: int) -> None:
    hounsfield = PLAUSIBILITY_CASES[index]
    expected = reference_plausible(hounsfield)
    if expected is None:
        check_plausible(hounsfield)
        return
    with pytest.raises(CorruptPixelData) as refused:
        check_plausible(hounsfield)
    assert f"({expected} beyond" in refused.value.detail


def test_plausibility_on_random_slices_equals_the_plain_count() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        share = rng.uniform(0, 0.4)
        hounsfield = rng.integers(-1024, 3000, size=(16, 16)).astype(np.int16)
        wild = rng.random((16, 16)) < share
        hounsfield[wild] = rng.choice([-32768, 32767, 9000, -9000], size=int(wild.sum()))
        expected = reference_plausible(hounsfield)
        try:
            check_plausible(hounsfield)
            verdict = None
        except CorruptPixelData as exc:
            verdict = exc.detail
        assert (verdict is None) == (expected is None)
        if expected is not None:
            assert f"({expected} beyond" in str(verdict)
