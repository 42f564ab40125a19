"""Make a phantom study in memory: Hounsfield volume, metastasis labels and lesion truth.

Three independent random streams per seed (anatomy, lesions, noise), so a different noise
level never moves an organ. Slices are drawn one at a time from analytic shapes; the work per
slice is a few vectorised passes over small windows, then blur and noise over the slice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from export.phantoms.anatomy import Anatomy
from export.phantoms.geometry import Grid, Texture, Window, make_grid, textures
from export.phantoms.kernels import HU_MAX, HU_MIN, PADDING_HU, finish
from export.phantoms.lesions import Lesion, paint_lesions, place_lesions
from export.phantoms.metal import Fixation, paint_fixation, plan_fixation
from export.phantoms.organs import build_anatomy
from export.phantoms.skeleton import paint_skeleton
from export.phantoms.spec import PhantomSpec
from export.phantoms.trunk import new_canvas, paint_soft_tissue

__all__ = ["HU_MAX", "HU_MIN", "PADDING_HU", "LesionTruth", "Phantom", "make_phantom"]
_REGION_LEVELS = {"thoracic": ("T3", "T10"), "thoracolumbar": ("T11", "L1"), "lumbar": ("L2", "L4")}


@dataclass
class LesionTruth:
    """Ground truth of one lesion, measured on the labelled voxels."""

    id: int
    kind: str  # lytic | blastic | mixed
    site: str  # vertebral_body | pedicle | rib
    centre_mm: tuple[float, float, float]  # patient x, y, z (DICOM LPS)
    diameter_mm: float  # of the generated ellipsoid, before clipping to bone
    volume_ml: float  # of the labelled voxels
    slice_range: tuple[int, int]  # first, last slice index in ascending z
    level: str = ""  # vertebra (T8) or rib (rib L7)
    voxels: int = 0
    bbox_px: dict[str, tuple[int, int]] = field(default_factory=dict)  # slice/row/col, inclusive
    slices: tuple[int, ...] = ()  # slice indices holding this lesion's label


@dataclass
class VariantTruth:
    """A normal variant that mimics a metastasis (see variants.py); not in the labels."""

    kind: str
    level: str
    diameter_mm: float
    z_mm: float
    slices: tuple[int, ...]  # slice indices where it is drawn
    bbox_px: dict[str, tuple[int, int]] = field(default_factory=dict)  # slice/row/col, inclusive


@dataclass
class Phantom:
    """A synthetic CT study in memory; arrays are (Z, Y, X) with z ascending."""

    spec: PhantomSpec
    hounsfield: NDArray[np.int16]
    labels: NDArray[np.uint8]  # 1 = metastasis
    lesions: list[LesionTruth]
    origin_mm: tuple[float, float, float]  # x, y, z of pixel (0, 0) of slice 0
    pixel_spacing: tuple[float, float]  # row, column spacing (mm)
    slice_positions_z: list[float]
    bone: NDArray[np.bool_] = field(repr=False, default_factory=lambda: np.zeros(0, bool))
    variants: list[VariantTruth] = field(default_factory=list)  # normal, never labelled
    # Pedicle screws and rods (spec.metal): the levels they fix, the slices that show them.
    metal_levels: tuple[str, ...] = ()
    metal_slices: tuple[int, ...] = ()

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.hounsfield.shape  # type: ignore[return-value]


def make_phantom(spec: PhantomSpec) -> Phantom:
    """Draw the study described by ``spec`` (pure: no I/O, same spec -> same arrays)."""
    rng = np.random.default_rng([spec.seed, 1])
    anatomy = build_anatomy(spec, rng)
    fine, coarse = textures(rng)
    grid = _grid(spec, rng)
    slice_z = _slice_positions(spec, anatomy, rng)
    lesions = place_lesions(spec, anatomy, np.random.default_rng([spec.seed, 2]), slice_z,
                            visible=lambda u, v: _in_view(grid, u, v, spec.fov_padding))
    noise = np.random.default_rng([spec.seed, 3])
    shape = (spec.slices, spec.size, spec.size)
    hounsfield = np.empty(shape, np.int16)
    labels = np.zeros(shape, np.uint8)
    bone = np.zeros(shape, bool)
    fov = _fov_mask(grid) if spec.fov_padding else None
    tracker = _Tracker(lesions)
    variants = _Extents()
    metal_rng = np.random.default_rng([spec.seed, 7])
    fixation = (plan_fixation(anatomy, lesions, slice_z, metal_rng)
                if spec.metal != "none" else None)
    draw = _SlabDrawer(anatomy, lesions, (fine, coarse), grid, fov, fixation, metal_rng)
    offsets = _sub_slices(spec)
    for k, z in enumerate(slice_z):
        hu, bone[k], painted = draw.slab(float(z), offsets, k, variants)
        for lesion_id, win, label in painted:
            labels[k][win] |= label
            tracker.add(lesion_id, k, win, label)
        hounsfield[k] = finish(hu, spec, noise, fov)
    if fov is not None:
        bone &= fov
    return Phantom(
        spec=spec, hounsfield=hounsfield, labels=labels,
        lesions=tracker.truths(grid, spec, slice_z),
        origin_mm=(grid.x0, grid.y0, float(slice_z[0])),
        pixel_spacing=(spec.pixel_spacing_mm, spec.pixel_spacing_mm),
        slice_positions_z=[float(z) for z in slice_z], bone=bone,
        variants=_variant_truths(anatomy, variants, fov),
        metal_levels=tuple(vb.name for vb in fixation.levels) if fixation else (),
        metal_slices=tuple(sorted(draw.metal_slices)),
    )


class _Extents:
    """Per key (a lesion id, a variant's index): the slices it is drawn on and its pixel box."""

    def __init__(self) -> None:
        self.slices: dict[int, list[int]] = {}
        self.boxes: dict[int, list[int]] = {}  # k0, k1, r0, r1, c0, c1 (inclusive)

    def add(self, key: int, k: int, win: tuple[slice, slice], pixels: NDArray[np.bool_]) -> int:
        """Slice ``k`` shows ``pixels`` (in window ``win``) of ``key``; returns their count."""
        rows, cols = np.nonzero(pixels)
        slices = self.slices.setdefault(key, [])
        if not slices or slices[-1] != k:  # a thick slice draws each thin one it averages
            slices.append(k)
        r0, r1 = win[0].start + int(rows.min()), win[0].start + int(rows.max())
        c0, c1 = win[1].start + int(cols.min()), win[1].start + int(cols.max())
        box = self.boxes.setdefault(key, [k, k, r0, r1, c0, c1])
        box[1] = k
        box[2], box[3] = min(box[2], r0), max(box[3], r1)
        box[4], box[5] = min(box[4], c0), max(box[5], c1)
        return int(rows.size)

    def bbox(self, key: int) -> dict[str, tuple[int, int]]:
        k0, k1, r0, r1, c0, c1 = self.boxes[key]
        return {"slice": (k0, k1), "row": (r0, r1), "col": (c0, c1)}


def _variant_truths(anatomy: Anatomy, drawn: _Extents,
                    fov: NDArray[np.bool_] | None) -> list[VariantTruth]:
    """The variants drawn in the image, with their slices and pixel boxes."""
    found = []
    for index, variant in enumerate(anatomy.variants or ()):
        if index not in drawn.boxes:
            continue
        box = drawn.bbox(index)
        (r0, r1), (c0, c1) = box["row"], box["col"]
        if fov is not None and not fov[r0:r1 + 1, c0:c1 + 1].any():
            continue  # drawn outside the reconstruction circle: not in the image
        found.append(VariantTruth(
            kind=variant.kind, level=variant.level,
            diameter_mm=round(variant.diameter_mm, 1), z_mm=round(variant.z, 2),
            slices=tuple(drawn.slices[index]), bbox_px=box,
        ))
    return found


def _grid(spec: PhantomSpec, rng: np.random.Generator) -> Grid:
    """Reconstruction centre, patient placement on the table and in-plane rotation."""
    sp, n = spec.pixel_spacing_mm, spec.size
    centre = (rng.uniform(-15, 15), rng.uniform(-30, 30))
    origin = (round(centre[0] - 0.5 * (n - 1) * sp, 4), round(centre[1] - 0.5 * (n - 1) * sp, 4))
    body = (centre[0] + rng.uniform(-20, 20), centre[1] + rng.uniform(-15, 25))
    return make_grid(n, n, sp, origin, body, rng.uniform(-0.07, 0.07))


def _slice_positions(spec: PhantomSpec, anatomy: Anatomy,
                     rng: np.random.Generator) -> NDArray[np.float64]:
    spine = anatomy.spine
    top, bottom = _REGION_LEVELS[spec.region]
    centre = rng.uniform(spine.by_name(bottom).z_mid, spine.by_name(top).z_mid)
    half = 0.5 * spec.coverage_mm
    high, low = spine.by_name("T1").z_top + 10 - half, spine.by_name("L5").z_bottom - 10 + half
    centre = 0.5 * (high + low) if high < low else min(high, max(low, centre))
    first = round(centre - half, 3)
    return np.round(first + spec.slice_spacing_mm * np.arange(spec.slices), 4)


def _in_view(grid: Grid, u: float, v: float, circle: bool) -> bool:
    """True when body-frame point (u, v) lies 8 mm or more inside the image (or its circle)."""
    row, col = grid.to_pixel(u, v)
    margin = 8.0 / grid.spacing
    if circle:
        radius = np.hypot(row - (grid.rows - 1) / 2, col - (grid.cols - 1) / 2)
        return bool(radius <= grid.rows / 2 - margin)
    return margin <= row <= grid.rows - 1 - margin and margin <= col <= grid.cols - 1 - margin


def _fov_mask(grid: Grid) -> NDArray[np.bool_]:
    r = np.hypot(np.arange(grid.rows) - (grid.rows - 1) / 2,
                 (np.arange(grid.cols) - (grid.cols - 1) / 2)[:, None]).T
    inside: NDArray[np.bool_] = r <= grid.rows / 2
    return inside


def _sub_slices(spec: PhantomSpec) -> tuple[float, ...]:
    """z offsets of the thin slices a slice averages: three across a thick slice's width
    under ``partial_volume``, else the slice's own plane."""
    if not spec.partial_volume or spec.slice_thickness_mm <= 1.25:
        return (0.0,)
    third = spec.slice_thickness_mm / 3.0
    return (-third, 0.0, third)


Painted = list[tuple[int, Window, NDArray[np.bool_]]]


class _SlabDrawer:
    """Draws one slice: a thin plane, or the average of the thin planes a thick one spans."""

    def __init__(self, anatomy: Anatomy, lesions: list[Lesion], tex: tuple[Texture, Texture],
                 grid: Grid, fov: NDArray[np.bool_] | None, fixation: Fixation | None,
                 metal_rng: np.random.Generator) -> None:
        self.anatomy, self.lesions, self.grid, self.fov = anatomy, lesions, grid, fov
        self.fine, self.coarse = tex
        self.fixation, self.metal_rng = fixation, metal_rng
        self.metal_slices: set[int] = set()

    def plane(self, z: float, k: int, variants: _Extents) -> tuple[
            NDArray[np.float32], NDArray[np.bool_], Painted]:
        """HU, bone and each lesion's label at plane z (drawn into slice ``k``)."""
        canvas = new_canvas(self.grid, self.anatomy, z)
        paint_soft_tissue(canvas, self.anatomy, self.coarse)
        for index, win, pixels in paint_skeleton(canvas, self.anatomy, self.fine):
            variants.add(index, k, win, pixels)
        bone = canvas.bone_sdf < 0
        painted: Painted = []
        for lesion_id, win, label in paint_lesions(canvas, self.lesions, self.fine, self.coarse):
            if self.fov is not None:
                label = label & self.fov[win]
                if not label.any():
                    continue
            painted.append((lesion_id, win, label))
        if self.fixation is not None:
            metal = paint_fixation(canvas, self.fixation, self.metal_rng)
            if metal is not None:  # the pixel is metal now, not tumour
                self.metal_slices.add(k)
                painted = [(i, win, label & ~metal[win]) for i, win, label in painted]
                painted = [item for item in painted if item[2].any()]
        return canvas.hu, bone, painted

    def slab(self, z: float, offsets: tuple[float, ...], k: int,
             variants: _Extents) -> tuple[NDArray[np.float32], NDArray[np.bool_], Painted]:
        """The slice at z: its planes averaged; a pixel is bone or lesion where most are."""
        if len(offsets) == 1:
            return self.plane(z, k, variants)
        planes = [self.plane(z + dz, k, variants) for dz in offsets]
        hu = np.mean([p[0] for p in planes], axis=0, dtype=np.float32)
        bone = 2 * np.sum([p[1] for p in planes], axis=0) > len(planes)
        votes: dict[int, NDArray[np.int8]] = {}
        for _, _, painted in planes:
            for lesion_id, win, label in painted:
                votes.setdefault(lesion_id, np.zeros(hu.shape, np.int8))[win] += label
        full = (slice(0, hu.shape[0]), slice(0, hu.shape[1]))
        majority = [(i, full, 2 * v > len(planes)) for i, v in votes.items()]
        return hu, bone, [item for item in majority if item[2].any()]


class _Tracker:
    """Accumulates each lesion's labelled voxels slice by slice."""

    def __init__(self, lesions: list[Lesion]) -> None:
        self.lesions = {les.id: les for les in lesions}
        self.voxels = dict.fromkeys(self.lesions, 0)
        self.extents = _Extents()

    def add(self, lesion_id: int, k: int, win: tuple[slice, slice],
            label: NDArray[np.bool_]) -> None:
        self.voxels[lesion_id] += self.extents.add(lesion_id, k, win, label)

    def truths(self, grid: Grid, spec: PhantomSpec,
               slice_z: NDArray[np.float64]) -> list[LesionTruth]:
        voxel_ml = spec.pixel_spacing_mm**2 * spec.slice_spacing_mm / 1000.0
        out: list[LesionTruth] = []
        for lesion_id, les in self.lesions.items():
            if lesion_id not in self.extents.boxes:
                continue  # fell outside the reconstruction circle
            box = self.extents.bbox(lesion_id)
            x, y = grid.to_patient(les.u, les.v)
            out.append(LesionTruth(
                id=len(out) + 1, kind=les.kind, site=les.site,
                centre_mm=(round(x, 2), round(y, 2), round(les.z, 2)),
                diameter_mm=round(les.diameter_mm, 2),
                volume_ml=round(self.voxels[lesion_id] * voxel_ml, 4),
                slice_range=box["slice"], level=les.level, voxels=self.voxels[lesion_id],
                bbox_px=box, slices=tuple(self.extents.slices[lesion_id]),
            ))
        return out

