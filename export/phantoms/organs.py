"""Draw one patient: trunk, spine, diaphragm and the organ blobs in paint order.

Organ densities follow the contrast phase: unenhanced, arterial (bright aorta, kidney cortex)
or portal-venous (bright liver, spleen, veins). Distractors that are bright but not bone
(contrast vessels, wall calcifications, oral contrast, kidney stones) come from here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from export.phantoms.anatomy import Anatomy, Blob, Dome, TissueHU, Trunk
from export.phantoms.levels import Spine, build_spine
from export.phantoms.spec import PhantomSpec
from export.phantoms.variants import draw_variants

Rng = np.random.Generator

_PHASE_HU = {  # (low, high) HU per structure and contrast phase
    "none": {"aorta": (35, 50), "vein": (35, 50), "ivc": (35, 50), "liver": (52, 66),
             "spleen": (42, 52), "cortex": (28, 36), "medulla": (28, 36), "lv": (35, 50),
             "rv": (35, 50), "myocardium": (40, 50), "pancreas": (35, 45), "svc": (35, 50)},
    "arterial": {"aorta": (250, 420), "vein": (60, 90), "ivc": (60, 100), "liver": (68, 85),
                 "spleen": (95, 130), "cortex": (170, 240), "medulla": (70, 100),
                 "lv": (250, 400), "rv": (150, 260), "myocardium": (85, 100),
                 "pancreas": (100, 125), "svc": (300, 900)},
    "venous": {"aorta": (140, 200), "vein": (150, 190), "ivc": (130, 165), "liver": (100, 125),
               "spleen": (105, 125), "cortex": (150, 185), "medulla": (140, 175),
               "lv": (140, 190), "rv": (140, 180), "myocardium": (95, 110),
               "pancreas": (85, 105), "svc": (150, 220)},
    # Delayed (3-5 min): enhancement washing out, contrast excreted into the renal pelvis.
    "delayed": {"aorta": (90, 130), "vein": (95, 130), "ivc": (95, 130), "liver": (85, 100),
                "spleen": (85, 100), "cortex": (130, 170), "medulla": (170, 260),
                "lv": (90, 130), "rv": (90, 130), "myocardium": (80, 95),
                "pancreas": (70, 90), "svc": (90, 130)},
}


def build_anatomy(spec: PhantomSpec, rng: Rng) -> Anatomy:
    """Draw a whole patient from the anatomy stream of ``spec``."""
    s = spec.body_scale
    spine = build_spine(rng, z_t1_top=float(rng.uniform(-150, 50)), scale=s,
                        marrow_hu=spec.marrow_hu)
    trunk = _trunk(rng, spine, s)
    top_right = spine.by_name("T9").z_mid + rng.uniform(-12, 12)
    dome = Dome(
        top_right=top_right, top_left=top_right - rng.uniform(5, 20), depth=rng.uniform(55, 80),
        centre_u=0.45 * trunk.half_width, centre_v=-0.1 * trunk.front,
        half_u=0.5 * trunk.half_width, half_v=0.45 * (trunk.front + trunk.back),
    )
    tissue = TissueHU(
        fat=rng.uniform(-110, -85), muscle=rng.uniform(40, 58), lung=rng.uniform(-880, -830),
        cortical=rng.uniform(850, 1250), blood=rng.uniform(35, 50), cartilage=rng.uniform(90, 140),
    )
    hu = {k: float(rng.uniform(*v)) for k, v in _PHASE_HU[spec.contrast].items()}
    if spec.contrast == "delayed":  # own stream: the anatomy's draws stay as they were
        hu["pelvis"] = float(np.random.default_rng([spec.seed, 6]).uniform(400, 1200))
    calcium = float(rng.random() ** 1.5)  # how calcified this patient's vessels are
    blobs = (
        _bowel(rng, trunk, spine, spec.oral_contrast, tissue)
        + _chest(rng, trunk, spine, tissue, hu)
        + _abdomen(rng, trunk, spine, tissue, hu, calcium)
        + _vessels(rng, spine, hu, calcium)
    )
    return Anatomy(
        trunk=trunk, spine=spine, dome=dome, tissue=tissue, blobs=blobs,
        arms=_arms(rng, trunk, tissue) if spec.arms_down else (),
        table_gap=float(rng.uniform(0, 6)) if rng.random() < 0.85 else None,
        extras={"calcium": calcium, "humerus_marrow": float(rng.uniform(-40, 60))},
        # Their own stream: the same patient, with or without them.
        variants=draw_variants(spine, np.random.default_rng([spec.seed, 4]))
        if spec.bone_variants else None,
    )


def _trunk(rng: Rng, spine: Spine, s: float) -> Trunk:
    """Girth, shape and wall of the trunk; ``s`` is the body scale."""
    return Trunk(
        half_width=165 * s * rng.uniform(0.95, 1.05), front=108 * s * rng.uniform(0.9, 1.08),
        back=104 * s * rng.uniform(0.93, 1.05), n_front=rng.uniform(2.0, 2.3),
        n_back=rng.uniform(2.8, 3.6),
        harmonics=tuple((k, rng.uniform(-0.025, 0.025) / k**0.5, rng.uniform(0, 2 * math.pi))
                        for k in range(2, 6)),
        fat=(4 + 20 * rng.random()) * s**2, belly=rng.uniform(0, 1.5),
        muscle=rng.uniform(6, 12), rib_zone=9.0,
        spine_depth_chest=rng.uniform(54, 62) * s**0.5,
        spine_depth_belly=rng.uniform(62, 76) * s**0.5,
        z_chest=spine.by_name("T10").z_mid, z_belly=spine.by_name("L1").z_mid,
        z_upper=spine.by_name("T3").z_mid,
    )


def _span(spine: Spine, top: str, bottom: str, top_frac: float = 0.5,
          bottom_frac: float = 0.5) -> tuple[float, float]:
    """(centre z, half height) from a fraction down vertebra ``top`` to one down ``bottom``."""
    a, b = spine.by_name(top), spine.by_name(bottom)
    z0 = a.z_top - top_frac * a.height
    z1 = b.z_top - bottom_frac * b.height
    return 0.5 * (z0 + z1), 0.5 * abs(z0 - z1)


def _blob(name: str, u: float, v: float, span: tuple[float, float], a: float, b: float,
          hu: float, **options: Any) -> Blob:
    """A blob over the z ``span`` (centre, half height) given by :func:`_span`."""
    return Blob(name, u, v, span[0], a, b, span[1], hu, **options)


def _chest(rng: Rng, trunk: Trunk, spine: Spine, tissue: TissueHU,
           hu: dict[str, float]) -> tuple[Blob, ...]:
    a, front = trunk.half_width, trunk.front
    t7 = spine.by_name("T7")
    zm, cm = _span(spine, "T1", "T10", 0.0, 0.5)
    zs, cs = _span(spine, "T1", "T7", 0.0, 0.5)
    za, ca = _span(spine, "T4", "T7", 0.5, 0.0)
    return (
        Blob("mediastinum", 0.05 * a, -0.45 * front, zm, 0.17 * a, 0.45 * front, cm,
             tissue.fat + 15, power=6, texture=10, clip="above_dome"),
        *_heart(rng, trunk, spine, tissue, hu),
        Blob("ascending aorta", -0.06 * a, -0.42 * front, za, 15, 15, ca, hu["aorta"], power=6),
        Blob("pulmonary trunk", 0.08 * a, -0.5 * front, za - 0.4 * ca, 13, 13, 0.5 * ca,
             hu["rv"], power=6),
        Blob("superior vena cava", -0.2 * a, -0.36 * front, zs, 10, 9, cs, hu["svc"], power=8),
        *(  # great vessels above the arch: brachiocephalic trunk, left carotid, left subclavian
            _blob(name, du, -t7.ry + dv, _span(spine, "T1", "T3", 0.0, 0.2), r, r, hu["aorta"],
                  power=8, spine=True)
            for name, du, dv, r in (("brachiocephalic", -12, -48, 6.5), ("carotid", 2, -50, 4.5),
                                    ("subclavian", 12, -40, 5.0))
        ),
        _blob("trachea", 0, -t7.ry - 24, _span(spine, "T1", "T4", 0.0, 0.7), 9.5, 8.5, -990,
              power=8, spine=True),
        _blob("esophagus", 3, -t7.ry - 8, _span(spine, "T1", "T11"), 7.5, 5.5, tissue.muscle,
              power=8, spine=True, gas=0.25 if rng.random() < 0.4 else 0.0),
    )


def _heart(rng: Rng, trunk: Trunk, spine: Spine, tissue: TissueHU,
           hu: dict[str, float]) -> tuple[Blob, ...]:
    """Pericardial fat, myocardium, chambers (bright with contrast), coronary calcium."""
    u, v, angle = 0.12 * trunk.half_width, -0.3 * trunk.front, -0.6
    z, c = _span(spine, "T6", "T10", 0.2, 0.4)
    ha = 0.33 * trunk.half_width * rng.uniform(0.9, 1.1)
    hb = 0.38 * trunk.front * rng.uniform(0.9, 1.1)
    coronary = tuple(
        Blob(f"coronary calcium {i}", u + ha * math.cos(t), v + hb * math.sin(t),
             z + c * rng.uniform(0, 0.7), 1.2, 1.2, rng.uniform(1, 4), rng.uniform(300, 900))
        for i, t in enumerate(rng.uniform(0, 2 * math.pi, int(rng.integers(0, 6))))
    )
    return (
        Blob("pericardium", u, v, z, ha + 4, hb + 4, c, tissue.fat, angle=angle, power=3),
        Blob("myocardium", u, v, z, ha, hb, c, hu["myocardium"], angle=angle, power=3),
        Blob("left ventricle", u + 0.3 * ha, v - 0.05 * hb, z - 0.2 * c, 0.45 * ha, 0.42 * hb,
             0.7 * c, hu["lv"], angle=angle),
        Blob("right ventricle", u - 0.15 * ha, v - 0.45 * hb, z - 0.1 * c, 0.5 * ha, 0.3 * hb,
             0.7 * c, hu["rv"], angle=angle),
        Blob("atria", u - 0.1 * ha, v + 0.45 * hb, z + 0.4 * c, 0.7 * ha, 0.3 * hb, 0.5 * c,
             0.5 * (hu["lv"] + hu["rv"]), angle=angle),
        *coronary,
    )


def _abdomen(rng: Rng, trunk: Trunk, spine: Spine, tissue: TissueHU, hu: dict[str, float],
             calcium: float) -> tuple[Blob, ...]:
    a, front, back = trunk.half_width, trunk.front, trunk.back
    zl, cl = _span(spine, "T8", "L3", 0.5, 0.2)
    l1 = spine.by_name("L1")
    liver_vessels = tuple(
        Blob(f"hepatic vessel {i}", -0.42 * a + rng.uniform(-35, 35), rng.uniform(-40, 20),
             zl + rng.uniform(0, 0.5) * cl, rng.uniform(2.5, 6), rng.uniform(2.5, 6), 35,
             hu["vein"], power=6, du_dz=rng.uniform(-0.3, 0.3), clip="below_dome")
        for i in range(int(rng.integers(3, 7)))
    )
    blobs: list[Blob] = [
        # The right lobe's tip hangs low, lateral and back; the bulk sits under the dome.
        Blob("liver", -0.42 * a, -0.05 * front, zl + 0.3 * cl, 0.52 * a, 0.75 * front, 1.3 * cl,
             hu["liver"], texture=6, clip="below_dome", du_dz=0.25, dv_dz=-0.12),
        _blob("left lobe", 0.1 * a, -0.5 * front, _span(spine, "T9", "T12"), 0.32 * a,
              0.28 * front, hu["liver"], texture=6, clip="below_dome"),
        *liver_vessels,
        _blob("spleen", 0.58 * a, 0.3 * back, _span(spine, "T10", "L1"), 26, 52, hu["spleen"],
              angle=-0.5, texture=8, clip="below_dome"),
        _blob("stomach wall", 0.35 * a, -0.35 * front, _span(spine, "T10", "L1"), 46, 36,
              tissue.muscle, clip="below_dome"),
        _blob("stomach", 0.35 * a, -0.35 * front, _span(spine, "T10", "L1", 0.6, 0.4), 41, 31,
              float(rng.uniform(5, 25)), gas=float(rng.uniform(0.15, 0.6)), clip="below_dome"),
        Blob("pancreas", 0.12 * a, -l1.ry - 32, l1.z_mid - 12, 60, 11, 22, hu["pancreas"],
             angle=0.25, texture=8, spine=True),
    ]
    if rng.random() < 0.5:
        blobs.append(_blob("gallbladder", -0.3 * a, -0.45 * front, _span(spine, "L1", "L2"), 14,
                           12, float(rng.uniform(0, 20)), clip="below_dome"))
    for side in (-1, 1):
        blobs += _kidney(rng, spine, side, hu, tissue, calcium)
        zp, cp = _span(spine, "T12", "L5", 0.5, 1.0)
        blobs.append(Blob("psoas", side * (spine.by_name("L3").rx + 14), 4, zp - cp, 24, 22,
                          2 * cp, tissue.muscle, du_dz=-side * 0.06, spine=True, texture=5))
    return tuple(blobs)


def _kidney(rng: Rng, spine: Spine, side: int, hu: dict[str, float], tissue: TissueHU,
            calcium: float) -> list[Blob]:
    z, c = _span(spine, "T12" if side > 0 else "L1", "L3", 0.7, 0.3 if side > 0 else 0.9)
    u, v = side * (spine.by_name("L2").rx + 42), 6.0
    angle = side * rng.uniform(0.4, 0.8)
    ka, kb = rng.uniform(20, 25), rng.uniform(27, 33)
    hilum_u, hilum_v = u - side * 0.55 * ka, v - 0.3 * kb
    parts = [
        Blob("perirenal fat", u, v, z, ka + 7, kb + 7, c + 8, tissue.fat, angle=angle, spine=True),
        Blob("kidney cortex", u, v, z, ka, kb, c, hu["cortex"], angle=angle, spine=True),
        Blob("kidney medulla", u, v, z, 0.62 * ka, 0.7 * kb, 0.75 * c, hu["medulla"],
             angle=angle, spine=True),
        Blob("renal sinus", hilum_u, hilum_v, z, 0.45 * ka, 0.35 * kb, 0.35 * c, tissue.fat,
             angle=angle, spine=True),
    ]
    if "pelvis" in hu:  # excreted contrast: bright as bone, beside the spine
        parts.append(Blob("renal pelvis", hilum_u, hilum_v, z, 0.3 * ka, 0.2 * kb, 0.3 * c,
                          hu["pelvis"], angle=angle, spine=True))
    if rng.random() < 0.1 + 0.2 * calcium:
        ra, rb, rc = (float(x) for x in rng.uniform(1.2, 3.0, 3))
        parts.append(Blob("kidney stone", hilum_u + side * 4, hilum_v, z + rng.uniform(-15, 15),
                          ra, rb, rc, rng.uniform(400, 1100), spine=True))
    return parts


def _vessels(rng: Rng, spine: Spine, hu: dict[str, float], calcium: float) -> tuple[Blob, ...]:
    t8, l2 = spine.by_name("T8"), spine.by_name("L2")
    r_thor, r_abd = rng.uniform(11, 15), rng.uniform(8, 11)
    zt, ct = _span(spine, "T4", "T12", 0.5, 1.0)
    za, ca = _span(spine, "T12", "L4", 1.0, 0.7)
    # The descending aorta runs left of the spine and reaches the midline at the hiatus.
    drift = (t8.rx + 2 - 8) / (2 * ct)
    aortas = (
        Blob("descending aorta", t8.rx + 2, -t8.ry - r_thor + 2, zt, r_thor, r_thor, ct,
             hu["aorta"], power=10, spine=True, du_dz=drift),
        Blob("abdominal aorta", 8.0, -l2.ry - r_abd - 3, za, r_abd, r_abd, ca, hu["aorta"],
             power=10, spine=True),
    )
    blobs = [
        *aortas,
        _blob("inferior vena cava", -l2.rx - 6, -l2.ry - 10, _span(spine, "T11", "L4"), 12, 9,
              hu["ivc"], power=8, spine=True),
    ]
    for aorta in aortas:
        for i in range(int(rng.poisson(14 * calcium))):
            t = rng.uniform(0, 2 * math.pi)
            dz = rng.uniform(-0.95, 0.95) * aorta.c
            blobs.append(Blob(
                f"{aorta.name} calcification {i}",
                aorta.u + aorta.du_dz * dz + aorta.a * math.cos(t), aorta.v + aorta.a * math.sin(t),
                aorta.z + dz, rng.uniform(0.8, 2.2), rng.uniform(0.8, 2.2), rng.uniform(1, 5),
                rng.uniform(350, 1200), angle=t, spine=True,
            ))
    return tuple(blobs)


def _bowel(rng: Rng, trunk: Trunk, spine: Spine, oral: bool, tissue: TissueHU) -> tuple[Blob, ...]:
    a, front = trunk.half_width, trunk.front
    z_top, z_bottom = spine.by_name("T12").z_bottom, spine.by_name("L5").z_bottom - 20
    blobs = []
    for i in range(int(rng.integers(22, 40))):
        # Small bowel crowds the lower abdomen.
        z = z_bottom + (z_top - z_bottom) * rng.random() ** 1.6
        r = rng.uniform(9, 20)
        if oral and rng.random() < 0.7:
            content, gas = rng.uniform(200, 550), 0.0
        else:
            content, gas = rng.uniform(5, 30), (rng.uniform(0.2, 0.9) if rng.random() < 0.45 else 0)
        u, v = rng.uniform(-0.6, 0.6) * a, rng.uniform(-0.85, -0.15) * front
        c, ra, angle = rng.uniform(12, 40), r * rng.uniform(1.0, 2.2), rng.uniform(0, math.pi)
        # Loops are tubes cut at all angles: ellipses, some long, drifting between slices.
        du_dz, dv_dz = rng.uniform(-0.6, 0.6), rng.uniform(-0.3, 0.3)
        blobs.append(Blob(f"bowel wall {i}", u, v, z, ra + 2.5, r * 0.85 + 2.5, c + 2,
                          tissue.muscle, angle=angle, du_dz=du_dz, dv_dz=dv_dz))
        blobs.append(Blob(f"bowel {i}", u, v, z, ra, r * 0.85, c, content, gas=gas, angle=angle,
                          du_dz=du_dz, dv_dz=dv_dz))
    for name, u, v, (zc, c) in (
        ("ascending colon", -0.62 * a, -0.1 * front, _span(spine, "L2", "L5")),
        ("descending colon", 0.64 * a, 0.05 * front, _span(spine, "T12", "L5")),
        ("transverse colon", 0.0, -0.7 * front, _span(spine, "L1", "L2")),
    ):
        wide = 0.45 * a if name.startswith("transverse") else 24
        blobs.append(Blob(name, u, v, zc, wide, 22, c, rng.uniform(-200, -60), power=4,
                          texture=120, bubbles=float(rng.uniform(0.6, 1.4))))
    return tuple(blobs)


def _arms(rng: Rng, trunk: Trunk, tissue: TissueHU) -> tuple[Blob, ...]:
    r = rng.uniform(40, 55)
    blobs = []
    for side in (-1, 1):
        u, v = side * (trunk.half_width + r + rng.uniform(5, 25)), rng.uniform(-10, 30)
        layers = (("arm fat", 0.0, tissue.fat), ("arm muscle", 8.0, tissue.muscle))
        for name, shrink, value in layers:
            blobs.append(Blob(name, u, v, 0.0, r - shrink, 1.1 * r - shrink, 1e5, value,
                              clip="none"))
    return tuple(blobs)
