"""The vertebral column of one slice: canal and cord, discs, vertebral bodies, posterior
elements, and the normal variants in their marrow.

Vertebrae are shaped in the column's own frame (x to the left, y to the back, origin at the
body centre), which follows the spine's curvature and axial rotation slice by slice
(:func:`local`, :func:`to_body`). Each bone element joins the slice's bone union
(:func:`union`), where the deepest element wins, so a pedicle merges into its vertebral
body without an inner cortex.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from export.phantoms.anatomy import Anatomy
from export.phantoms.geometry import F32, Window, capsule_sdf, ellipse_sdf, slab
from export.phantoms.levels import Vertebra
from export.phantoms.trunk import Canvas
from export.phantoms.variants import variant_marrow

Point = tuple[float, float]


def union(canvas: Canvas, win: Window | tuple[NDArray[np.intp], NDArray[np.intp]], sdf: F32,
          cortex: float, marrow: float) -> None:
    """Add a bone element (signed distance on ``win``) to the slice's bone union."""
    current = canvas.bone_sdf[win]
    better = sdf < current
    if not better.any():
        return
    current[better] = sdf[better]
    cortex_view, marrow_view = canvas.cortex[win], canvas.marrow[win]
    cortex_view[better] = cortex
    marrow_view[better] = marrow
    if isinstance(win[0], np.ndarray):  # fancy indexing returned copies: write them back
        canvas.bone_sdf[win], canvas.cortex[win], canvas.marrow[win] = (
            current, cortex_view, marrow_view)


def to_body(canvas: Canvas, x: float, y: float) -> Point:
    """Column-frame point to body frame at this slice."""
    su, sv, rot = canvas.spine
    c, s = math.cos(rot), math.sin(rot)
    return su + c * x - s * y, sv + s * x + c * y


def local(canvas: Canvas, x: float, y: float, reach: float) -> tuple[Window, F32, F32] | None:
    """Window around column-frame point (x, y) and its pixels in column-frame coordinates."""
    u, v = to_body(canvas, x, y)
    win = canvas.grid.window(u, v, reach)
    if win is None:
        return None
    su, sv, rot = canvas.spine
    du, dv = canvas.grid.u[win] - su, canvas.grid.v[win] - sv
    c, s = math.cos(rot), math.sin(rot)
    return win, c * du + s * dv, -s * du + c * dv


def canal_centre(vb: Vertebra) -> float:
    """y of the spinal canal centre behind the body."""
    return vb.ry + 0.8 * vb.canal_ry


def pedicle_axis(vb: Vertebra, side: int) -> tuple[Point, Point]:
    """Ends of one pedicle's axis in the column frame."""
    yc = canal_centre(vb)
    x0, x1 = vb.canal_rx + 0.5 * vb.pedicle_r, vb.canal_rx + 0.8 * vb.pedicle_r
    return (side * x0, vb.ry - 3.0), (side * x1, yc + 0.3 * vb.canal_ry)


def pedicle_z(vb: Vertebra) -> tuple[float, float]:
    """z range of the pedicles (upper part of the vertebra)."""
    return vb.z_bottom + 0.42 * vb.height, vb.z_top - 0.06 * vb.height


def paint_canal_and_discs(canvas: Canvas, anatomy: Anatomy) -> None:
    z = canvas.z
    spine = anatomy.spine
    vb = spine.at(z)
    yc = canal_centre(vb)
    found = local(canvas, 0.0, yc, vb.canal_rx + 1)
    if found is not None:
        win, x, y = found
        canvas.hu[win][ellipse_sdf(x, y - yc, vb.canal_rx, vb.canal_ry) < 0] = 8.0
        if vb.name[0] in "CT" or vb.name == "L1":
            cord = ellipse_sdf(x, y - yc + 0.5, 0.55 * vb.canal_rx, 0.6 * vb.canal_ry) < 0
            canvas.hu[win][cord] = 35.0
    if z >= vb.z_bottom:
        return
    # Intervertebral disc: annulus, nucleus, sometimes a vacuum phenomenon (gas).
    found = local(canvas, 0.0, 0.0, max(vb.rx, vb.ry) + 3)
    if found is None:
        return
    win, x, y = found
    hu = canvas.hu[win]
    canal = ellipse_sdf(x, y - yc, vb.canal_rx + 2, vb.canal_ry + 2)
    disc = np.maximum(ellipse_sdf(x, y, 1.03 * vb.rx, 1.03 * vb.ry), -canal) < 0
    hu[disc] = 92.0
    nucleus = ellipse_sdf(x, y + 0.1 * vb.ry, 0.55 * vb.rx, 0.5 * vb.ry) < 0
    hu[nucleus & disc] = 72.0
    if vb.vacuum_disc:
        hu[(ellipse_sdf(x, y, 0.35 * vb.rx, 0.2 * vb.ry) < 0) & disc] = -750.0


