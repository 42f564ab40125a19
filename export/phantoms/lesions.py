"""Bone metastases with known truth: where they sit, their shape, how they look in HU.

A lesion is an irregular ellipsoid (a few smooth bumps on its surface) centred in a vertebral
body, a pedicle or a rib. Its label is the part of it inside bone, plus up to 1.5 mm of
cortical breach for lytic and mixed lesions. Lytic ones replace bone by soft tissue
(0-100 HU), blastic ones add dense bone (700-1500 HU), mixed ones do both in patches.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from export.phantoms.anatomy import Anatomy
from export.phantoms.geometry import F32, Texture, Window, rotate
from export.phantoms.levels import RIB_ANGLE_PSI
from export.phantoms.spec import LESION_KINDS, LESION_SITES, PhantomSpec
from export.phantoms.trunk import Canvas
from export.phantoms.vertebrae import pedicle_axis, pedicle_z

MIN_DIAMETER_MM = 3.0
MAX_DIAMETER_MM = 40.0
_SITE_WEIGHTS = (0.6, 0.17, 0.23)
_KIND_WEIGHTS = (0.45, 0.35, 0.2)


@dataclass(frozen=True)
class Lesion:
    """One metastasis in the body frame (mm)."""

    id: int
    kind: str
    site: str
    level: str
    u: float
    v: float
    z: float
    a: float
    b: float
    c: float
    angle: float
    bumps: tuple[tuple[float, float, float, float, float], ...]  # ku, kv, kz, phase, amp
    lytic_hu: float
    blastic_hu: float
    breach_mm: float
    mix_level: float

    @property
    def diameter_mm(self) -> float:
        """Diameter of the sphere with the ellipsoid's volume."""
        return float(2.0 * (self.a * self.b * self.c) ** (1.0 / 3.0))

    @property
    def reach(self) -> float:
        return 1.3 * max(self.a, self.b, self.c)

    def field(self, du: F32, dv: F32, dz: float) -> F32:
        """Negative inside the lesion."""
        x, y = rotate(du, dv, self.angle)
        q = np.sqrt((x / self.a) ** 2 + (y / self.b) ** 2 + (dz / self.c) ** 2)
        for ku, kv, kz, phase, amp in self.bumps:
            q = q - amp * np.cos(ku * x + kv * y + kz * dz + phase)
        return q - 1.0  # type: ignore[no-any-return]


def place_lesions(spec: PhantomSpec, anatomy: Anatomy, rng: np.random.Generator,
                  slice_z: NDArray[np.float64],
                  visible: Callable[[float, float], bool] = lambda u, v: True) -> list[Lesion]:
    """Up to ``spec.n_lesions`` non-overlapping lesions, each centred on a slice and in view."""
    lesions: list[Lesion] = []
    for _ in range(40 * spec.n_lesions):
        if len(lesions) == spec.n_lesions:
            break
        site = spec.lesion_site if spec.lesion_site != "any" else str(
            rng.choice(LESION_SITES, p=_SITE_WEIGHTS))
        z = float(rng.choice(slice_z))
        found = _SITES[site](anatomy, rng, z)
        if found is None:
            continue
        (u, v), level, d_max = found
        if not visible(u, v):
            continue
        lesion = _shape(spec, rng, len(lesions) + 1, site, level, (u, v, z), d_max, slice_z)
        if all(_apart(lesion, other) for other in lesions):
            lesions.append(lesion)
    return lesions


def _apart(a: Lesion, b: Lesion) -> bool:
    return math.dist((a.u, a.v, a.z), (b.u, b.v, b.z)) > a.reach + b.reach + 2.0


def _vertebral_body(anatomy: Anatomy, rng: np.random.Generator,
                    z: float) -> tuple[tuple[float, float], str, float] | None:
    vb = next((v for v in anatomy.spine.vertebrae
               if v.z_bottom + 0.12 * v.height <= z <= v.z_top - 0.12 * v.height), None)
    if vb is None:
        return None
    x, y = vb.rx * rng.uniform(-0.5, 0.5), vb.ry * rng.uniform(-0.45, 0.5)
    return _column_to_body(anatomy, z, x, y), vb.name, 2.2 * vb.rx


def _pedicle(anatomy: Anatomy, rng: np.random.Generator,
             z: float) -> tuple[tuple[float, float], str, float] | None:
    vb = next((v for v in anatomy.spine.vertebrae
               if pedicle_z(v)[0] + 1 <= z <= pedicle_z(v)[1] - 1), None)
    if vb is None:
        return None
    p0, p1 = pedicle_axis(vb, 1 if rng.random() < 0.5 else -1)
    t = rng.uniform(0.3, 0.8)
    x, y = p0[0] + t * (p1[0] - p0[0]), p0[1] + t * (p1[1] - p0[1])
    return _column_to_body(anatomy, z, x, y), vb.name, min(16.0, 4.0 * vb.pedicle_r)


