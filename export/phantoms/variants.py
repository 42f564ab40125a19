"""Normal variants of vertebral bone that look like metastases: the mimics a reader dismisses.

A network that has only seen uniform marrow marks every dark or dense spot in a vertebral
body. Real spines are full of normal ones, none of them labelled as metastasis:

- the **basivertebral venous channel**: a lucent cleft from the back of the body towards its
  centre at mid-height, of varying size, often branching (Y-shaped) in front;
- **bone islands** (enostoses): small round foci of compact bone, 2-9 mm, as dense as a
  blastic metastasis;
- **haemangiomas**: fat-density marrow crossed by thickened vertical trabeculae, which axial
  slices show as dots ("polka-dot" sign);
- **Schmorl's nodes**: disc material herniated through an endplate, a lucency with a thin
  sclerotic rim;
- **focal fatty marrow**: a patch of fat-density marrow, common in older patients.

They are drawn from their own random stream (``[seed, 4]``), so a phantom with variants is
the same patient, scanner and lesions as the one without: the difference in false findings
between the two is what the variants cost a model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from export.phantoms.geometry import F32, capsule_sdf, ellipse_sdf
from export.phantoms.levels import Spine, Vertebra

VARIANT_KINDS = ("basivertebral_channel", "bone_island", "haemangioma", "schmorl_node",
                 "fatty_marrow")
# Chance per vertebra; the basivertebral channel is in every vertebra and only varies.
_CHANCE = {"bone_island": 0.07, "haemangioma": 0.06, "schmorl_node": 0.08, "fatty_marrow": 0.1}


@dataclass(frozen=True)
class BoneVariant:
    """One normal variant in a vertebral body, in its column frame (mm, y to the back)."""

    kind: str
    level: str
    x: float
    y: float
    z: float  # patient z of the centre
    rx: float  # in-plane semi-axes and half-height
    ry: float
    rz: float
    hu: float  # marrow HU inside (trabecular texture is added on top)
    rim_hu: float = 0.0  # sclerotic rim (Schmorl's node) or trabecular dots (haemangioma)
    branch: float = 0.0  # basivertebral channel: angle of its two front branches, 0 = none
    pitch: float = 0.0  # haemangioma: spacing of the vertical trabeculae
    into: int = 0  # Schmorl's node: -1 down from the top endplate, +1 up from the bottom one

    @property
    def diameter_mm(self) -> float:
        """Largest in-plane diameter."""
        return float(2.0 * max(self.rx, self.ry))

    @property
    def z_range(self) -> tuple[float, float]:
        """Lowest and highest patient z it reaches."""
        if self.kind == "schmorl_node":
            end = self.z + self.into * self.rz
            return min(self.z, end), max(self.z, end)
        return self.z - self.rz, self.z + self.rz


def draw_variants(spine: Spine, rng: np.random.Generator) -> tuple[BoneVariant, ...]:
    """Every vertebra's normal variants."""
    variants: list[BoneVariant] = []
    for vb in spine.vertebrae:
        variants.append(_channel(vb, rng))
        for kind, chance in _CHANCE.items():
            if rng.random() < chance:
                variants.append(_DRAW[kind](vb, rng))
    return tuple(variants)


def _between(rng: np.random.Generator, low: float, high: float) -> float:
    """Uniform in [low, high]; just ``low`` where a small vertebra leaves no room."""
    return float(rng.uniform(low, max(low, high)))


def _inside(vb: Vertebra, rng: np.random.Generator, margin: float,
            half_height: float) -> tuple[float, float, float]:
    """A centre in the body, ``margin`` mm from its walls and ``half_height`` from its ends."""
    x = rng.uniform(-1, 1) * max(vb.rx - margin, 0.0) * 0.75
    y = rng.uniform(-1, 1) * max(vb.ry - margin, 0.0) * 0.7
    z = vb.z_mid + rng.uniform(-1, 1) * max(0.5 * vb.height - half_height - 0.5, 0.0)
    return x, y, z


def _channel(vb: Vertebra, rng: np.random.Generator) -> BoneVariant:
    rx, ry = rng.uniform(1.2, 3.2), _between(rng, 2.5, 0.45 * vb.ry)
    return BoneVariant(
        kind="basivertebral_channel", level=vb.name, x=rng.uniform(-1.5, 1.5),
        y=vb.ry - 0.8 * ry - 0.5, z=vb.z_mid + rng.uniform(-1.5, 1.5), rx=rx, ry=ry,
        rz=_between(rng, 1.5, 0.22 * vb.height), hu=rng.uniform(20, 100),
        branch=rng.uniform(0.45, 0.9) if rng.random() < 0.35 else 0.0,
    )


def _bone_island(vb: Vertebra, rng: np.random.Generator) -> BoneVariant:
    r = rng.uniform(1.0, 4.5)
    a, b, c = r * rng.uniform(0.8, 1.2, 3)
    x, y, z = _inside(vb, rng, r + 1.5, c)
    return BoneVariant(kind="bone_island", level=vb.name, x=x, y=y, z=z, rx=a, ry=b, rz=c,
                       hu=rng.uniform(700, 1150))


