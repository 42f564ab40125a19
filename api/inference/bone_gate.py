"""The bone gate: a lesion pixel is reported only inside a bone region drawn from HU.

Metastases of interest sit in bone, so a finding in soft tissue, a vessel or bowel is false
by definition. The region is computed from the same HU the network sees, in the served
model (:class:`export.model.serving.ServingGraph`) and here in numpy for the CPU path, with
the same arithmetic, so both give the same bits:

* ``hu >= threshold_hu``: cortex and dense trabecular bone. Osteoporotic marrow (70-140 HU)
  and lytic lesions (15-75 HU) fall below any threshold that keeps soft tissue and
  enhanced vessels out; the cortical shell around them is what finds them;
* closed by a square of half-width ``close_radius`` (dilate, then erode; outside the image
  counts as background for the dilation and as bone for the erosion, as max pooling with
  ignored padding does), so marrow and lytic interiors inside a shell are covered;
* dilated by a square of half-width ``dilate_radius``, so a lesion's soft-tissue edge and
  the partial-volume rim of the cortex stay inside.

Squares are separable: a row pass then a column pass, each a 1-D max, cheap on a GPU and
expressible as ONNX ``MaxPool``. Radii are in pixels of the 512x512 input, whatever the
series' pixel spacing (the served model never sees it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.ndimage import maximum_filter1d, minimum_filter1d

__all__ = ["BoneGate", "bone_region", "gate_packed_mask"]


@dataclass(frozen=True)
class BoneGate:
    """The gate's parameters; ``str`` gives ``"THRESHOLD_HU:CLOSE:DILATE"``."""

    threshold_hu: int
    close_radius: int
    dilate_radius: int

    def __post_init__(self) -> None:
        if not -1024 <= self.threshold_hu <= 2048:
            # float16 holds every integer HU up to 2048 exactly: the GPU graph's input.
            raise ValueError(f"threshold_hu must lie in [-1024, 2048], got {self.threshold_hu}")
        if self.close_radius < 0 or self.dilate_radius < 0:
            raise ValueError(f"radii must be >= 0, got {self.close_radius}, {self.dilate_radius}")

    def __str__(self) -> str:
        return f"{self.threshold_hu}:{self.close_radius}:{self.dilate_radius}"

    @classmethod
    def parse(cls, text: str) -> BoneGate | None:
        """Parse ``"THRESHOLD_HU:CLOSE:DILATE"`` (e.g. ``"200:24:3"``); "" or "off" is None."""
        if text.strip() in ("", "off"):
            return None
        try:
            threshold, close, dilate = (int(part) for part in text.split(":"))
        except ValueError as exc:
            raise ValueError(f"bone gate must be 'HU:CLOSE:DILATE', got {text!r}") from exc
        return cls(threshold, close, dilate)


def _dilate(region: npt.NDArray[np.uint8], radius: int) -> npt.NDArray[np.uint8]:
    size = 2 * radius + 1
    rows = maximum_filter1d(region, size, axis=-1, mode="constant", cval=0)
    grown: npt.NDArray[np.uint8] = maximum_filter1d(rows, size, axis=-2, mode="constant", cval=0)
    return grown


def _erode(region: npt.NDArray[np.uint8], radius: int) -> npt.NDArray[np.uint8]:
    size = 2 * radius + 1
    rows = minimum_filter1d(region, size, axis=-1, mode="constant", cval=1)
    shrunk: npt.NDArray[np.uint8] = minimum_filter1d(rows, size, axis=-2, mode="constant", cval=1)
    return shrunk


def bone_region(
    hounsfield: npt.NDArray[np.integer[Any]] | npt.NDArray[np.floating[Any]], gate: BoneGate
) -> npt.NDArray[np.bool_]:
    """The bone region of HU slices (N, H, W): threshold, close, dilate (module docstring)."""
    if hounsfield.ndim != 3:
        raise ValueError(f"hounsfield must be (N, H, W), got shape {hounsfield.shape}")
    region = (hounsfield >= gate.threshold_hu).astype(np.uint8)
    if gate.close_radius:
        region = _erode(_dilate(region, gate.close_radius), gate.close_radius)
    if gate.dilate_radius:
        region = _dilate(region, gate.dilate_radius)
    return region.astype(np.bool_)


def gate_packed_mask(
    packed: npt.NDArray[np.uint8],
    hounsfield: npt.NDArray[np.integer[Any]] | npt.NDArray[np.floating[Any]],
    gate: BoneGate | None,
) -> npt.NDArray[np.uint8]:
    """The packed mask (N, H, W/8) AND the packed bone region; unchanged when ``gate`` is None."""
    if gate is None:
        return packed
    gated: npt.NDArray[np.uint8] = packed & np.packbits(bone_region(hounsfield, gate), axis=-1)
    return gated
