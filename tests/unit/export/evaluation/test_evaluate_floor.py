"""`bonemets evaluate` hides what the gateway's reporting floor hides, before counting."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from export.evaluation.data import volume_study
from export.evaluation.run import evaluate
from tests.unit.export.evaluation.test_evaluate import FakeModel, oracle


def _study() -> tuple[npt.NDArray[np.int16], npt.NDArray[np.uint8]]:
    """Five 512 x 512 slices of 0.7 mm: a lesion on 0-4 whose end slices are 2 x 2 px and
    whose middle is 20 x 20 px (13 mm), fed in batches of 2 so it crosses two boundaries."""
    rng = np.random.default_rng(3)
    hounsfield = (40 + rng.integers(-20, 20, size=(5, 512, 512))).astype(np.int16)
    labels = np.zeros((5, 512, 512), dtype=np.uint8)
    labels[0, 209:211, 309:311] = 1
    labels[1:4, 200:220, 300:320] = 1
    labels[4, 209:211, 309:311] = 1
    return hounsfield, labels


def _with_specks(truth: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """The truth plus a 2 x 1 px speck (0.7 mm) away from it on every slice."""
    mask = truth.copy()
    mask[100, 100:102] = True
    return mask


def _metrics(floor_mm: float) -> dict:
    hounsfield, labels = _study()
    studies = [volume_study("s", hounsfield, labels, (0.7, 0.7))]
    model = FakeModel.from_studies(studies, _with_specks)
    evaluation = evaluate(model, studies, batch=2, floor_mm=floor_mm)
    assert evaluation.to_json()["reporting_floor_mm"] == floor_mm
    return evaluation.metrics


def test_the_floor_hides_the_specks_and_keeps_the_lesion_s_end_slices() -> None:
    metrics = _metrics(5.0)
    per_slice, lesion = metrics["per_slice"], metrics["lesion"]
    assert (per_slice["truth"], per_slice["detected"], per_slice["false_predicted"]) == (5, 5, 0)
    assert (lesion["truth"], lesion["detected"], lesion["false_predicted"]) == (1, 1, 0)


def test_a_floor_of_zero_counts_every_speck() -> None:
    metrics = _metrics(0.0)
    # The specks sit at one (row, column) on adjacent slices: one 3D lesion, five 2D ones.
    assert metrics["per_slice"]["false_predicted"] == 5
    assert metrics["lesion"]["false_predicted"] == 1
    assert metrics["per_slice"]["detected"] == 5


def test_the_oracle_is_untouched_by_a_floor_below_its_lesions() -> None:
    hounsfield, labels = _study()
    studies = [volume_study("s", hounsfield, labels, (0.7, 0.7))]
    metrics = evaluate(FakeModel.from_studies(studies, oracle), studies, batch=2,
                       floor_mm=5.0).metrics
    assert metrics["per_slice"]["sensitivity"] == 1.0 and metrics["dice"]["pooled"] == 1.0


def test_a_floor_without_pixel_spacing_is_refused() -> None:
    hounsfield, labels = _study()
    studies = [volume_study("s", hounsfield, labels)]
    with pytest.raises(ValueError, match="reporting-floor-mm 0"):
        evaluate(FakeModel.from_studies(studies, oracle), studies, floor_mm=5.0)
