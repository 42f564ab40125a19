"""The reporting floor's pure parts: which components must keep their pixels, which lesions go."""

from __future__ import annotations

import numpy as np

from api.lesions.components import PixelBox, components_2d
from api.lesions.measures import feret_diameter_mm
from api.study.floor import may_be_hidden


def test_a_component_keeps_its_pixels_exactly_while_its_box_is_under_the_floor() -> None:
    assert may_be_hidden(PixelBox(0, 0, 8, 8), (0.7, 0.7), 5.0)  # 7 x 0.7 = 4.9 mm
    assert not may_be_hidden(PixelBox(0, 0, 9, 1), (0.7, 0.7), 5.0)  # 8 x 0.7 = 5.6 mm
    assert not may_be_hidden(PixelBox(0, 0, 1, 1), (0.7, 0.7), 0.0)  # floor off: never


def test_every_component_under_the_floor_keeps_its_pixels() -> None:
    """What the gateway's erasure relies on: Feret < floor implies may_be_hidden."""
    rng = np.random.default_rng(5)
    for _ in range(200):
        mask = np.zeros((24, 24), dtype=np.bool_)
        r, c = rng.integers(0, 20, size=2)
        h, w = rng.integers(1, 5, size=2)
        mask[r:r + h, c:c + w] = rng.random((h, w)) < 0.8
        for part in components_2d(mask, np.full((6, 6), 200, dtype=np.uint8)):
            spacing = (float(rng.uniform(0.3, 1.0)), float(rng.uniform(0.3, 1.0)))
            if feret_diameter_mm(part.mask, spacing) < 2.0:
                assert may_be_hidden(part.box, spacing, 2.0)
