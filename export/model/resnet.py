"""A ResNet encoder (He et al. 2016) with a width multiplier and dilated last stages.

Written here rather than taken from torchvision, which the project does not install. Output
stride 16 keeps the last stage at 1/16 by dilating it (DeepLabV3, Chen et al. 2017); 8
dilates the last two.
"""

from __future__ import annotations

import torch
from torch import nn

from export.model.config import ModelConfig, Norm
from export.model.layers import conv_norm_relu, make_norm

STAGE_BLOCKS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
}
STAGE_CHANNELS = (64, 128, 256, 512)


def _shortcut(in_channels: int, out_channels: int, stride: int, norm: Norm) -> nn.Module:
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
        make_norm(norm, out_channels),
    )


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and an identity (or projected) shortcut; ResNet-18/34."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int, dilation: int, norm: Norm):
        super().__init__()
        out_channels = planes * self.expansion
        padding = dilation
        self.conv1 = nn.Conv2d(
            in_channels, planes, 3, stride=stride, padding=padding, dilation=dilation, bias=False
        )
        self.norm1 = make_norm(norm, planes)
        self.conv2 = nn.Conv2d(
            planes, out_channels, 3, padding=padding, dilation=dilation, bias=False
        )
        self.norm2 = make_norm(norm, out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_channels, out_channels, stride, norm)

    @property
    def last_norm(self) -> nn.Module:
        return self.norm2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        out = self.relu(out + self.shortcut(x))
        return out


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided/dilated), 1x1 expand x4, plus shortcut; ResNet-50."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int, dilation: int, norm: Norm):
        super().__init__()
        out_channels = planes * self.expansion
        self.reduce = conv_norm_relu(in_channels, planes, norm, kernel_size=1)
        self.spatial = conv_norm_relu(planes, planes, norm, stride=stride, dilation=dilation)
        self.expand = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.norm = make_norm(norm, out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_channels, out_channels, stride, norm)

    @property
    def last_norm(self) -> nn.Module:
        return self.norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.norm(self.expand(self.spatial(self.reduce(x))))
        out = self.relu(out + self.shortcut(x))
        return out


class ResNetEncoder(nn.Module):
    """ResNet body returning (low-level features at 1/4, high-level at 1/output_stride)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        block = Bottleneck if config.depth >= 50 else BasicBlock
        stem_channels = config.scaled(64)
        self.stem = nn.Sequential(
            nn.Conv2d(config.in_channels, stem_channels, 7, stride=2, padding=3, bias=False),
            make_norm(config.norm, stem_channels),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        # (stride, dilation) per stage: the strides a dilated stage gives up become dilation.
        if config.output_stride == 16:
            schedule = ((1, 1), (2, 1), (2, 1), (1, 2))
        else:
            schedule = ((1, 1), (2, 1), (1, 2), (1, 4))
        stages: list[nn.Module] = []
        in_channels = stem_channels
        for count, channels, (stride, dilation) in zip(
            STAGE_BLOCKS[config.depth], STAGE_CHANNELS, schedule, strict=True
        ):
            planes = config.scaled(channels)
            blocks: list[nn.Module] = []
            for index in range(count):
                blocks.append(
                    block(in_channels, planes, stride if index == 0 else 1, dilation, config.norm)
                )
                in_channels = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.low_level_channels = config.scaled(64) * block.expansion
        self.out_channels = in_channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = self.layer1(self.stem(x))
        high = self.layer4(self.layer3(self.layer2(low)))
        return low, high

    def zero_init_residuals(self) -> None:
        """Start each residual branch at zero so the fresh network is near-identity (Goyal 2017)."""
        for module in self.modules():
            if isinstance(module, (BasicBlock, Bottleneck)):
                norm = module.last_norm
                if isinstance(norm, (nn.BatchNorm2d, nn.GroupNorm)):
                    nn.init.zeros_(norm.weight)