def paint_vertebral_body(canvas: Canvas, vb: Vertebra, fixed_channel: bool = True) -> None:
    z = canvas.z
    if not vb.z_bottom <= z <= vb.z_top:
        return
    w = (z - vb.z_bottom) / vb.height
    flare = vb.osteophyte * max(0.0, 1.0 - min(z - vb.z_bottom, vb.z_top - z) / 3.0)
    waist = 1.0 - 0.05 * math.sin(math.pi * w)
    rx, ry = vb.rx * waist + flare, vb.ry * waist + 0.6 * flare
    found = local(canvas, 0.0, 0.0, max(rx, ry) + 2)
    if found is None:
        return
    win, x, y = found
    yc = canal_centre(vb)
    sdf = np.maximum(ellipse_sdf(x, y, rx, ry), -ellipse_sdf(x, y - yc, vb.canal_rx + 2,
                                                             vb.canal_ry + 2))
    union(canvas, win, slab(sdf, z - vb.z_mid, 0.5 * vb.height), 1.3, vb.marrow_hu)
    if fixed_channel and abs(z - vb.z_mid) < 3.0:
        # Basivertebral venous channel: a normal lucency at the back of the body (phantoms
        # with normal variants draw one of varying size and shape instead, see variants.py).
        channel = ellipse_sdf(x, y - ry + 4.0, 2.0, 3.5) < 0
        canvas.marrow[win][channel & (canvas.bone_sdf[win] < -1.3)] = 55.0


def paint_variants(canvas: Canvas,
                    anatomy: Anatomy) -> list[tuple[int, Window, NDArray[np.bool_]]]:
    """Normal variants into the marrow of the vertebral bodies (never labelled)."""
    drawn = []
    for index, variant in enumerate(anatomy.variants or ()):
        if abs(canvas.z - variant.z) > variant.rz + 0.5:
            continue
        reach = max(variant.rx, variant.ry) * (2.6 if variant.branch else 1.0) + 2.0
        found = local(canvas, variant.x, variant.y, reach)
        if found is None:
            continue
        win, x, y = found
        shape = variant_marrow(variant, x, y, canvas.z)
        if shape is None:
            continue
        where, value, breach = shape
        bone = canvas.bone_sdf[win] < 0
        cortex = canvas.cortex[win]
        cortex[breach & bone] = 0.0  # through an endplate or the back wall
        inside = where & bone & (canvas.bone_sdf[win] < -cortex)
        if inside.any():
            canvas.marrow[win][inside] = value[inside]
            drawn.append((index, win, inside))
    return drawn


def paint_posterior_elements(canvas: Canvas, vb: Vertebra, back_y: float) -> None:
    z, h, pr = canvas.z, vb.height, vb.pedicle_r
    lumbar = vb.lumbar
    yc = canal_centre(vb)
    marrow = vb.marrow_hu + 30.0
    z0, z1 = pedicle_z(vb)
    if z0 <= z <= z1:
        for side in (-1, 1):
            _capsule(canvas, *pedicle_axis(vb, side), pr, (z, 0.5 * (z0 + z1), 0.5 * (z1 - z0)),
                     1.2, marrow)
    pillar_y = yc + 0.6 * vb.canal_ry
    pillar_x = vb.canal_rx + 0.8 * pr
    lamina_meet = (0.0, yc + vb.canal_ry + 3.0)
    zp = (vb.z_bottom + vb.z_top - 0.6 * vb.disc_below) / 2
    hp = (h + 0.9 * vb.disc_below) / 2
    lam_z = (z, vb.z_mid - 0.1 * h, 0.42 * h)
    for side in (-1, 1):
        pillar = (side * pillar_x, pillar_y)
        _capsule(canvas, pillar, (pillar[0], pillar[1] + 2), 1.25 * pr, (z, zp, hp), 1.5, marrow)
        _capsule(canvas, pillar, lamina_meet, max(2.5, 0.7 * pr), lam_z, 1.8, marrow)
        if lumbar:
            tip = (side * (vb.rx + 26.0), yc - 2.0)
            tz = (z, vb.z_bottom + 0.65 * h, 0.18 * h)
            _capsule(canvas, pillar, tip, 3.2, tz, 1.5, marrow)
        else:
            tip = (side * (pillar_x + 22.0), yc + 12.0)
            _capsule(canvas, pillar, tip, 4.2, (z, vb.z_top - 0.28 * h, 0.24 * h), 1.5, marrow)
    # Spinous process: thoracic ones slope steeply down, lumbar ones are tall and level.
    tip_y = min(lamina_meet[1] + (32.0 if lumbar else 36.0), back_y - 6.0)
    slope, half = (0.12, 0.3 * h) if lumbar else (0.85, 4.5)
    found = local(canvas, 0.0, 0.5 * (lamina_meet[1] + tip_y), 0.5 * (tip_y - lamina_meet[1]) + 6)
    if found is None or tip_y <= lamina_meet[1]:
        return
    win, x, y = found
    sdf, _ = capsule_sdf(x, y, lamina_meet, (0.0, tip_y), 4.0 if lumbar else 3.0)
    zc = vb.z_bottom + 0.45 * h - slope * (y - lamina_meet[1])
    union(canvas, win, np.maximum(sdf, np.abs(z - zc) - half), 1.8, marrow)


def _capsule(canvas: Canvas, p0: Point, p1: Point, r: float,
             zr: tuple[float, float, float], cortex: float, marrow: float) -> None:
    z, zc, half = zr
    if abs(z - zc) > half:
        return
    mid = (0.5 * (p0[0] + p1[0]), 0.5 * (p0[1] + p1[1]))
    reach = 0.5 * math.hypot(p1[0] - p0[0], p1[1] - p0[1]) + r + 1
    found = local(canvas, *mid, reach)
    if found is None:
        return
    win, x, y = found
    sdf, _ = capsule_sdf(x, y, p0, p1, r)
    union(canvas, win, slab(sdf, z - zc, half), cortex, marrow)
