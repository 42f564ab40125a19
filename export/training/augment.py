"""Training crops with augmentation: one affine resampling per crop, image and label together.

A crop is cut from a full HU slice by a single affine map (centre, rotation, zoom, flips),
so the image and its label go through the same geometry and cannot drift apart: the image
is sampled linearly, the label by nearest neighbour, outside the slice is air / background.
A slice's neighbour planes (a model with slice context) share its geometry.
Noise is added in HU after the geometry, and the result is rounded back to int16 because
the served model only ever sees int16 HU.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

AIR_HU = -1024


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random augmentations (all off with ``AugmentConfig.none()``)."""

    flip_left_right: float = 0.5  # probability
    flip_up_down: float = 0.0  # probability; axial CT has a fixed anterior/posterior
    max_rotation_deg: float = 10.0
    scale_range: tuple[float, float] = (0.9, 1.1)  # zoom: >1 magnifies
    max_noise_hu: float = 25.0  # std of Gaussian noise drawn from U(0, max)
    max_hu_shift: float = 15.0  # a constant offset from U(-max, max): scanner calibration

    def __post_init__(self) -> None:
        for name in ("flip_left_right", "flip_up_down"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be a probability, got {getattr(self, name)}")
        low, high = self.scale_range
        if not 0 < low <= high:
            raise ValueError(f"scale_range must be 0 < low <= high, got {self.scale_range}")
        if self.max_rotation_deg < 0 or self.max_noise_hu < 0 or self.max_hu_shift < 0:
            raise ValueError("rotation, noise and shift ranges must be >= 0")

    @classmethod
    def none(cls) -> AugmentConfig:
        """No augmentation: the crop is a plain window of the slice."""
        return cls(0.0, 0.0, 0.0, (1.0, 1.0), 0.0, 0.0)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        data = asdict(self)
        data["scale_range"] = list(self.scale_range)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AugmentConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        unknown = sorted(set(data) - {field.name for field in fields(cls)})
        if unknown:
            raise ValueError(f"unknown augment config keys: {unknown}")
        values = dict(data)
        if "scale_range" in values:
            low, high = values["scale_range"]
            values["scale_range"] = (float(low), float(high))
        return cls(**values)


@dataclass(frozen=True)
class CropGeometry:
    """Where and how one crop samples its slice."""

    center: tuple[float, float]  # (row, column) in slice pixels
    size: int
    rotation_deg: float = 0.0
    scale: float = 1.0
    flip_left_right: bool = False
    flip_up_down: bool = False

    def affine(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """(matrix, offset) with slice index = matrix @ crop index + offset."""
        angle = math.radians(self.rotation_deg)
        rotation = np.array(
            [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
        )
        flips = np.diag([-1.0 if self.flip_up_down else 1.0, -1.0 if self.flip_left_right else 1.0])
        matrix = rotation @ flips / self.scale
        half = (self.size - 1) / 2.0
        offset = np.asarray(self.center, dtype=np.float64) - matrix @ np.array([half, half])
        return matrix, offset


def random_geometry(
    rng: np.random.Generator, center: tuple[float, float], size: int, config: AugmentConfig
) -> CropGeometry:
    """Draw the rotation, zoom and flips of one crop centred on ``center``."""
    return CropGeometry(
        center=center,
        size=size,
        rotation_deg=float(rng.uniform(-config.max_rotation_deg, config.max_rotation_deg)),
        scale=float(rng.uniform(*config.scale_range)),
        flip_left_right=bool(rng.random() < config.flip_left_right),
        flip_up_down=bool(rng.random() < config.flip_up_down),
    )


def crop_slice(
    hounsfield: npt.NDArray[np.int16], labels: npt.NDArray[np.uint8], geometry: CropGeometry
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8]]:
    """Resample one (H, W) slice and its label onto the crop grid: float HU, uint8 label."""
    matrix, offset = geometry.affine()
    shape = (geometry.size, geometry.size)
    label = ndimage.affine_transform(
        labels, matrix, offset, shape, order=0, mode="constant", cval=0
    )
    return _resample(hounsfield, geometry), label.astype(np.uint8, copy=False)


def crop_planes(
    planes: npt.NDArray[np.int16], labels: npt.NDArray[np.uint8], geometry: CropGeometry
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8]]:
    """Resample (K, H, W) planes of one slice, all by the same geometry, and the label of
    the centre plane: float HU (K, size, size), uint8 label (size, size)."""
    image = np.stack([_resample(plane, geometry) for plane in planes])
    _, label = crop_slice(planes[len(planes) // 2], labels, geometry)
    return image, label


def _resample(hounsfield: npt.NDArray[np.int16], geometry: CropGeometry) -> npt.NDArray[np.float32]:
    matrix, offset = geometry.affine()
    image: npt.NDArray[np.float32] = ndimage.affine_transform(
        hounsfield.astype(np.float32),
        matrix,
        offset,
        (geometry.size, geometry.size),
        order=1,
        mode="constant",
        cval=float(AIR_HU),
    )
    return image


def add_hu_noise(
    image: npt.NDArray[np.float32], rng: np.random.Generator, config: AugmentConfig
) -> npt.NDArray[np.int16]:
    """Gaussian noise and a global offset in HU, rounded back to int16 as the scanner stores.

    Planes (K, size, size) of one slice are one scan: one noise level and one offset, but
    each plane its own noise, as each reconstructed slice has.
    """
    noisy = image
    if config.max_noise_hu > 0:
        sigma = rng.uniform(0.0, config.max_noise_hu)
        noisy = noisy + rng.normal(0.0, sigma, size=image.shape).astype(np.float32)
    if config.max_hu_shift > 0:
        noisy = noisy + np.float32(rng.uniform(-config.max_hu_shift, config.max_hu_shift))
    info = np.iinfo(np.int16)
    return np.clip(np.rint(noisy), info.min, info.max).astype(np.int16)


def augmented_crop(
    hounsfield: npt.NDArray[np.int16],
    labels: npt.NDArray[np.uint8],
    center: tuple[float, float],
    size: int,
    rng: np.random.Generator,
    config: AugmentConfig,
) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.uint8]]:
    """One randomly transformed crop of a slice (H, W) or of its planes (K, H, W): int16 HU
    (size, size) or (K, size, size), and the uint8 label of the slice.

    Every plane goes through the same geometry, so a lesion stays where it is across them;
    one plane draws exactly what one slice draws, so a 2D model's crops are unchanged.
    """
    geometry = random_geometry(rng, center, size, config)
    if hounsfield.ndim == 2:
        image, label = crop_slice(hounsfield, labels, geometry)
    else:
        image, label = crop_planes(hounsfield, labels, geometry)
    return add_hu_noise(image, rng, config), label
