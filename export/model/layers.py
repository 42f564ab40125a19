"""Small building blocks shared by the encoder and the DeepLabV3+ head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from export.model.config import Norm


def group_count(channels: int) -> int:
    """Groups for GroupNorm: at most 32, at least 4 channels a group where possible."""
    for groups in range(min(32, max(1, channels // 4)), 0, -1):
        if channels % groups == 0:
            return groups
    return 1


class GroupNorm(nn.GroupNorm):
    """GroupNorm whose export keeps PyTorch's precision in ONNX Runtime.

    Exported as is (InstanceNormalization) or as one ReduceMean per group, ONNX Runtime sums
    up to C/G x 256 x 256 float32 values in one running total and drifts by ~1e-2 in the
    logits. Reducing over x, then y, then the group's channels keeps each sum short (and
    the mean subtracted before squaring), which holds parity near 1e-5.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.onnx.is_in_onnx_export():
            return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        grouped = x.reshape(x.shape[0], self.num_groups, -1, x.shape[2], x.shape[3])
        centred = grouped - _staged_mean(grouped)
        normed = centred / torch.sqrt(_staged_mean(centred * centred) + self.eps)
        return normed.reshape(x.shape) * self.weight.reshape(1, -1, 1, 1) + self.bias.reshape(
            1, -1, 1, 1
        )


def _staged_mean(grouped: torch.Tensor) -> torch.Tensor:
    """Mean over the last three axes, one axis at a time (N, G, 1, 1, 1)."""
    return grouped.mean(dim=-1, keepdim=True).mean(dim=-2, keepdim=True).mean(dim=-3, keepdim=True)


def make_norm(norm: Norm, channels: int) -> nn.Module:
    """A normalisation layer over ``channels`` feature maps."""
    if norm == "group":
        return GroupNorm(group_count(channels), channels)
    return nn.BatchNorm2d(channels)


def conv_norm_relu(
    in_channels: int,
    out_channels: int,
    norm: Norm,
    *,
    kernel_size: int = 3,
    stride: int = 1,
    dilation: int = 1,
) -> nn.Sequential:
    """Convolution (no bias: the norm has one), normalisation, ReLU; 'same' padding."""
    padding = dilation * (kernel_size - 1) // 2
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            bias=False,
        ),
        make_norm(norm, out_channels),
        nn.ReLU(inplace=True),
    )


def init_weights(module: nn.Module) -> None:
    """He initialisation for convolutions, identity for norms (call via ``Module.apply``)."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
