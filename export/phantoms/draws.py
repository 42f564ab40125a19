"""How one uniform number becomes a field of a phantom spec (shared by the seed's own draw
and by :mod:`export.phantoms.randomise`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def categorical(options: Sequence[T], weights: Sequence[float]) -> Callable[[float], T]:
    """Option ``i`` for ``u`` in the ``i``-th share of [0, 1), shares set by ``weights``."""
    cumulative = np.cumsum(np.asarray(weights, dtype=float))
    cumulative /= cumulative[-1]

    def pick(u: float) -> T:
        return options[int(np.searchsorted(cumulative, u, side="right"))]

    return pick


def uniform(low: float, high: float, digits: int = 3) -> Callable[[float], float]:
    """``u`` mapped onto [low, high], rounded."""
    return lambda u: round(low + (high - low) * u, digits)


def spacing_for(size: int, body_scale: float) -> Callable[[float], float]:
    """Display FOV fitted to the patient (as a technologist would), in 10 mm steps."""

    def pick(u: float) -> float:
        fov = 2 * 170.0 * body_scale + 30.0 + 90.0 * u
        fov = 10.0 * round(fov / 10.0)
        return round(min(1.0, max(0.5, fov / size)), 6)

    return pick


def noise_for(thickness: float) -> Callable[[float], float]:
    """Noise SD in HU; quantum noise grows as 1/sqrt(slice thickness) at a fixed dose."""
    return lambda u: round(min(45.0, max(5.0, (8.0 + 14.0 * u) * math.sqrt(2.5 / thickness))), 1)
