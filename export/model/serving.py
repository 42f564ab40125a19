"""The end-to-end serving graph: HU slices in, packed mask and probability grid out.

Windowing, thresholding, bit packing, 4x4 max pooling and quantisation all run inside the
model, so the gateway ships half-size HU tensors and gets 32 KiB masks back, and the window
lives with the weights. The arithmetic is that of :mod:`api.inference.processing` (the CPU
path's numpy), so both paths give the same answers:

* windowing ``clip((hu - low) / width, 0, 1)`` in float32, one channel per window;
* mask ``logit >= logit(threshold)``, decided in logit space (no sigmoid rounding can
  move a pixel across the threshold), packed like ``numpy.packbits(axis=-1)``;
* probability ``floor(255 * sigmoid(max logit of the 4x4 block) + 0.5)`` clipped to uint8;
* with a bone gate, the mask is ANDed with :func:`api.inference.bone_gate.bone_region` before
  packing (max pooling with ignored padding is its dilation; the probability is not gated).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from api.inference.bone_gate import BoneGate
from api.inference.contract import INPUT_SIZE, PROBABILITY_STRIDE, Window
from api.inference.processing import logit_threshold

BIT_WEIGHTS = (128.0, 64.0, 32.0, 16.0, 8.0, 4.0, 2.0, 1.0)  # most significant bit first


def float32_logit_threshold(threshold: float) -> float:
    """The smallest float32 >= logit(threshold): float32 ``x >= it`` is exact ``x >= logit``."""
    exact = logit_threshold(threshold)
    rounded = np.float32(exact)
    if float(rounded) < exact:
        rounded = np.nextafter(rounded, np.float32(np.inf))
    return float(rounded)


class ServingGraph(nn.Module):
    """HU (N, H, W) -> (MASK uint8 (N, H, W/8), PROBABILITY uint8 (N, H/4, W/4))."""

    lows: torch.Tensor
    widths: torch.Tensor
    bit_weights: torch.Tensor
    logit_threshold: torch.Tensor

    def __init__(
        self,
        network: nn.Module,
        windows: tuple[Window, ...],
        threshold: float,
        input_size: int = INPUT_SIZE,
        bone_gate: BoneGate | None = None,
    ):
        super().__init__()
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        if input_size % 8:
            raise ValueError(f"input_size must be a multiple of 8, got {input_size}")
        self.network = network
        self.input_size = input_size
        lows = torch.tensor([w.low for w in windows], dtype=torch.float32)
        widths = torch.tensor([w.width for w in windows], dtype=torch.float32)
        self.register_buffer("lows", lows.reshape(1, -1, 1, 1))
        self.register_buffer("widths", widths.reshape(1, -1, 1, 1))
        self.register_buffer("bit_weights", torch.tensor(BIT_WEIGHTS, dtype=torch.float32))
        cut = float32_logit_threshold(threshold)
        self.register_buffer("logit_threshold", torch.tensor(cut, dtype=torch.float32))
        self.bone_gate = bone_gate

    def forward(self, hounsfield: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hu = hounsfield.to(torch.float32).unsqueeze(1)
        image = torch.clamp((hu - self.lows) / self.widths, 0.0, 1.0)
        logits = self.network(image)
        size, stride = self.input_size, PROBABILITY_STRIDE
        # Constant reshapes (not squeeze, not traced sizes) keep exported shapes static.
        mask = (logits >= self.logit_threshold).to(torch.float32)
        if self.bone_gate is not None:
            mask = mask * bone_region(hu, self.bone_gate)
        # (N, H, W/8, 8) bits weighted by place value and summed: numpy.packbits(axis=-1).
        packed = (mask.reshape(-1, size, size // 8, 8) * self.bit_weights).sum(-1)
        # Sigmoid and quantisation are monotonic, so pooling the logits first is exact.
        peak = F.max_pool2d(logits, stride, stride).reshape(-1, size // stride, size // stride)
        quantised = torch.clamp(torch.floor(torch.sigmoid(peak) * 255.0 + 0.5), 0.0, 255.0)
        return packed.to(torch.uint8), quantised.to(torch.uint8)


def _dilate(region: torch.Tensor, radius: int) -> torch.Tensor:
    # Max pooling ignores its padding: outside the image is background, as in the numpy path.
    size = 2 * radius + 1
    rows = F.max_pool2d(region, (1, size), 1, (0, radius))
    return F.max_pool2d(rows, (size, 1), 1, (radius, 0))


def bone_region(hu: torch.Tensor, gate: BoneGate) -> torch.Tensor:
    """:func:`api.inference.bone_gate.bone_region` on HU (N, 1, H, W) as float 0/1."""
    region = (hu >= float(gate.threshold_hu)).to(torch.float32)
    if gate.close_radius:
        # Erosion is dilation of the complement: outside the image then counts as bone.
        closed = _dilate(region, gate.close_radius)
        region = 1.0 - _dilate(1.0 - closed, gate.close_radius)
    if gate.dilate_radius:
        region = _dilate(region, gate.dilate_radius)
    return region
