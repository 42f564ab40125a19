"""Draw the bones of one slice as a union of signed-distance shapes, then give them HU.

Each bone element carries a cortical thickness and a marrow density; where elements overlap
the deepest one wins. The vertebral column is :mod:`export.phantoms.vertebrae`; ribs,
sternum, scapulae and humeri are drawn here, then the whole union gets its HU.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from export.phantoms.anatomy import Anatomy
from export.phantoms.geometry import Texture, Window, capsule_sdf, ellipse_sdf
from export.phantoms.levels import RIB_ANGLE_PSI, Rib
from export.phantoms.trunk import Canvas, rib_angle_point, rib_tubercle
from export.phantoms.vertebrae import (
    paint_canal_and_discs,
    paint_posterior_elements,
    paint_variants,
    paint_vertebral_body,
    to_body,
    union,
)


def paint_skeleton(canvas: Canvas, anatomy: Anatomy,
                   fine: Texture) -> list[tuple[int, Window, NDArray[np.bool_]]]:
    """Canal, discs and every bone of the slice, then the bone HU (cortex and marrow).

    Returns where each normal variant was drawn: (index in ``anatomy.variants``, window,
    pixels), empty for a plain phantom.
    """
    near = anatomy.spine.near(canvas.z)
    paint_canal_and_discs(canvas, anatomy)
    for vb in near:
        paint_vertebral_body(canvas, vb, fixed_channel=anatomy.variants is None)
        paint_posterior_elements(canvas, vb, anatomy.trunk.spine_depth(canvas.z))
    _ribs(canvas, anatomy, fine)
    _sternum_and_scapulae(canvas, anatomy)
    for blob in anatomy.arms[1::2]:  # humerus in the arm muscle
        win = canvas.grid.window(blob.u, blob.v, 14.0)
        if win is not None:
            sdf = np.hypot(canvas.grid.u[win] - blob.u, canvas.grid.v[win] - blob.v) - 12.0
            union(canvas, win, sdf, 3.0, anatomy.extras["humerus_marrow"])
    drawn = paint_variants(canvas, anatomy)
    _compose(canvas, anatomy, fine)
    return drawn


def _ribs(canvas: Canvas, anatomy: Anatomy, fine: Texture) -> None:
    z = canvas.z
    ribs = [r for r in anatomy.spine.ribs if r.z_head - r.drop - 12 < z < r.z_head + 12]
    if not ribs:
        return
    g = canvas.grid
    offset = canvas.depth - canvas.outline.rib_depth().astype(np.float32)[g.phi_bin]
    rows, cols = np.nonzero((np.abs(offset) < 6.0) & (g.psi > RIB_ANGLE_PSI))
    dr, psi = offset[rows, cols], g.psi[rows, cols]
    side = np.sign(g.u[rows, cols] - canvas.spine[0])
    marrow = anatomy.spine.vertebrae[0].marrow_hu
    for rib in ribs:
        dz = z - rib.z_at(psi, side)
        near = np.abs(dz) < rib.half_height + 1
        if not near.any():
            continue
        sel = (rows[near], cols[near])
        sdf = ellipse_sdf(dr[near], dz[near], rib.half_thickness, rib.half_height)
        p = psi[near]
        bone = p <= rib.psi_bone_end
        union(canvas, (sel[0][bone], sel[1][bone]), sdf[bone], 1.0, marrow)
        cartilage = ~bone & (p <= rib.psi_cartilage_end) & (sdf < 0)
        if cartilage.any():
            r, c = sel[0][cartilage], sel[1][cartilage]
            tex = fine.sample(g.u[r, c], g.v[r, c], z)
            # Costal cartilage calcifies with age: bright specks, not bone, not lesions.
            canvas.hu[r, c] = np.where(tex > 2.2 - anatomy.extras["calcium"], 450.0,
                                       anatomy.tissue.cartilage)
        _rib_neck(canvas, anatomy, rib)


def _rib_neck(canvas: Canvas, anatomy: Anatomy, rib: Rib) -> None:
    """From the rib head at the vertebral body, past the tubercle, out to the angle of the rib."""
    vb = anatomy.spine.by_name(f"T{rib.number}")
    for side in (-1, 1):
        z_head = float(rib.z_at(0.0, side)) + 4.0  # the neck starts at the head height
        if abs(canvas.z - (z_head - 2.0)) > rib.half_height + 3.0:
            continue
        head = to_body(canvas, side * 0.85 * vb.rx, 0.45 * vb.ry)
        tubercle = to_body(canvas, *rib_tubercle(vb.rx, vb.ry, side))
        angle = rib_angle_point(canvas.outline, side)
        for (p0, z0), (p1, z1) in (((head, z_head), (tubercle, z_head - 1.5)),
                                   ((tubercle, z_head - 1.5), (angle, z_head - 4.0))):
            mid = (0.5 * (p0[0] + p1[0]), 0.5 * (p0[1] + p1[1]))
            win = canvas.grid.window(*mid, 0.5 * math.dist(p0, p1) + 8)
            if win is None:
                continue
            d, t = capsule_sdf(canvas.grid.u[win], canvas.grid.v[win], p0, p1, 0.0)
            dz = canvas.z - (z0 + (z1 - z0) * t)
            union(canvas, win, ellipse_sdf(d, dz, rib.half_thickness, rib.half_height), 1.0,
                  anatomy.spine.vertebrae[0].marrow_hu)


def _sternum_and_scapulae(canvas: Canvas, anatomy: Anatomy) -> None:
    spine, z, ol = anatomy.spine, canvas.z, canvas.outline
    top, bottom = spine.by_name("T3").z_top, spine.by_name("T9").z_bottom
    if bottom <= z <= top:
        w = (top - z) / (top - bottom)
        front = len(ol.radius) // 4
        u, v = ol.point(-math.pi / 2, float(ol.fat[front] + 0.3 * ol.muscle[front]) + 6.0)
        a = 17.0 if w < 0.22 else (12.0 if w < 0.9 else 5.0)
        win = canvas.grid.window(u, v, a + 2)
        if win is not None:
            sdf = ellipse_sdf(canvas.grid.u[win] - u, canvas.grid.v[win] - v, a, 5.5)
            union(canvas, win, sdf, 1.2, spine.vertebrae[0].marrow_hu + 40)
    top, bottom = spine.by_name("T1").z_top - 5, spine.by_name("T7").z_mid
    if not bottom <= z <= top:
        return
    width = math.sqrt((z - bottom) / (top - bottom))
    for side in (-1, 1):
        points = []
        for psi in (0.6, 0.6 + 0.38 * width, 0.6 + 0.75 * width):
            phi = math.atan2(math.cos(psi), side * math.sin(psi))
            i = int((phi + math.pi) * len(ol.radius) / (2 * math.pi)) % len(ol.radius)
            points.append(ol.point(phi, float(ol.fat[i] + 0.45 * ol.muscle[i]) + 2.0))
        for p0, p1 in zip(points, points[1:], strict=False):
            win = canvas.grid.window(0.5 * (p0[0] + p1[0]), 0.5 * (p0[1] + p1[1]),
                                     0.5 * math.dist(p0, p1) + 4)
            if win is not None:
                sdf, _ = capsule_sdf(canvas.grid.u[win], canvas.grid.v[win], p0, p1, 1.4)
                union(canvas, win, sdf, 1.4, 200.0)


def _compose(canvas: Canvas, anatomy: Anatomy, fine: Texture) -> None:
    """Bone HU: a cortical shell around textured trabecular marrow."""
    rows, cols = np.nonzero(canvas.bone_sdf < 0)
    if rows.size == 0:
        return
    g = canvas.grid
    tex = fine.sample(g.u[rows, cols], g.v[rows, cols], canvas.z)
    sdf, cortex = canvas.bone_sdf[rows, cols], canvas.cortex[rows, cols]
    trabecular = canvas.marrow[rows, cols] + 55.0 * tex
    cortical = anatomy.tissue.cortical + 60.0 * tex
    canvas.hu[rows, cols] = np.where(sdf > -cortex, cortical, trabecular)
