"""Domain randomisation: a different scanner and patient look for the same seed's study.

A network trained on one look learns that look as "normal". With ``randomise=True``,
:func:`export.phantoms.spec.sample_spec` redraws the look from a stream of its own
(``[0x5BEC, seed, 5]``), a fixed number of draws whatever is kept, so:

- the seed's anatomy, lesion and noise streams are used as they are: the same patient's
  draws, scaled to another size and seen through another kernel, phase, matrix and dose;
- a field given by the caller (``marrow_hu=...``, ``size=...``) is kept as given.

What is drawn, per study:

- kernel: soft, standard or sharp (noise texture and edge sharpness, kernels.py);
- contrast phase: none, arterial, portal venous or delayed;
- metal: titanium pedicle screws and rods at two or three levels, in 15% of studies;
- partial volume: on for slices of 3 mm and thicker (the average of three thin slices);
- matrix 256, 512 or 768, and a display field of view fitted to the patient;
- rescale intercept -1024 or 0 (where the storage is signed);
- patient size 0.72-1.32 of the default and a dose from 0.6x to 1.6x (noise SD);
- the patient's marrow density range, osteoporotic (from 70 HU) to dense (300 HU);
- normal variants (bone islands, haemangiomas, ...) in 60% of studies.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from export.phantoms.draws import categorical, spacing_for, uniform

KERNEL_NOISE = {"soft": 0.7, "standard": 1.0, "sharp": 1.6}  # noise SD relative to standard


def _marrow(u: float) -> tuple[float, float]:
    """A range of vertebral trabecular density: its low end from 70 HU (osteoporotic, as in
    the demo's training set; lower, a lytic lesion's 15-75 HU would not show) to 200 HU."""
    low = round(70.0 + 130.0 * u, 1)
    return low, round(min(300.0, low + 60.0 + 60.0 * u), 1)


def randomised_look(seed: int, drawn: dict[str, Any], kept: set[str]) -> dict[str, Any]:
    """The fields of ``drawn`` to replace, each drawn unless its name is in ``kept``."""
    u = iter(np.random.default_rng([0x5BEC, seed, 5]).random(16).tolist())
    look: dict[str, Any] = {}

    def pick(name: str, draw: Callable[[float], Any]) -> Any:
        value = draw(next(u))
        if name not in kept:
            look[name] = value
        return look.get(name, drawn[name])

    kernel = pick("kernel", categorical(tuple(KERNEL_NOISE), (0.35, 0.35, 0.3)))
    pick("contrast", categorical(("none", "arterial", "venous", "delayed"),
                                 (0.25, 0.2, 0.35, 0.2)))
    pick("metal", lambda v: "spinal_fixation" if v < 0.15 else "none")
    pick("partial_volume", lambda v: drawn["slice_thickness_mm"] >= 3.0)
    size = pick("size", categorical((256, 512, 768), (0.25, 0.5, 0.25)))
    body_scale = pick("body_scale", uniform(0.72, 1.32))
    pick("pixel_spacing_mm", spacing_for(size, body_scale))
    pick("intercept", lambda v: 0 if drawn["signed"] and v < 0.5 else -1024)
    dose = 0.6 + 0.8 * next(u)  # noise SD 0.6x-1.4x: a dose from about 0.5x to 2.8x
    # The seed draws noise for the standard kernel; a soft one smooths it, a sharp one adds.
    base = drawn["noise_hu"] * KERNEL_NOISE[kernel]
    pick("noise_hu", lambda v: round(min(60.0, max(4.0, base * dose)), 1))
    pick("blur_mm", uniform(0.25, 0.8))
    pick("marrow_hu", _marrow)
    pick("bone_variants", lambda v: v < 0.6)
    # The scanner's own noise grows as the patient grows (fewer photons through more tissue).
    if "noise_hu" not in kept:
        look["noise_hu"] = round(min(60.0, look["noise_hu"] * math.sqrt(body_scale)), 1)
    return look
