"""The slices a 2.5D model needs for a batch, and the blend of each neighbour plane."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from api.study.context import GAP_FACTOR, plan_context, segments


def _planes(z: npt.NDArray[np.float64], start: int, stop: int, context: int,
            spacing: float) -> npt.NDArray[np.float64]:
    """The z each plane of the plan stands for, read back through the plan."""
    plan = plan_context(list(z), start, stop, context, spacing)
    sent = z[list(plan.send)]
    return (1 - plan.weight) * sent[plan.lower] + plan.weight * sent[plan.upper]


def test_a_regular_series_at_the_models_spacing_sends_each_slice_once_and_blends_nothing() -> None:
    z = np.arange(20) * 2.5
    plan = plan_context(list(z), 5, 13, 1, 2.5)
    assert plan.send == tuple(range(4, 14))  # 8 outputs and one neighbour beyond each end
    assert not plan.weight.any()
    np.testing.assert_array_equal(plan.lower, plan.upper)
    sent = np.array(plan.send)
    np.testing.assert_array_equal(sent[plan.lower], np.arange(5, 13)[:, None] + [-1, 0, 1])


def test_thin_slices_take_neighbours_at_the_models_spacing_not_the_next_slice() -> None:
    z = np.arange(40) * 0.625
    plan = plan_context(list(z), 10, 18, 2, 2.5)
    sent = np.array(plan.send)
    np.testing.assert_array_equal(sent[plan.lower], np.arange(10, 18)[:, None] + [-8, -4, 0, 4, 8])
    # Every slice from 8 before the first output to 8 after the last: a thin series costs
    # the most context per batch.
    assert plan.send == tuple(range(2, 26))


def test_thick_slices_blend_the_two_slices_around_each_plane() -> None:
    z = np.arange(10) * 5.0
    planes = _planes(z, 3, 7, 1, 2.5)
    np.testing.assert_allclose(planes, np.arange(3, 7)[:, None] * 5.0 + [-2.5, 0, 2.5])
    plan = plan_context(list(z), 3, 7, 1, 2.5)
    np.testing.assert_allclose(plan.weight[:, [0, 2]], 0.5)


@pytest.mark.parametrize("seed", range(20))
def test_every_plane_is_its_target_clamped_to_the_outputs_gap_free_run(seed: int) -> None:
    rng = np.random.default_rng(seed)
    steps = rng.choice([0.5, 0.625, 1.0, 1.25, 2.5, 3.0, 5.0]) * rng.uniform(0.8, 1.2, 59)
    steps[rng.integers(0, 59, 2)] *= 4  # two gaps where slices are missing
    z = np.concatenate(([0.0], np.cumsum(steps))) - 100.0
    context, spacing = int(rng.integers(1, 3)), float(rng.choice([1.25, 2.5, 3.0]))
    start = int(rng.integers(0, 50))
    stop = min(60, start + int(rng.integers(1, 12)))
    run = segments(list(z))
    plan = plan_context(list(z), start, stop, context, spacing)
    sent = np.array(plan.send)
    assert list(sent) == sorted(set(sent))
    assert set(sent) == set(sent[plan.lower].ravel()) | set(sent[plan.upper].ravel())
    for n, output in enumerate(range(start, stop)):
        members = np.flatnonzero(run == run[output])
        low, high = z[members[0]], z[members[-1]]
        targets = np.clip(z[output] + np.arange(-context, context + 1) * spacing, low, high)
        assert set(sent[plan.lower[n]]) | set(sent[plan.upper[n]]) <= set(members)
        assert np.all((plan.weight[n] >= 0) & (plan.weight[n] < 1))
        np.testing.assert_allclose(_planes(z, start, stop, context, spacing)[n], targets,
                                   atol=1e-3)
    assert len(sent) <= (stop - start) + 2 * 2 * context + (stop - start) * 2 * context


def test_series_ends_and_gaps_repeat_the_last_slice_on_the_outputs_side() -> None:
    z = np.array([0.0, 2.5, 5.0, 7.5, 20.0, 22.5, 25.0])  # a gap between 7.5 and 20
    assert segments(list(z)).tolist() == [0, 0, 0, 0, 4, 4, 4]
    plan = plan_context(list(z), 0, 7, 1, 2.5)
    sent = np.array(plan.send)
    assert sent[plan.lower].tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 3],
                                         [4, 4, 5], [4, 5, 6], [5, 6, 6]]
    assert not plan.weight.any()
    assert plan_context([3.0], 0, 1, 2, 2.5).send == (0,)


def test_a_step_just_under_the_gap_factor_is_no_gap() -> None:
    def series(step: float) -> list[float]:  # median spacing 1 mm, one step of ``step``
        return [0.0, 1.0, 2.0, 3.0, 3.0 + step, 4.0 + step, 5.0 + step]

    assert segments(series(GAP_FACTOR * 0.99)).tolist() == [0] * 7
    assert segments(series(GAP_FACTOR * 1.01)).tolist() == [0, 0, 0, 0, 4, 4, 4]


@pytest.mark.parametrize(("z", "start", "stop", "message"), [
    ([0.0, 1.0, 1.0], 0, 1, "ascend"),
    ([0.0, 1.0], 1, 3, "outside"),
    ([0.0, 1.0], 1, 1, "outside"),
])
def test_bad_plans_are_refused(z: list[float], start: int, stop: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_context(z, start, stop, 1, 2.5)
