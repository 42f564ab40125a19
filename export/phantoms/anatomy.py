"""One patient's anatomy as a few analytic shapes: trunk outline, diaphragm, organ blobs.

Everything here is drawn once per study from the anatomy random stream; rendering a slice
(:mod:`trunk`, :mod:`skeleton`) only evaluates these shapes at that slice's z.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from export.phantoms.geometry import ANGLE_BINS, bin_angles
from export.phantoms.levels import Spine
from export.phantoms.variants import BoneVariant

_PHI = bin_angles()
_SIN, _COS = np.sin(_PHI), np.cos(_PHI)
POSTERIOR_BIN = int((math.pi / 2 + math.pi) * ANGLE_BINS / (2 * math.pi))


def smoothstep(x: float) -> float:
    """0 below 0, 1 above 1, smooth in between."""
    t = min(1.0, max(0.0, x))
    return t * t * (3 - 2 * t)


@dataclass(frozen=True)
class Outline:
    """Body outline and wall layers of one slice, per polar angle bin (mm)."""

    radius: NDArray[np.float64]
    fat: NDArray[np.float64]
    muscle: NDArray[np.float64]
    rib_zone: float

    def point(self, phi: float, depth: float) -> tuple[float, float]:
        """Body-frame point ``depth`` mm inside the skin along polar angle ``phi``."""
        i = int((phi + math.pi) * ANGLE_BINS / (2 * math.pi)) % ANGLE_BINS
        r = self.radius[i] - depth
        return r * math.cos(phi), r * math.sin(phi)

    def rib_depth(self) -> NDArray[np.float64]:
        """Depth of the rib centre line below the skin, per angle bin."""
        return self.fat + self.muscle + 0.5 * self.rib_zone


@dataclass(frozen=True)
class Trunk:
    """Trunk cross-section: a superellipse with a flat back, padded by fat and muscle."""

    half_width: float
    front: float
    back: float
    n_front: float
    n_back: float
    harmonics: tuple[tuple[int, float, float], ...]
    fat: float
    belly: float  # extra anterior abdominal fat, relative
    muscle: float
    rib_zone: float
    spine_depth_chest: float
    spine_depth_belly: float
    z_chest: float  # at and above: chest shape (T10)
    z_belly: float  # at and below: abdomen shape (L1)
    z_upper: float  # upper chest narrowing ends here (T3)

    def belly_weight(self, z: float) -> float:
        """0 in the chest, 1 in the abdomen."""
        return smoothstep((self.z_chest - z) / max(self.z_chest - self.z_belly, 1.0))

    def outline(self, z: float) -> Outline:
        """Outline tables at slice z."""
        ab = self.belly_weight(z)
        up = smoothstep((self.z_upper - z) / max(self.z_upper - self.z_chest, 1.0))
        a = self.half_width * (0.92 + 0.08 * up)
        front = self.front * (0.95 + 0.05 * up) * (1 + 0.15 * ab * self.belly)
        back = _SIN > 0
        b = np.where(back, self.back, front)
        n = np.where(back, self.n_back, self.n_front + 0.3 * ab)
        r = (np.abs(_COS / a) ** n + np.abs(_SIN / b) ** n) ** (-1.0 / n)
        for k, eps, phase in self.harmonics:
            r = r * (1 + eps * np.cos(k * _PHI + phase))
        anterior = np.maximum(0.0, -_SIN)
        belly = 1 + 1.5 * ab * self.belly
        fat = self.fat * (0.65 + 0.35 * np.abs(_COS) + 0.35 * anterior * belly)
        posterior = np.maximum(0.0, _SIN)
        # Chest: pectorals in front, trapezius/rhomboids/latissimus behind the ribs.
        muscle = (self.muscle * (0.8 + 0.4 * np.abs(_COS)) + 6.0 * anterior * (1 - ab)
                  + 12.0 * posterior**2 * (1 - 0.5 * ab))
        return Outline(radius=r, fat=fat, muscle=muscle, rib_zone=self.rib_zone * (1 - 0.7 * ab))

    def spine_depth(self, z: float) -> float:
        """Depth of the vertebral body centre below the back muscles' surface."""
        ab = self.belly_weight(z)
        return self.spine_depth_chest * (1 - ab) + self.spine_depth_belly * ab


