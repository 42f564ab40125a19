"""DeepLabV3+ (Chen et al. 2018) for one-class segmentation: metastasis logits per pixel."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from export.model.config import ModelConfig
from export.model.layers import conv_norm_relu, init_weights
from export.model.resnet import ResNetEncoder

LOW_LEVEL_STRIDE = 4  # the decoder's skip features come from the stride-4 stage


class ImagePooling(nn.Module):
    """The ASPP image-level branch: global mean, 1x1 convolution, broadcast back.

    The mean is a plain reduction, not AdaptiveAvgPool2d, so it exports as ReduceMean for
    any input size. It has no normalisation: over a 1x1 map, BatchNorm in training mode at
    batch 1 has a single value per channel (an error, or zero output at best).
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=True)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Pool ``x`` and broadcast to the shape of ``like`` (another branch's output)."""
        pooled: torch.Tensor = self.relu(self.conv(x.mean(dim=(2, 3), keepdim=True)))
        return pooled.expand_as(like)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, one 3x3 per rate, image pooling, projected."""

    def __init__(self, in_channels: int, out_channels: int, config: ModelConfig):
        super().__init__()
        branches: list[nn.Module] = [
            conv_norm_relu(in_channels, out_channels, config.norm, kernel_size=1)
        ]
        for rate in config.aspp_rates:
            branches.append(conv_norm_relu(in_channels, out_channels, config.norm, dilation=rate))
        self.branches = nn.ModuleList(branches)
        self.pooling = ImagePooling(in_channels, out_channels)
        self.project = nn.Sequential(
            conv_norm_relu(
                len(branches) * out_channels + out_channels,
                out_channels,
                config.norm,
                kernel_size=1,
            ),
            nn.Dropout(config.aspp_dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [branch(x) for branch in self.branches]
        features.append(self.pooling(x, features[0]))
        projected: torch.Tensor = self.project(torch.cat(features, dim=1))
        return projected


class Decoder(nn.Module):
    """Fuse upsampled ASPP features with projected 1/4 features; two 3x3 convs; 1x1 logits."""

    def __init__(self, low_channels: int, aspp_channels: int, config: ModelConfig):
        super().__init__()
        # Constant scale factors rather than target sizes keep every exported shape static.
        self.high_scale = float(config.output_stride // LOW_LEVEL_STRIDE)
        projection = config.low_level_projection
        self.low_project = conv_norm_relu(low_channels, projection, config.norm, kernel_size=1)
        self.fuse = nn.Sequential(
            conv_norm_relu(projection + aspp_channels, aspp_channels, config.norm),
            conv_norm_relu(aspp_channels, aspp_channels, config.norm),
        )
        self.classifier = nn.Conv2d(aspp_channels, 1, 1, bias=True)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        high = F.interpolate(high, scale_factor=self.high_scale, mode="bilinear")
        fused = self.fuse(torch.cat([high, self.low_project(low)], dim=1))
        logits: torch.Tensor = self.classifier(fused)
        return logits


class DeepLabV3Plus(nn.Module):
    """Windowed CT (N, C, H, W) in [0, 1] -> metastasis logits (N, 1, H, W).

    H and W must be multiples of the output stride (512 is).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = ResNetEncoder(config)
        aspp_channels = config.aspp_channels
        self.aspp = ASPP(self.encoder.out_channels, aspp_channels, config)
        self.decoder = Decoder(self.encoder.low_level_channels, aspp_channels, config)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if not torch.onnx.is_in_onnx_export():  # a Python check would freeze into the trace
            _check_size(image.shape[2:], self.config.output_stride)
        low, high = self.encoder(image)
        logits = self.decoder(low, self.aspp(high))
        return F.interpolate(logits, scale_factor=float(LOW_LEVEL_STRIDE), mode="bilinear")

    @torch.no_grad()
    def fold_logit_affine(self, scale: float, shift: float) -> None:
        """From now on answer ``scale * logit + shift`` (score calibration, in the weights).

        The classifier is a 1x1 convolution and only bilinear upsampling follows it, whose
        weights sum to one, so scaling its weights and bias and shifting its bias is exact.
        """
        if not scale > 0:
            raise ValueError(f"scale must be > 0 (an increasing map), got {scale}")
        classifier = self.decoder.classifier
        assert classifier.bias is not None  # built with bias=True
        classifier.weight.mul_(scale)
        classifier.bias.mul_(scale).add_(shift)


def _check_size(size: torch.Size, stride: int) -> None:
    if any(side % stride for side in size):
        raise ValueError(
            f"image size {tuple(size)} is not a multiple of the output stride {stride}"
        )


def build_model(config: ModelConfig) -> DeepLabV3Plus:
    """A freshly initialised DeepLabV3+ for ``config`` (seed torch first for repeatability)."""
    model = DeepLabV3Plus(config)
    model.apply(init_weights)
    model.encoder.zero_init_residuals()
    if config.head_prior is not None:
        bias = model.decoder.classifier.bias
        assert bias is not None  # built with bias=True
        nn.init.constant_(bias, math.log(config.head_prior / (1 - config.head_prior)))
    return model


def parameter_count(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
