"""Platt scaling of component peaks: what share of components with a given peak were true.

A network trained with pixel losses on rare lesions is over-confident, so its raw
probabilities say little; :mod:`export.training.calibration` fits this map on validation
components and folds it into the network's last layer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import optimize

from api.inference.processing import sigmoid

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoreCalibration:
    """Platt scaling of component peaks: P(true lesion) = sigmoid(scale * peak + shift)."""

    scale: float
    shift: float

    def logit(self, raw: float) -> float:
        """The calibrated logit of a raw one."""
        return self.scale * raw + self.shift


# Calibration may soften the network's confidence, never sharpen it.
MAX_SCORE_SCALE = 1.0
MIN_SCORE_SCALE = 1e-3
INITIAL_SCORE_SCALE = 0.01  # a nearly flat start: the fit only has to climb


def fit_score_calibration(
    peaks: npt.NDArray[np.floating[Any]], true: npt.NDArray[np.bool_]
) -> ScoreCalibration | None:
    """Logistic regression of "this component is a true lesion" on its peak logit.

    A network trained with pixel losses on rare lesions is over-confident: true and false
    components alike peak far past sigmoid's last uint8 step, so every reported probability
    would read 1.0. Fitted on validation components, ``sigmoid(scale * peak + shift)``
    is the share of components with that peak that were true. ``scale`` stays in
    (0, 1]: the map is increasing, so it reorders nothing. None without both kinds.
    """
    x = np.asarray(peaks, dtype=np.float64)
    y = np.asarray(true, dtype=np.float64)
    if x.size == 0 or y.min() == y.max():
        return None

    def loss(params: npt.NDArray[np.float64]) -> tuple[float, npt.NDArray[np.float64]]:
        z = params[0] * x + params[1]
        # mean binary cross-entropy, written stably: log(1 + e^z) - y z
        value = float(np.mean(np.logaddexp(0.0, z) - y * z))
        residual = sigmoid(z) - y
        return value, np.array([np.mean(residual * x), np.mean(residual)])

    result = optimize.minimize(
        loss,
        x0=np.array([INITIAL_SCORE_SCALE, 0.0]),
        jac=True,
        method="L-BFGS-B",
        bounds=[(MIN_SCORE_SCALE, MAX_SCORE_SCALE), (-100.0, 100.0)],
    )
    if not result.success:
        logger.warning("score calibration did not converge: %s", result.message)
    return ScoreCalibration(float(result.x[0]), float(result.x[1]))