def _rib(anatomy: Anatomy, rng: np.random.Generator,
         z: float) -> tuple[tuple[float, float], str, float] | None:
    side = 1 if rng.random() < 0.5 else -1
    hits = [(rib, rib.psi_at(z, side)) for rib in anatomy.spine.ribs]
    hits = [(rib, psi) for rib, psi in hits
            if psi is not None and RIB_ANGLE_PSI + 0.1 < psi < rib.psi_bone_end - 0.1]
    if not hits:
        return None
    rib, psi = hits[int(rng.integers(len(hits)))]
    assert psi is not None
    outline = anatomy.trunk.outline(z)
    phi = math.atan2(math.cos(psi), side * math.sin(psi))
    i = int((phi + math.pi) * len(outline.radius) / (2 * math.pi)) % len(outline.radius)
    point = outline.point(phi, float(outline.rib_depth()[i]))
    return point, f"rib {'L' if side > 0 else 'R'}{rib.number}", 20.0


_SITES = {"vertebral_body": _vertebral_body, "pedicle": _pedicle, "rib": _rib}


def _column_to_body(anatomy: Anatomy, z: float, x: float, y: float) -> tuple[float, float]:
    su, sv, rot = anatomy.spine_centre(z)
    c, s = math.cos(rot), math.sin(rot)
    return su + c * x - s * y, sv + s * x + c * y


def _shape(spec: PhantomSpec, rng: np.random.Generator, lesion_id: int, site: str, level: str,
           centre: tuple[float, float, float], d_max: float,
           slice_z: NDArray[np.float64]) -> Lesion:
    d_max = max(MIN_DIAMETER_MM, min(MAX_DIAMETER_MM, d_max))
    d = math.exp(rng.uniform(math.log(MIN_DIAMETER_MM), math.log(d_max)))
    axes = rng.uniform(0.75, 1.25, 3)
    axes *= (d / 2) / float(np.prod(axes)) ** (1 / 3)
    a, b, c = (float(x) for x in axes)
    kind = spec.lesion_kind if spec.lesion_kind != "any" else str(
        rng.choice(LESION_KINDS, p=_KIND_WEIGHTS))
    bumps = tuple(
        (*(rng.normal(0, 1, 3) * (2.5 / max(d / 2, 1.5))), rng.uniform(0, 2 * math.pi),
         rng.uniform(0.03, 0.09))
        for _ in range(4)
    )
    # Off the slice centre by less than a quarter of its half-height: the slice samples it.
    u, v, z = centre
    z += rng.uniform(-0.25, 0.25) * min(c, spec.slice_spacing_mm)
    return Lesion(
        id=lesion_id, kind=kind, site=site, level=level, u=u, v=v, z=z, a=a, b=b, c=c,
        angle=rng.uniform(0, math.pi), bumps=bumps,
        lytic_hu=rng.uniform(15, 75), blastic_hu=rng.uniform(800, 1300),
        breach_mm=0.0 if kind == "blastic" else rng.uniform(0, 1.5),
        mix_level=rng.uniform(-0.4, 0.4),
    )


def _breached(bone: NDArray[np.bool_], radius_px: float) -> NDArray[np.bool_]:
    """The slice's bone grown by the cortical breach, in plane (never into a disc slice)."""
    if radius_px < 0.5 or not bone.any():
        return bone
    r = int(radius_px)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    grown: NDArray[np.bool_] = ndimage.binary_dilation(bone, xx * xx + yy * yy <= radius_px**2)
    return grown


def paint_lesions(canvas: Canvas, lesions: list[Lesion], fine: Texture,
                  coarse: Texture) -> list[tuple[int, Window, NDArray[np.bool_]]]:
    """Paint each lesion's HU into the slice; return (id, window, label) where it is present."""
    found = []
    g = canvas.grid
    for lesion in lesions:
        dz = canvas.z - lesion.z
        if abs(dz) > lesion.reach:
            continue
        win = g.window(lesion.u, lesion.v, lesion.reach)
        if win is None:
            continue
        u, v = g.u[win], g.v[win]
        inside = lesion.field(u - lesion.u, v - lesion.v, dz) < 0
        bone_sdf = canvas.bone_sdf[win]
        label = inside & _breached(bone_sdf < 0, lesion.breach_mm / g.spacing)
        if not label.any():
            continue
        hu = canvas.hu[win]
        lytic = np.full(label.shape, lesion.lytic_hu, np.float32) + 12.0 * coarse.sample(
            u, v, canvas.z, 0.5)
        blastic = np.maximum(hu, lesion.blastic_hu + 110.0 * fine.sample(u, v, canvas.z))
        # Lytic bone loss breaks the cortex in patches only; elsewhere the shell survives.
        cortex = (bone_sdf < 0) & (bone_sdf > -canvas.cortex[win])
        intact = cortex & (coarse.sample(v, u, canvas.z, 0.4) < 0.3)
        lytic = np.where(intact, hu, lytic)
        if lesion.kind == "lytic":
            value = lytic
        elif lesion.kind == "blastic":
            value = np.where(bone_sdf < 0, blastic, hu)
        else:
            patches = coarse.sample(u + 17.0, v - 11.0, canvas.z, 0.6) > lesion.mix_level
            value = np.where(patches | (bone_sdf >= 0), lytic, blastic)
        hu[label] = value[label]
        found.append((lesion.id, win, label))
    return found
