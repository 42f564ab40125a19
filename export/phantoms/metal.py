"""Metal in the spine: titanium pedicle screws and rods, with the streaks they cause.

Beam hardening and photon starvation along rays through two pieces of metal leave a dark band
between them; scatter and edge effects leave bright and dark streaks radiating from each piece.
Both are drawn in image space (a filtered back-projection would cost more than the whole
phantom): a band along each line joining two pieces, and a few narrow lobes of random sign
around each piece, fading with distance.

The fixation spans two or three adjacent vertebrae the slices show, free of metastases where
the slices allow; where they do not (fixation is often done for a metastasis), the pixels a
screw takes are metal, and the label is cleared there: the tumour is where the label is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from export.phantoms.anatomy import Anatomy
from export.phantoms.geometry import F32, capsule_sdf
from export.phantoms.lesions import Lesion
from export.phantoms.levels import Vertebra
from export.phantoms.trunk import Canvas
from export.phantoms.vertebrae import canal_centre, pedicle_axis, pedicle_z, to_body

Point = tuple[float, float]


@dataclass(frozen=True)
class Fixation:
    """Screws in both pedicles of each level, joined by a rod on each side."""

    levels: tuple[Vertebra, ...]
    screw_r: float  # mm
    rod_r: float
    hu: float  # of titanium as reconstructed: at the scanner's ceiling
    band_hu: float  # depth of the dark band between two pieces
    streak_hu: float  # amplitude of the radiating streaks

    @property
    def z_range(self) -> tuple[float, float]:
        """Lowest and highest z of the rods."""
        zs = [_screw_z(vb) for vb in self.levels]
        return min(zs) - 4.0, max(zs) + 4.0


def _screw_z(vb: Vertebra) -> float:
    low, high = pedicle_z(vb)
    return 0.5 * (low + high)


def plan_fixation(anatomy: Anatomy, lesions: list[Lesion], slice_z: NDArray[np.float64],
                  rng: np.random.Generator) -> Fixation | None:
    """Two or three adjacent levels seen by the slices, lesion-free ones first; None if the
    slices show no pedicle level."""
    count = 2 + int(rng.random() < 0.5)
    screw_r, rod_r = rng.uniform(2.7, 3.5), rng.uniform(2.5, 3.0)
    band, streak, pick = rng.uniform(120, 320), rng.uniform(60, 180), rng.random()
    taken = {les.level for les in lesions}
    z0, z1 = float(slice_z.min()), float(slice_z.max())
    vertebrae = anatomy.spine.vertebrae
    runs = [vertebrae[i:i + count] for i in range(len(vertebrae) - count + 1)]
    runs = [run for run in runs if any(z0 <= _screw_z(vb) <= z1 for vb in run)]
    runs = [run for run in runs if not taken & {vb.name for vb in run}] or runs
    if not runs:
        return None
    return Fixation(levels=tuple(runs[int(pick * len(runs))]), screw_r=screw_r, rod_r=rod_r,
                    hu=3071.0, band_hu=band, streak_hu=streak)


def _screw(vb: Vertebra, side: int) -> tuple[Point, Point, Point]:
    """Head, entry and tip of one screw in the column frame: in at the back of the pedicle,
    converging towards the midline, its tip short of the body's front cortex."""
    _, entry = pedicle_axis(vb, side)
    tip = (side * 0.3 * vb.rx, -0.5 * vb.ry)
    dx, dy = entry[0] - tip[0], entry[1] - tip[1]
    norm = math.hypot(dx, dy)
    head = (entry[0] + dx / norm * 7.0, entry[1] + dy / norm * 7.0)
    return head, entry, tip


def paint_fixation(canvas: Canvas, fix: Fixation,
                   rng: np.random.Generator) -> NDArray[np.bool_] | None:
    """Draw the metal of this slice and its streaks into ``canvas.hu``; the metal's pixels."""
    g = canvas.grid
    metal = np.zeros(canvas.hu.shape, bool)
    near = g.window(canvas.spine[0], canvas.spine[1], 90.0)
    if near is None:
        return None
    pieces: list[Point] = []
    for vb in fix.levels:
        dz = canvas.z - _screw_z(vb)
        if abs(dz) >= fix.screw_r:
            continue
        half = math.sqrt(fix.screw_r ** 2 - dz * dz)
        for side in (-1, 1):
            head, _, tip = _screw(vb, side)
            p0, p1 = to_body(canvas, *head), to_body(canvas, *tip)
            sdf, _ = capsule_sdf(g.u[near], g.v[near], p0, p1, half)
            metal[near] |= sdf < 0
            pieces.append(((p0[0] + p1[0]) / 2, (p0[1] + p1[1]) / 2))
    low, high = fix.z_range
    if low <= canvas.z <= high:
        for side in (-1, 1):
            vb = min(fix.levels, key=lambda v: abs(_screw_z(v) - canvas.z))
            head, _, _ = _screw(vb, side)
            centre = to_body(canvas, head[0], max(head[1], canal_centre(vb)) + 1.0)
            metal[near] |= np.hypot(g.u[near] - centre[0], g.v[near] - centre[1]) < fix.rod_r
            pieces.append(centre)
    if not pieces:
        return None
    # Streaks vary slowly across them: drawn on pixels of about 1.5 mm, then interpolated.
    step = max(1, round(1.5 / g.spacing))
    coarse = _streaks(g.u[::step, ::step], g.v[::step, ::step], pieces, fix, rng)
    rows, cols = canvas.hu.shape
    canvas.hu += ndimage.zoom(coarse, step, order=1, grid_mode=True, mode="nearest")[:rows, :cols]
    canvas.hu[metal] = fix.hu
    return metal


def _streaks(u: F32, v: F32, pieces: list[Point], fix: Fixation,
             rng: np.random.Generator) -> F32:
    field = np.zeros(u.shape, np.float32)
    for i, (ua, va) in enumerate(pieces):
        for ub, vb in pieces[i + 1:]:
            length = math.hypot(ub - ua, vb - va)
            if length < 1.0:
                continue
            nu, nv = (ub - ua) / length, (vb - va) / length
            across = np.abs((u - ua) * nv - (v - va) * nu)
            along = (u - ua) * nu + (v - va) * nv
            beyond = np.maximum(np.maximum(-along, along - length), 0.0)
            field -= np.float32(fix.band_hu) * np.exp(-(across / 3.0) ** 2 - beyond / 60.0)
    for ua, va in pieces:
        theta = np.arctan2(v - va, u - ua)
        fade = 10.0 / (10.0 + np.hypot(u - ua, v - va))
        for angle, sign in zip(rng.uniform(0, math.pi, 4), rng.choice((-1.0, 1.0), 4),
                               strict=True):
            off = np.mod(theta - angle + math.pi / 2, math.pi) - math.pi / 2
            field += np.float32(sign * fix.streak_hu) * np.exp(-(off / 0.025) ** 2) * fade
    return field
