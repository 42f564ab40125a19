"""The spine and ribs of one phantom: vertebral levels along z, their sizes, curvature, ribs.

Patient z grows towards the head (PS3.3 C.7.6.2.1.1), so vertebra C6 has the highest z and
S2 the lowest. Sizes follow adult averages, scaled per study.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from export.phantoms.spec import MARROW_HU

NAMES = ("C6", "C7", *(f"T{i}" for i in range(1, 13)), *(f"L{i}" for i in range(1, 6)), "S1", "S2")
_ANCHORS = {  # level index: height, disc below, body rx, body ry, canal rx, canal ry, pedicle r
    0: (13, 5.0, 11, 8.0, 11.0, 7.0, 2.5),
    2: (15, 3.5, 14, 10.0, 8.5, 7.0, 3.2),
    7: (18, 4.5, 16.5, 13.0, 7.5, 7.5, 3.4),
    13: (22, 7.0, 22, 15.5, 8.0, 8.0, 4.2),
    14: (24, 8.0, 23, 16.0, 9.5, 8.0, 4.6),
    16: (26, 10.0, 25.5, 17.0, 11.0, 8.5, 5.2),
    18: (26, 11.0, 27, 18.0, 12.0, 9.0, 6.0),
    19: (28, 2.0, 25, 16.5, 12.0, 7.0, 6.0),
    20: (25, 2.0, 21, 14.0, 10.0, 6.0, 5.0),
}
# Per rib: z drop from head to front (mm), angle psi where bone ends, where cartilage ends.
_RIBS = {  # the drop is reached where the bone ends; the cartilage then runs level
    1: (28, 2.55, 2.95), 2: (50, 2.55, 2.98), 3: (70, 2.55, 3.0), 4: (82, 2.55, 3.0),
    5: (92, 2.5, 3.0), 6: (98, 2.45, 2.95), 7: (100, 2.4, 2.85), 8: (96, 2.35, 2.65),
    9: (90, 2.3, 2.5), 10: (80, 2.25, 2.4), 11: (60, 1.8, 1.8), 12: (42, 1.45, 1.45),
}
RIB_ANGLE_PSI = 0.55  # where the rib neck meets the ring (angle of the rib), from the back


@dataclass(frozen=True)
class Vertebra:
    """One vertebra: body extent along z, body and canal semi-axes (mm), marrow density."""

    name: str
    z_top: float
    z_bottom: float
    disc_below: float
    rx: float
    ry: float
    canal_rx: float
    canal_ry: float
    pedicle_r: float
    marrow_hu: float
    osteophyte: float
    vacuum_disc: bool

    @property
    def height(self) -> float:
        return self.z_top - self.z_bottom

    @property
    def z_mid(self) -> float:
        return 0.5 * (self.z_top + self.z_bottom)

    @property
    def lumbar(self) -> bool:
        return self.name[0] in "LS"


@dataclass(frozen=True)
class Rib:
    """One rib (both sides): head height, how far it drops, where bone and cartilage end."""

    number: int
    z_head: float
    drop: float
    psi_bone_end: float
    psi_cartilage_end: float
    half_thickness: float
    half_height: float
    side_shift: float  # z of the left rib minus z of the right rib

    def z_at(self, psi: ArrayLike, side: ArrayLike) -> NDArray[np.float64]:
        """Centre z of the rib at ring angle psi (from the back); side -1 right, +1 left."""
        w = np.clip((np.asarray(psi) - RIB_ANGLE_PSI) / (self.psi_bone_end - RIB_ANGLE_PSI),
                    0.0, 1.0)
        shift = 0.5 * self.side_shift * np.asarray(side, dtype=np.float64)
        return self.z_head - 4.0 - self.drop * w**1.15 + shift

    def psi_at(self, z: float, side: float) -> float | None:
        """Inverse of :meth:`z_at` on the bony ring, or None when z is off this rib."""
        drop = self.z_head - 4.0 + 0.5 * self.side_shift * side - z
        if drop < 0 or drop > self.drop:
            return None
        span = self.psi_bone_end - RIB_ANGLE_PSI
        return float(RIB_ANGLE_PSI + (drop / self.drop) ** (1 / 1.15) * span)


@dataclass(frozen=True)
class Spine:
    """Vertebrae (cranial first), ribs and the curvature of the column."""

    vertebrae: tuple[Vertebra, ...]
    ribs: tuple[Rib, ...]
    lateral_mm: float  # scoliosis amplitude
    ap_mm: float  # extra kyphosis/lordosis amplitude
    wavelength_mm: float
    phase: float
    twist: float  # axial rotation (rad) per unit of lateral slope

    def offset(self, z: float) -> tuple[float, float, float]:
        """Lateral shift, AP shift (mm) and axial rotation (rad) of the column at z."""
        arg = 2 * math.pi * z / self.wavelength_mm + self.phase
        return (
            self.lateral_mm * math.sin(arg),
            self.ap_mm * math.sin(0.7 * arg + 1.0),
            self.twist * math.cos(arg),
        )

    def near(self, z: float) -> list[Vertebra]:
        """Vertebrae whose body or posterior elements can reach slice z."""
        return [
            vb for vb in self.vertebrae
            if vb.z_bottom - vb.disc_below - 1.6 * vb.height <= z <= vb.z_top + 3.0
        ]

    def level_at(self, z: float) -> str:
        """Name of the vertebra at z (a disc counts to the vertebra above it)."""
        return self.at(z).name

    def at(self, z: float) -> Vertebra:
        """The vertebra at z (a disc counts to the vertebra above it)."""
        return next((vb for vb in self.vertebrae if z >= vb.z_bottom - vb.disc_below),
                    self.vertebrae[-1])

    def by_name(self, name: str) -> Vertebra:
        return next(vb for vb in self.vertebrae if vb.name == name)


def build_spine(rng: np.random.Generator, z_t1_top: float, scale: float,
                marrow_hu: tuple[float, float] = MARROW_HU) -> Spine:
    """Draw one patient's spine, with T1's top endplate at ``z_t1_top``.

    ``marrow_hu`` is the range of the patient's trabecular density; each vertebra varies
    by up to 20 HU around the patient's draw.
    """
    idx = np.arange(len(NAMES))
    keys = sorted(_ANCHORS)
    table = np.array([[np.interp(i, keys, [_ANCHORS[k][j] for k in keys]) for j in range(7)]
                      for i in idx])
    height_scale = scale ** 0.3 * rng.uniform(0.93, 1.07)
    width_scale = scale ** 0.3 * rng.uniform(0.93, 1.08)
    marrow = rng.uniform(*marrow_hu)
    degeneration = rng.uniform(0, 1) ** 2
    z = z_t1_top + sum(table[i, 0] + table[i, 1] for i in range(2)) * height_scale
    vertebrae = []
    for i, name in enumerate(NAMES):
        h, disc, rx, ry, crx, cry, pr = table[i] * rng.uniform(0.97, 1.03, 7)
        h, disc = h * height_scale, disc * height_scale
        vertebrae.append(Vertebra(
            name=name, z_top=z, z_bottom=z - h, disc_below=disc,
            rx=rx * width_scale, ry=ry * width_scale, canal_rx=crx, canal_ry=cry,
            pedicle_r=pr * width_scale, marrow_hu=marrow + rng.uniform(-20, 20),
            osteophyte=degeneration * rng.uniform(0, 4) if i > 8 else 0.0,
            vacuum_disc=bool(rng.random() < 0.25 * degeneration and i > 10),
        ))
        z -= h + disc
    return Spine(
        vertebrae=tuple(vertebrae),
        ribs=_build_ribs(rng, vertebrae, height_scale),
        lateral_mm=rng.uniform(0, 1) ** 2 * 12.0,
        ap_mm=rng.uniform(0, 6),
        wavelength_mm=rng.uniform(300, 600),
        phase=rng.uniform(0, 2 * math.pi),
        twist=rng.uniform(-0.08, 0.08),
    )


def _build_ribs(
    rng: np.random.Generator, vertebrae: list[Vertebra], height_scale: float
) -> tuple[Rib, ...]:
    ribs = []
    for number, (drop, bone_end, cart_end) in _RIBS.items():
        vb = vertebrae[NAMES.index(f"T{number}")]
        jitter = rng.uniform(-0.05, 0.05)
        ribs.append(Rib(
            number=number, z_head=vb.z_top + 1.0, drop=drop * height_scale * rng.uniform(0.9, 1.1),
            psi_bone_end=bone_end + jitter, psi_cartilage_end=cart_end + jitter,
            half_thickness=rng.uniform(3.2, 4.2), half_height=rng.uniform(5.0, 6.5) + (number == 1),
            side_shift=rng.uniform(-3, 3),
        ))
    return tuple(ribs)
