"""Draw the soft tissue of one slice: table, skin, fat, muscle, lungs and organ blobs (HU)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from export.phantoms.anatomy import Anatomy, Blob, Outline
from export.phantoms.geometry import F32, Grid, Texture, Window, rotate
from export.phantoms.levels import RIB_ANGLE_PSI

AIR_HU = -1000.0


@dataclass
class Canvas:
    """One slice being drawn: HU, bone signed distance, cortex thickness and marrow HU."""

    z: float
    grid: Grid
    outline: Outline
    spine: tuple[float, float, float]  # column centre u, v and axial rotation
    hu: F32
    bone_sdf: F32
    cortex: F32
    marrow: F32
    depth: F32  # mm below the skin, negative outside the body
    interior: NDArray[np.bool_]  # inside the rib cage / abdominal wall
    posterior: NDArray[np.bool_]  # the paraspinal muscle compartment


def new_canvas(grid: Grid, anatomy: Anatomy, z: float) -> Canvas:
    """A blank slice at z with the body outline evaluated."""
    outline = anatomy.trunk.outline(z)
    spine = anatomy.spine_centre(z, outline)
    bins = grid.phi_bin
    depth = outline.radius.astype(np.float32)[bins] - grid.radius
    wall = (outline.fat + outline.muscle).astype(np.float32)[bins]
    interior = depth > wall + outline.rib_zone
    shape = (grid.rows, grid.cols)
    canvas = Canvas(
        z=z, grid=grid, outline=outline, spine=spine, hu=np.full(shape, AIR_HU, np.float32),
        bone_sdf=np.full(shape, 1e3, np.float32), cortex=np.zeros(shape, np.float32),
        marrow=np.zeros(shape, np.float32), depth=depth, interior=interior,
        posterior=np.zeros(shape, bool),
    )
    vb = anatomy.spine.at(z)
    canvas.posterior = (depth > wall) & _behind_rib_necks(canvas, vb.rx, vb.ry)
    return canvas


def rib_angle_point(outline: Outline, side: int) -> tuple[float, float]:
    """Body-frame point of the angle of the rib (where the neck meets the ring) on one side."""
    phi = math.atan2(math.cos(RIB_ANGLE_PSI), side * math.sin(RIB_ANGLE_PSI))
    i = int((phi + math.pi) * len(outline.radius) / (2 * math.pi)) % len(outline.radius)
    return outline.point(phi, float(outline.rib_depth()[i]))


def rib_tubercle(rx: float, ry: float, side: int) -> tuple[float, float]:
    """Column-frame point where the rib neck meets the transverse process (tubercle)."""
    return side * (rx + 13.0), ry + 6.0


def _behind_rib_necks(canvas: Canvas, rx: float, ry: float) -> NDArray[np.bool_]:
    """Pixels behind the line from the vertebral body past the tubercle to the rib angle."""
    su, sv, _ = canvas.spine
    gu, gv = rib_angle_point(canvas.outline, 1)
    tx, ty = rib_tubercle(rx, ry, 1)
    behind = np.zeros(canvas.hu.shape, bool)
    reach = max(gu - su, canvas.outline.radius.max() - sv) + 2
    win = canvas.grid.window(su, sv, reach)
    if win is None:
        return behind
    au = np.abs(canvas.grid.u[win] - su)
    limit = np.interp(au, [0.0, rx + 2.0, tx, gu - su, gu - su + 1.0],
                      [sv, sv + 0.3 * ry, sv + ty, gv, 1e4])
    behind[win] = canvas.grid.v[win] > limit
    return behind


def paint_soft_tissue(canvas: Canvas, anatomy: Anatomy, coarse: Texture) -> None:
    """Table, body wall, lungs and organs, in that order."""
    if anatomy.table_gap is not None:
        _paint_table(canvas, anatomy.table_gap)
    _paint_body_wall(canvas, anatomy)
    _paint_mesentery(canvas, anatomy, coarse)
    for blob in anatomy.arms:
        paint_blob(canvas, anatomy, blob, coarse)
    if canvas.z > anatomy.dome.lowest:
        _paint_lungs(canvas, anatomy, coarse)
    canvas.hu[canvas.posterior] = anatomy.tissue.muscle
    for blob in anatomy.blobs:
        paint_blob(canvas, anatomy, blob, coarse)


def _paint_table(canvas: Canvas, gap: float) -> None:
    """The couch: two thin carbon shells around foam, curved, under the patient."""
    g = canvas.grid
    ol = canvas.outline
    lowest = g.cy + float(ol.radius[len(ol.radius) // 4 * 3]) + gap
    r0 = max(0, int((lowest - g.y0) / g.spacing))
    r1 = min(g.rows, int((lowest + 60 - g.y0) / g.spacing) + 1)
    if r0 >= r1:
        return
    x = g.x0 + g.spacing * np.arange(g.cols, dtype=np.float32) - g.cx
    y = g.y0 + g.spacing * np.arange(r0, r1, dtype=np.float32)[:, None]
    d = y - (lowest - x * x / 3000.0)[None, :]
    band = canvas.hu[r0:r1]
    inside = (np.abs(x) < 230)[None, :]
    band[inside & (d >= 0) & (d < 30)] = -950.0
    band[inside & (((d >= 0) & (d < 1.6)) | ((d >= 28.4) & (d < 30)))] = 250.0


def _paint_body_wall(canvas: Canvas, anatomy: Anatomy) -> None:
    tissue = anatomy.tissue
    bins = canvas.grid.phi_bin
    fat = canvas.outline.fat.astype(np.float32)[bins]
    depth = canvas.depth
    hu = canvas.hu
    hu[depth > 0] = tissue.muscle
    hu[(depth > 1.5) & (depth < fat)] = tissue.fat
    # Visceral fat fills the cavity; the lungs and organs are drawn over it.
    hu[canvas.interior] = tissue.fat + 10.0


def _paint_mesentery(canvas: Canvas, anatomy: Anatomy, coarse: Texture) -> None:
    """Mesenteric fat is never uniform: a web of small vessels and septa (abdomen only)."""
    if anatomy.trunk.belly_weight(canvas.z) < 0.3:
        return
    rows, cols = np.nonzero(canvas.interior)
    tex = coarse.sample(canvas.grid.u[rows, cols], canvas.grid.v[rows, cols], canvas.z, 1.6)
    web = np.abs(tex) < 0.06
    canvas.hu[rows[web], cols[web]] = anatomy.tissue.muscle - 10.0


def _paint_lungs(canvas: Canvas, anatomy: Anatomy, coarse: Texture) -> None:
    g = canvas.grid
    rows, cols = np.nonzero(canvas.interior & ~canvas.posterior)
    u, v = g.u[rows, cols], g.v[rows, cols]
    lung = ~anatomy.dome.below(u, v, canvas.z)
    rows, cols, u, v = rows[lung], cols[lung], u[lung], v[lung]
    tex = coarse.sample(u, v, canvas.z, scale=1.3)
    hu = anatomy.tissue.lung + 40.0 * v / anatomy.trunk.back + 15.0 * tex
    # Vessels: the zero set of a smooth noise is a web of thin curved tubes, denser at the hila.
    hilum = np.hypot(np.abs(u) - 0.25 * anatomy.trunk.half_width, v)
    vessel = np.abs(tex) < 0.025 + 0.15 * np.exp(-hilum / 40.0)
    hu[vessel] = 30.0
    canvas.hu[rows, cols] = hu


def paint_blob(canvas: Canvas, anatomy: Anatomy, blob: Blob, coarse: Texture) -> None:
    """Paint one organ blob's cross-section at this slice."""
    section = blob.section(canvas.z)
    if section is None:
        return
    uc, vc, a, b = section
    if blob.spine:
        uc, vc = uc + canvas.spine[0], vc + canvas.spine[1]
    win = canvas.grid.window(uc, vc, max(a, b))
    if win is None:
        return
    du0, dv0 = canvas.grid.u[win] - uc, canvas.grid.v[win] - vc
    du, dv = rotate(du0, dv0, blob.angle)
    inside = (du / a) ** 2 + (dv / b) ** 2 < 1.0
    inside &= _clip_mask(canvas, anatomy, blob.clip, win)
    if not inside.any():
        return
    value = np.full(inside.shape, blob.hu, np.float32)
    if blob.texture or blob.bubbles is not None:
        tex = coarse.sample(canvas.grid.u[win], canvas.grid.v[win], canvas.z)
        value += blob.texture * tex
        if blob.bubbles is not None:
            value[tex > blob.bubbles] = AIR_HU
    if blob.gas > 0:
        # Gas rises to the front (smaller v) of a supine patient: an air-fluid level.
        value[dv0 < -b + 2 * b * blob.gas] = AIR_HU
    canvas.hu[win][inside] = value[inside]


def _clip_mask(canvas: Canvas, anatomy: Anatomy, clip: str, win: Window) -> NDArray[np.bool_]:
    if clip == "none":
        return np.ones(canvas.hu[win].shape, bool)
    mask = canvas.interior[win].copy()
    if clip in ("below_dome", "above_dome") and canvas.z > anatomy.dome.lowest:
        below = anatomy.dome.below(canvas.grid.u[win], canvas.grid.v[win], canvas.z)
        mask &= below if clip == "below_dome" else ~below
    elif clip == "above_dome":
        mask[:] = False
    return mask
