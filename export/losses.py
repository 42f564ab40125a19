"""Segmentation losses for rare foreground: soft Dice plus binary cross-entropy or focal loss.

Metastasis pixels are well under 1 % of a CT slice. Cross-entropy alone lets the network
settle on "background everywhere"; Dice rewards overlap whatever the class balance, and
the pixel-wise term keeps gradients informative on crops that hold no lesion at all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

PixelLoss = Literal["bce", "focal"]


@dataclass(frozen=True)
class LossConfig:
    """Weights of the Dice and pixel terms, and which pixel term (``bce`` or ``focal``)."""

    dice_weight: float = 1.0
    pixel_weight: float = 1.0
    pixel_loss: PixelLoss = "bce"
    focal_gamma: float = 2.0
    focal_alpha: float = 0.75
    dice_smooth: float = 1.0
    positive_weight: float = 1.0  # BCE weight of lesion pixels (pos_weight), >1 favours recall

    def __post_init__(self) -> None:
        if self.pixel_loss not in ("bce", "focal"):
            raise ValueError(f"pixel_loss must be 'bce' or 'focal', got {self.pixel_loss!r}")
        if (
            self.dice_weight < 0
            or self.pixel_weight < 0
            or not (self.dice_weight or self.pixel_weight)
        ):
            raise ValueError("loss weights must be >= 0 and not both zero")
        if self.positive_weight <= 0:
            raise ValueError(f"positive_weight must be > 0, got {self.positive_weight}")
        if not 0 <= self.focal_alpha <= 1:
            raise ValueError(f"focal_alpha must be in [0, 1], got {self.focal_alpha}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LossConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        unknown = sorted(set(data) - {field.name for field in fields(cls)})
        if unknown:
            raise ValueError(f"unknown loss config keys: {unknown}")
        return cls(**data)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - soft Dice over the whole batch (not per crop).

    Pooling the batch keeps the loss defined on crops without lesion, where a per-crop Dice
    is 0/0 and would either be ignored or punish any faint probability at full weight.
    """
    probability = torch.sigmoid(logits)
    overlap = (probability * target).sum()
    total = probability.sum() + target.sum()
    return 1.0 - (2.0 * overlap + smooth) / (total + smooth)


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, alpha: float = 0.75
) -> torch.Tensor:
    """Mean focal loss (Lin et al. 2017): cross-entropy scaled by (1 - p_true)^gamma."""
    cross_entropy = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_true = torch.exp(-cross_entropy)
    weight = alpha * target + (1.0 - alpha) * (1.0 - target)
    return (weight * (1.0 - p_true) ** gamma * cross_entropy).mean()


class SegmentationLoss(nn.Module):
    """``dice_weight`` x soft Dice loss + ``pixel_weight`` x BCE (or focal) loss."""

    def __init__(self, config: LossConfig):
        super().__init__()
        self.config = config

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        config = self.config
        target = target.to(logits.dtype)
        if config.pixel_loss == "focal":
            pixel = focal_loss(logits, target, config.focal_gamma, config.focal_alpha)
        else:
            weight = torch.tensor(config.positive_weight, dtype=logits.dtype)
            pixel = F.binary_cross_entropy_with_logits(logits, target, pos_weight=weight)
        dice = soft_dice_loss(logits, target, config.dice_smooth)
        return config.dice_weight * dice + config.pixel_weight * pixel
