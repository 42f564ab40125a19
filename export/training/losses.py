"""Segmentation losses for rare foreground: soft Dice plus binary cross-entropy or focal loss.

Metastasis pixels are well under 1 % of a CT slice. Cross-entropy alone lets the network
settle on "background everywhere"; Dice rewards overlap whatever the class balance, and
the pixel-wise term keeps gradients informative on crops that hold no lesion at all.

Both terms count pixels, so a 20-pixel lesion (the end of a lesion, a small rib lesion)
weighs a fiftieth of a 1,000-pixel one, while the per-slice metric counts each as one
lesion. ``small_lesion_area`` lifts the pixel-term weight of each small lesion component
towards that of a lesion of that area (by ``sqrt(area / size)``, at most
``small_lesion_max_weight``).

``peak_weight`` adds the per-slice metric's own question, asked of every lesion component
of every crop alike: is any pixel of it confident? The term is the cross-entropy of each
component's largest logit against "lesion" (softplus(-peak)), averaged over components.
It is near zero for a component the network already marks and about -peak for one it
misses entirely, so its gradient goes where the pixel terms, dominated by large lesions
and by pixels already right, say little: the components nothing is raised in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from api.lesions.components import structure

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
    small_lesion_area: float = 0.0  # px; lesion components below it weigh more (0: off)
    small_lesion_max_weight: float = 4.0
    peak_weight: float = 0.0  # weight of the component-peak term (0: off)

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
        if self.small_lesion_area < 0 or self.small_lesion_max_weight < 1:
            raise ValueError("small_lesion_area must be >= 0 and small_lesion_max_weight >= 1")
        if self.peak_weight < 0:
            raise ValueError(f"peak_weight must be >= 0, got {self.peak_weight}")

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


_EIGHT_CONNECTED = structure(8)  # diagonal steps count as one pixel


def lesion_components(
    target: npt.NDArray[np.floating[Any]] | npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Lesion components of every image of ``target`` (..., H, W), numbered across the batch.

    Returns (labels, sizes): labels of ``target``'s shape, 0 on background and 1..n on the
    n components (8-connected, each image on its own); sizes[k - 1] is component k's pixels.
    """
    lesion = np.asarray(target) > 0.5
    labels = np.zeros(lesion.shape, dtype=np.int64)
    flat_lesion = lesion.reshape(-1, *lesion.shape[-2:])
    flat_labels = labels.reshape(-1, *lesion.shape[-2:])
    total = 0
    for image, out in zip(flat_lesion, flat_labels, strict=True):
        found, count = ndimage.label(image, structure=_EIGHT_CONNECTED)
        if count:
            out[...] = np.where(found > 0, found + total, 0)
            total += count
    sizes = np.bincount(labels.ravel(), minlength=total + 1)[1:].astype(np.int64)
    return labels, sizes


def small_lesion_weights(
    target: npt.NDArray[np.floating[Any]] | npt.NDArray[np.bool_], area: float, max_weight: float
) -> npt.NDArray[np.float32]:
    """Pixel weights (same shape as ``target``, (..., H, W)): 1 on background and on lesion
    components of at least ``area`` pixels, ``min(max_weight, sqrt(area / size))`` on the
    pixels of a smaller component (8-connected, per image).

    Sizes are those seen in the image given, a training crop: a big lesion cut by the
    crop's edge counts as small there. Lesion-centred crops are jittered by less than a
    third of the crop, so that is the exception.
    """
    labels, sizes = lesion_components(target)
    if area <= 0:
        return np.ones(labels.shape, dtype=np.float32)
    return _size_weights(sizes, area, max_weight)[labels]


def _size_weights(
    sizes: npt.NDArray[np.int64], area: float, max_weight: float
) -> npt.NDArray[np.float32]:
    """Weight by component label (index 0: background, 1): see :func:`small_lesion_weights`."""
    factor = np.clip(np.sqrt(area / np.maximum(sizes, 1).astype(np.float32)), 1.0, max_weight)
    return np.concatenate([np.ones(1, np.float32), factor.astype(np.float32)])


def component_peak_loss(logits: torch.Tensor, labels: npt.NDArray[np.int64]) -> torch.Tensor:
    """Mean over lesion components of softplus(-largest logit of the component); 0 if none.

    ``labels`` numbers the components of ``logits``' shape (see :func:`lesion_components`).
    The gradient reaches each component's largest logit only (shared among ties).
    """
    flat = torch.from_numpy(labels.reshape(-1)).to(logits.device)
    inside = flat > 0
    count = int(labels.max()) if labels.size else 0
    if count == 0:
        return logits.sum() * 0.0  # keeps the graph: a batch without lesions adds nothing
    peaks = torch.zeros(count, dtype=logits.dtype, device=logits.device).scatter_reduce(
        0, flat[inside] - 1, logits.reshape(-1)[inside], reduce="amax", include_self=False
    )
    return F.softplus(-peaks).mean()


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma: float = 2.0,
    alpha: float = 0.75,
    pixel_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean focal loss (Lin et al. 2017): cross-entropy scaled by (1 - p_true)^gamma."""
    cross_entropy = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_true = torch.exp(-cross_entropy)
    weight = alpha * target + (1.0 - alpha) * (1.0 - target)
    if pixel_weights is not None:
        weight = weight * pixel_weights
    return (weight * (1.0 - p_true) ** gamma * cross_entropy).mean()


class SegmentationLoss(nn.Module):
    """``dice_weight`` x soft Dice loss + ``pixel_weight`` x BCE (or focal) loss."""

    def __init__(self, config: LossConfig):
        super().__init__()
        self.config = config

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        config = self.config
        target = target.to(logits.dtype)
        pixel_weights = None
        labels = None
        if config.small_lesion_area > 0 or config.peak_weight > 0:
            labels, sizes = lesion_components(target.detach().cpu().numpy())
        if config.small_lesion_area > 0:
            assert labels is not None
            weights = _size_weights(sizes, config.small_lesion_area, config.small_lesion_max_weight)
            pixel_weights = torch.from_numpy(weights[labels]).to(logits.device, logits.dtype)
        if config.pixel_loss == "focal":
            pixel = focal_loss(
                logits, target, config.focal_gamma, config.focal_alpha, pixel_weights
            )
        else:
            weight = torch.tensor(config.positive_weight, dtype=logits.dtype)
            pixel = F.binary_cross_entropy_with_logits(
                logits, target, weight=pixel_weights, pos_weight=weight
            )
        dice = soft_dice_loss(logits, target, config.dice_smooth)
        loss = config.dice_weight * dice + config.pixel_weight * pixel
        if config.peak_weight > 0:
            assert labels is not None
            loss = loss + config.peak_weight * component_peak_loss(logits, labels)
        return loss