@dataclass(frozen=True)
class Dome:
    """The two diaphragm domes: lung above, abdomen below (z of the surface at u, v)."""

    top_right: float
    top_left: float
    depth: float
    centre_u: float
    centre_v: float
    half_u: float
    half_v: float

    def below(self, u: NDArray[np.float32], v: NDArray[np.float32], z: float) -> NDArray[np.bool_]:
        """True where slice z at (u, v) lies under the diaphragm."""
        top = np.where(u < 0, self.top_right, self.top_left)
        # Gentle across the middle (central tendon under the heart), falling away laterally.
        lateral = np.abs(u) - self.centre_u
        lateral = np.where(lateral > 0, lateral, 0.55 * lateral)
        rho2 = (lateral / self.half_u) ** 2 + (
            (v - self.centre_v) / self.half_v) ** 2
        return z < top - self.depth * rho2  # type: ignore[no-any-return]

    @property
    def lowest(self) -> float:
        """Below this z no lung remains."""
        return min(self.top_right, self.top_left) - 2.5 * self.depth


@dataclass(frozen=True)
class Blob:
    """A z-stacked ellipse: an ellipsoid (power 2) to a cylinder (large power), maybe drifting."""

    name: str
    u: float
    v: float
    z: float
    a: float
    b: float
    c: float
    hu: float
    angle: float = 0.0
    power: float = 2.0
    du_dz: float = 0.0
    dv_dz: float = 0.0
    texture: float = 0.0  # HU amplitude of the coarse texture
    gas: float = 0.0  # anterior share of the lumen filled with gas (air-fluid level)
    bubbles: float | None = None  # texture level above which content is gas (stool)
    spine: bool = False  # centre relative to the vertebral column at each slice
    clip: str = "interior"  # interior | none | below_dome | above_dome

    def section(self, z: float) -> tuple[float, float, float, float] | None:
        """Centre offset and semi-axes of the cross-section at z, or None if z misses it."""
        t = abs(z - self.z) / self.c
        if t >= 1.0:
            return None
        s = (1.0 - t**self.power) ** (1.0 / self.power)
        if min(self.a, self.b) * s < 0.3:
            return None
        dz = z - self.z
        return self.u + self.du_dz * dz, self.v + self.dv_dz * dz, self.a * s, self.b * s


@dataclass(frozen=True)
class TissueHU:
    """Per-study tissue densities (HU)."""

    fat: float
    muscle: float
    lung: float
    cortical: float
    blood: float
    cartilage: float


@dataclass(frozen=True)
class Anatomy:
    """Everything a slice of this patient is drawn from."""

    trunk: Trunk
    spine: Spine
    dome: Dome
    tissue: TissueHU
    blobs: tuple[Blob, ...]
    arms: tuple[Blob, ...] = ()
    table_gap: float | None = 3.0
    extras: dict[str, float] = field(default_factory=dict)
    # Normal variants of the vertebral bodies; None: the plain phantom (one fixed channel).
    variants: tuple[BoneVariant, ...] | None = None

    def spine_centre(self, z: float, outline: Outline | None = None) -> tuple[float, float, float]:
        """Body-frame centre (u, v) of the vertebral column at z and its axial rotation."""
        ol = outline if outline is not None else self.trunk.outline(z)
        back = ol.radius[POSTERIOR_BIN] - ol.fat[POSTERIOR_BIN]
        du, dv, rot = self.spine.offset(z)
        return du, back - self.trunk.spine_depth(z) + dv, rot