def _haemangioma(vb: Vertebra, rng: np.random.Generator) -> BoneVariant:
    r = _between(rng, 4.0, min(10.0, 0.55 * vb.ry))
    rz = min(r * rng.uniform(1.0, 1.4), 0.45 * vb.height)
    x, y, z = _inside(vb, rng, r + 1.0, rz)
    return BoneVariant(kind="haemangioma", level=vb.name, x=x, y=y, z=z, rx=r, ry=r,
                       rz=rz, hu=rng.uniform(-40, 20),
                       rim_hu=rng.uniform(380, 600), pitch=rng.uniform(2.8, 4.0))


def _schmorl_node(vb: Vertebra, rng: np.random.Generator) -> BoneVariant:
    r = rng.uniform(2.5, 6.0)
    top = rng.random() < 0.5
    x = rng.uniform(-0.4, 0.4) * vb.rx
    y = rng.uniform(-0.5, 0.3) * vb.ry
    return BoneVariant(kind="schmorl_node", level=vb.name, x=x, y=y,
                       z=vb.z_top if top else vb.z_bottom, rx=r, ry=r * rng.uniform(0.7, 1.0),
                       rz=rng.uniform(2.0, 5.0), hu=rng.uniform(60, 100),
                       rim_hu=rng.uniform(400, 600), into=-1 if top else 1)


def _fatty_marrow(vb: Vertebra, rng: np.random.Generator) -> BoneVariant:
    r = _between(rng, 3.0, min(9.0, 0.5 * vb.ry))
    a, b = r * rng.uniform(0.7, 1.3, 2)
    c = min(r * rng.uniform(0.7, 1.3), 0.45 * vb.height)
    x, y, z = _inside(vb, rng, r + 1.0, c)
    return BoneVariant(kind="fatty_marrow", level=vb.name, x=x, y=y, z=z, rx=a, ry=b, rz=c,
                       hu=rng.uniform(-80, -10))


_DRAW = {"bone_island": _bone_island, "haemangioma": _haemangioma,
         "schmorl_node": _schmorl_node, "fatty_marrow": _fatty_marrow}


def variant_marrow(variant: BoneVariant, x: F32, y: F32,
                   z: float) -> tuple[NDArray[np.bool_], F32, NDArray[np.bool_]] | None:
    """Where the variant is on slice ``z`` (column-frame pixels x, y), its marrow HU there,
    and where it breaks the cortex (a Schmorl's node through its endplate, the channel
    through the back wall).

    None when the slice misses it.
    """
    dz = z - variant.z
    if variant.kind == "schmorl_node":
        # A dome pushed into the body through the endplate, deepest at its centre.
        t = dz * variant.into / variant.rz
        if not 0.0 <= t < 1.0:
            return None
        scale = math.sqrt(1.0 - t * t)
        sdf = ellipse_sdf(x - variant.x, y - variant.y, variant.rx * scale, variant.ry * scale)
        node = sdf < 0
        value = np.where(node, np.float32(variant.hu), np.float32(variant.rim_hu))
        return sdf < 1.0, value.astype(np.float32), node
    t = abs(dz) / variant.rz
    if t >= 1.0:
        return None
    scale = math.sqrt(1.0 - t * t)
    none = np.zeros(x.shape, bool)
    if variant.kind == "basivertebral_channel":
        # A cleft of constant depth, thinning towards its top and bottom.
        sdf = ellipse_sdf(x - variant.x, y - variant.y, variant.rx * scale, variant.ry)
        if variant.branch:
            front = (variant.x, variant.y - 0.8 * variant.ry)
            length = 1.4 * variant.ry
            for side in (-1, 1):
                end = (front[0] + side * length * math.sin(variant.branch),
                       front[1] - length * math.cos(variant.branch))
                arm, _ = capsule_sdf(x, y, front, end, 0.55 * variant.rx * scale)
                sdf = np.minimum(sdf, arm)
        # It opens through the back wall of the body into the spinal canal.
        return sdf < 0, np.full(x.shape, variant.hu, np.float32), sdf < 0
    sdf = ellipse_sdf(x - variant.x, y - variant.y, variant.rx * scale, variant.ry * scale)
    if variant.kind == "haemangioma":
        # Thickened vertical trabeculae on a slightly sheared lattice: dots on every slice.
        p = variant.pitch
        gx = (x - variant.x) / p + 0.3 * (y - variant.y) / p
        gy = (y - variant.y) / p
        dot = np.hypot(gx - np.round(gx), gy - np.round(gy)) * p < 0.75
        value = np.where(dot, np.float32(variant.rim_hu), np.float32(variant.hu))
        return sdf < 0, value.astype(np.float32), none
    return sdf < 0, np.full(x.shape, variant.hu, np.float32), none
