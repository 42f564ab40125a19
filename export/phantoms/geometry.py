"""The pixel grid a phantom slice is drawn on, signed-distance shapes and solid textures.

Lengths are millimetres. The body frame (u, v) is the patient's own axial frame before the
small in-plane rotation of the study: u towards the patient's left, v towards the back
(the DICOM patient x and y axes, PS3.3 C.7.6.2.1.1, rotated by ``angle``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

F32 = NDArray[np.float32]
Window = tuple[slice, slice]
ANGLE_BINS = 720


@dataclass(frozen=True)
class Grid:
    """Pixel centres of one slice in body-frame coordinates, plus polar helpers."""

    rows: int
    cols: int
    spacing: float
    x0: float  # patient x of column 0
    y0: float  # patient y of row 0
    cx: float  # patient x, y of the body-frame origin
    cy: float
    angle: float
    u: F32
    v: F32
    radius: F32  # distance from the body-frame origin
    phi_bin: NDArray[np.intp]  # polar angle atan2(v, u) as an index into ANGLE_BINS
    psi: F32  # angle from the posterior midline, 0 (back) .. pi (front), both sides alike

    def window(self, u: float, v: float, reach: float) -> Window | None:
        """Rows and columns around body-frame point (u, v) out to ``reach`` mm, or None."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        col = (self.cx + c * u - s * v - self.x0) / self.spacing
        row = (self.cy + s * u + c * v - self.y0) / self.spacing
        r = reach / self.spacing + 1.0
        r0, r1 = max(0, math.floor(row - r)), min(self.rows, math.ceil(row + r) + 1)
        c0, c1 = max(0, math.floor(col - r)), min(self.cols, math.ceil(col + r) + 1)
        if r0 >= r1 or c0 >= c1:
            return None
        return slice(r0, r1), slice(c0, c1)

    def to_patient(self, u: float, v: float) -> tuple[float, float]:
        """Body-frame point to patient (x, y)."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        return self.cx + c * u - s * v, self.cy + s * u + c * v

    def to_pixel(self, u: float, v: float) -> tuple[float, float]:
        """Body-frame point to fractional (row, col)."""
        x, y = self.to_patient(u, v)
        return (y - self.y0) / self.spacing, (x - self.x0) / self.spacing


def make_grid(
    rows: int, cols: int, spacing: float, origin: tuple[float, float], centre: tuple[float, float],
    angle: float,
) -> Grid:
    """Grid whose pixel (0, 0) sits at patient ``origin`` and body frame at ``centre``."""
    x = (origin[0] + spacing * np.arange(cols, dtype=np.float64)) - centre[0]
    y = (origin[1] + spacing * np.arange(rows, dtype=np.float64)) - centre[1]
    c, s = math.cos(angle), math.sin(angle)
    u = (c * x[None, :] + s * y[:, None]).astype(np.float32)
    v = (-s * x[None, :] + c * y[:, None]).astype(np.float32)
    phi = np.arctan2(v, u)
    phi_bin = ((phi + math.pi) * (ANGLE_BINS / (2 * math.pi))).astype(np.intp) % ANGLE_BINS
    return Grid(
        rows=rows, cols=cols, spacing=spacing, x0=origin[0], y0=origin[1], cx=centre[0],
        cy=centre[1], angle=angle, u=u, v=v, radius=np.hypot(u, v),
        phi_bin=phi_bin, psi=np.arctan2(np.abs(u), v),
    )


def bin_angles() -> NDArray[np.float64]:
    """Polar angle at the centre of each of the ANGLE_BINS bins."""
    return -math.pi + (np.arange(ANGLE_BINS) + 0.5) * (2 * math.pi / ANGLE_BINS)


def rotate(du: F32, dv: F32, angle: float) -> tuple[F32, F32]:
    """Coordinates in a shape's own axes, the shape being turned by ``angle``."""
    if angle == 0.0:
        return du, dv
    c, s = math.cos(angle), math.sin(angle)
    return c * du + s * dv, -s * du + c * dv


def ellipse_sdf(du: F32, dv: F32, a: float, b: float) -> F32:
    """Signed distance (first order, negative inside) to the ellipse with semi-axes a, b."""
    qu, qv = du / a, dv / b
    q = np.sqrt(qu * qu + qv * qv)
    # |grad q| is homogeneous of degree 0: bounded by 1/max(a, b) .. 1/min(a, b).
    grad = np.sqrt((qu / a) ** 2 + (qv / b) ** 2) / np.maximum(q, 1e-6)
    sdf: F32 = (q - 1.0) / np.maximum(grad, 1.0 / max(a, b))
    return sdf


def capsule_sdf(
    du: F32, dv: F32, p0: tuple[float, float], p1: tuple[float, float], r: float
) -> tuple[F32, F32]:
    """Signed distance to the segment p0-p1 thickened by ``r``, and the segment parameter."""
    eu, ev = p1[0] - p0[0], p1[1] - p0[1]
    length2 = max(eu * eu + ev * ev, 1e-9)
    pu, pv = du - p0[0], dv - p0[1]
    t = np.clip((pu * eu + pv * ev) / length2, 0.0, 1.0)
    sdf: F32 = np.hypot(pu - t * eu, pv - t * ev) - r
    return sdf, t


def slab(sdf: F32, dz: float, half_height: float) -> F32:
    """Cut a 2D shape's signed distance to the z-slab |dz| <= half_height (3D intersection)."""
    return np.maximum(sdf, abs(dz) - half_height)


class Texture:
    """A periodic solid noise block (unit variance), sampled by nearest neighbour."""

    def __init__(self, block: NDArray[np.float32], voxel_mm: float, offset: tuple[int, ...]):
        self.block = block
        self.n = block.shape[0]
        self.voxel_mm = voxel_mm
        self.offset = offset

    def sample(self, u: F32, v: F32, z: float, scale: float = 1.0) -> F32:
        """Noise at body-frame points (u, v) of slice z; ``scale`` stretches the features."""
        inv = 1.0 / (self.voxel_mm * scale)
        n = self.n
        plane = self.block[(math.floor(z * inv) + self.offset[2]) % n]
        iu = (np.floor(u * inv).astype(np.intp) + self.offset[0]) % n
        iv = (np.floor(v * inv).astype(np.intp) + self.offset[1]) % n
        sampled: F32 = plane[iu, iv]
        return sampled


@lru_cache(maxsize=4)
def _noise_block(seed: int, n: int, sigma: float) -> NDArray[np.float32]:
    rng = np.random.default_rng([0x7E27, seed])
    block: NDArray[np.float32] = ndimage.gaussian_filter(
        rng.standard_normal((n, n, n), dtype=np.float32), sigma, mode="wrap")
    block /= block.std()
    block.flags.writeable = False
    return block


def textures(rng: np.random.Generator) -> tuple[Texture, Texture]:
    """A fine (trabecular, ~1.5 mm) and a coarse (organs, ~4 mm) texture for one study."""
    # The blocks are shared between studies (built once per process); offsets vary.
    fine = _noise_block(1, 96, 1.0)
    coarse = _noise_block(2, 96, 3.0)
    offsets = [tuple(int(x) for x in rng.integers(0, 96, 3)) for _ in range(2)]
    return Texture(fine, 0.5, offsets[0]), Texture(coarse, 0.5, offsets[1])
