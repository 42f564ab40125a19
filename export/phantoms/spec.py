"""What a phantom study is made of: scanner settings and the few anatomy knobs worth naming.

:func:`sample_spec` draws a plausible scanner and patient from a seed. Every field is drawn
whether or not it is overridden, so overriding one field (``encoding="rle"``) leaves the
others exactly as the seed alone would have made them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

import numpy as np

from export.phantoms.draws import categorical as _categorical
from export.phantoms.draws import noise_for as _noise_for
from export.phantoms.draws import spacing_for as _spacing_for
from export.phantoms.draws import uniform as _uniform

ENCODINGS = ("none", "jpeg2000", "rle")
REGIONS = ("thoracic", "lumbar", "thoracolumbar")
CONTRASTS = ("none", "arterial", "venous", "delayed")
# The seed alone draws these three; "delayed" (excreted contrast in the kidneys) is asked for.
DRAWN_CONTRASTS = CONTRASTS[:3]
# Reconstruction kernels: noise texture and edge sharpness (kernels.py); "standard" is the
# look every phantom had before kernels were an option.
KERNELS = ("soft", "standard", "sharp")
METALS = ("none", "spinal_fixation")
LESION_KINDS = ("lytic", "blastic", "mixed")
LESION_SITES = ("vertebral_body", "pedicle", "rib")
INSTANCE_ORDERS = ("head_first", "feet_first")
INTERCEPTS = (-1024, 0)
MARROW_HU = (140.0, 270.0)
MARROW_HU_LIMITS = (0.0, 400.0)

# Longest stretch of spine the anatomy can cover (T1 top to L5 bottom, small patient).
MAX_COVERAGE_MM = 400.0
THICKNESSES_MM = (0.625, 1.0, 1.25, 2.0, 2.5, 3.0, 5.0)

T = TypeVar("T")


@dataclass(frozen=True)
class PhantomSpec:
    """Scanner settings and anatomy knobs of one synthetic CT study."""

    seed: int
    slices: int = 64
    size: int = 512
    pixel_spacing_mm: float = 0.78125
    slice_thickness_mm: float = 2.5
    slice_spacing_mm: float = 2.5
    intercept: int = -1024
    signed: bool = True
    noise_hu: float = 15.0
    blur_mm: float = 0.5
    encoding: str = "none"
    n_lesions: int = 2
    lesion_kind: str = "any"
    lesion_site: str = "any"
    region: str = "thoracolumbar"
    contrast: str = "venous"
    oral_contrast: bool = False
    body_scale: float = 1.0
    arms_down: bool = False
    fov_padding: bool = False
    instance_order: str = "head_first"
    # A patient's vertebral trabecular density is drawn from this range (HU). The default is
    # normal adult bone; osteoporotic vertebrae read below about 110 HU, where the marrow is
    # nearly as dark as a lytic lesion's soft tissue (15-75 HU).
    marrow_hu: tuple[float, float] = MARROW_HU
    # Normal variants that mimic metastases (bone islands, haemangiomas, Schmorl's nodes,
    # fatty marrow, a basivertebral channel of varying shape): see variants.py. Off by
    # default, so the plain phantoms, and every figure measured on them, stay as they were.
    bone_variants: bool = False
    # Variety for training (domain randomisation), each off by default: the reconstruction
    # kernel; titanium pedicle screws and rods with their streaks (metal.py); thick slices
    # as the average of three thin ones (partial volume, for slices over 1.25 mm).
    kernel: str = "standard"
    metal: str = "none"
    partial_volume: bool = False
    # sample_spec draws the look (kernel, contrast phase, metal, partial volume, matrix,
    # intercept, patient size, dose, marrow range, normal variants) from its own stream
    # (randomise.py): the same seed's anatomy and lesions, a different scanner and patient.
    randomise: bool = False

    def __post_init__(self) -> None:
        try:
            low, high = (float(x) for x in self.marrow_hu)
        except (TypeError, ValueError):
            raise ValueError(
                f"marrow_hu must be (LOW, HIGH) in HU, got {self.marrow_hu!r}") from None
        object.__setattr__(self, "marrow_hu", (low, high))  # JSON gives a list
        _check(self.slices >= 1, f"slices must be >= 1, got {self.slices}")
        _check(32 <= self.size <= 1024, f"size must be 32..1024, got {self.size}")
        _check(0.2 <= self.pixel_spacing_mm <= 2.0, "pixel_spacing_mm must be 0.2..2.0")
        _check(self.slice_thickness_mm > 0 and self.slice_spacing_mm > 0, "slice sizes > 0")
        _check(self.intercept in INTERCEPTS, f"intercept must be -1024 or 0, got {self.intercept}")
        # PS3.3 C.7.6.3.1.4: unsigned storage cannot hold air (-1000 HU) with intercept 0.
        _check(self.signed or self.intercept == -1024, "unsigned storage needs intercept -1024")
        _check(self.signed or not self.fov_padding, "the -2000 HU FOV padding needs signed storage")
        _check(self.noise_hu >= 0 and self.blur_mm >= 0, "noise_hu and blur_mm must be >= 0")
        _check(self.n_lesions >= 0, "n_lesions must be >= 0")
        _check(0.5 <= self.body_scale <= 1.5, "body_scale must be 0.5..1.5")
        _check(MARROW_HU_LIMITS[0] <= low <= high <= MARROW_HU_LIMITS[1],
               f"marrow_hu must be LOW <= HIGH within {MARROW_HU_LIMITS}, got {self.marrow_hu}")
        for name, allowed in (
            ("encoding", ENCODINGS),
            ("lesion_kind", ("any", *LESION_KINDS)),
            ("lesion_site", ("any", *LESION_SITES)),
            ("region", REGIONS),
            ("contrast", CONTRASTS),
            ("instance_order", INSTANCE_ORDERS),
            ("kernel", KERNELS),
            ("metal", METALS),
        ):
            value = getattr(self, name)
            _check(value in allowed, f"{name} must be one of {allowed}, got {value!r}")

    @property
    def negative(self) -> bool:
        """True when the study has no metastasis."""
        return self.n_lesions == 0

    @property
    def coverage_mm(self) -> float:
        """Distance between the centres of the first and last slice."""
        return (self.slices - 1) * self.slice_spacing_mm

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PhantomSpec:
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


class _Draw:
    """One uniform draw per field, so overrides never shift the later fields."""

    def __init__(self, seed: int, overrides: dict[str, Any]) -> None:
        self._rng = np.random.default_rng([0x5BEC, seed])
        self._overrides = overrides

    def value(self, name: str, draw: Callable[[float], T]) -> T:
        u = float(self._rng.random())
        if name in self._overrides:
            return self._overrides[name]  # type: ignore[no-any-return]
        return draw(u)


def _thickness_for(slices: int) -> Callable[[float], float]:
    fitting = [t for t in THICKNESSES_MM if (slices - 1) * t <= MAX_COVERAGE_MM]
    if not fitting:
        limit = int(MAX_COVERAGE_MM / THICKNESSES_MM[0]) + 1
        raise ValueError(f"{slices} slices do not fit the phantom's spine (at most {limit})")
    weights = [1.0, 0.6, 1.2, 0.8, 1.2, 0.8, 0.9][: len(fitting)]
    return _categorical(fitting, weights)


def _spacing_between(slices: int, thickness: float) -> Callable[[float], float]:
    def pick(u: float) -> float:
        overlap = thickness / 2
        # Overlapping reconstructions (spacing < thickness) are common at 1.25-2.5 mm.
        if u < 0.2 and thickness >= 1.25 and (slices - 1) * overlap <= MAX_COVERAGE_MM:
            return overlap
        return thickness

    return pick


_POSITIVE_COUNT = _categorical((1, 2, 3, 4, 5, 6), (0.3, 0.25, 0.18, 0.12, 0.08, 0.07))


def _lesion_count(u: float) -> int:
    return 0 if u < 0.4 else _POSITIVE_COUNT((u - 0.4) / 0.6)


def positive_lesion_count(seed: int) -> int:
    """Lesions (1-6, fewer more likely) of a study that must be positive."""
    return _POSITIVE_COUNT(float(np.random.default_rng([0x1E5, seed]).random()))


def sample_spec(seed: int, **overrides: Any) -> PhantomSpec:
    """Draw a scanner and patient from ``seed``; keyword arguments replace drawn fields.

    ``encoding="mixed"`` draws the encoding too (uncompressed, JPEG 2000 or RLE).
    ``randomise=True`` then redraws the look from its own stream (see randomise.py); fields
    given here are kept as given.
    """
    names = {f.name for f in fields(PhantomSpec)} - {"seed"}
    unknown = set(overrides) - names
    if unknown:
        raise TypeError(f"unknown PhantomSpec fields: {sorted(unknown)}")
    mixed = overrides.get("encoding") == "mixed"
    if mixed:
        overrides = {k: v for k, v in overrides.items() if k != "encoding"}
    d = _Draw(seed, overrides)
    scanner = _scanner(d, overrides, mixed)
    looks = {k: overrides.get(k, getattr(PhantomSpec, k))
             for k in ("kernel", "metal", "partial_volume", "randomise")}
    drawn = {**scanner, **_patient(d, scanner["signed"]), **looks}
    if drawn.get("randomise"):
        from export.phantoms.randomise import randomised_look

        drawn.update(randomised_look(seed, drawn, set(overrides)))
    return PhantomSpec(seed=seed, **drawn)


def _scanner(d: _Draw, overrides: dict[str, Any], mixed: bool) -> dict[str, Any]:
    slices = d.value("slices", lambda u: 64)
    size = d.value("size", _categorical((512, 256, 768), (0.8, 0.1, 0.1)))
    body_scale = d.value("body_scale", _uniform(0.82, 1.18))
    spacing = d.value("pixel_spacing_mm", _spacing_for(size, body_scale))
    thickness = d.value("slice_thickness_mm", _thickness_for(slices))
    # Storage: 0 signed/-1024, 1 signed/0, 2 unsigned/-1024 (unsigned cannot use intercept 0).
    storage = d.value("storage", _categorical((0, 1, 2), (0.35, 0.25, 0.4)))
    signed = d.value("signed", lambda u: storage != 2 or overrides.get("intercept") == 0)
    if mixed:
        encoding = _categorical(ENCODINGS, (0.5, 0.3, 0.2))(d.value("encoding_u", float))
    else:
        encoding = d.value("encoding", lambda u: "none")
    return {
        "slices": slices, "size": size, "body_scale": body_scale, "pixel_spacing_mm": spacing,
        "slice_thickness_mm": thickness, "signed": signed, "encoding": encoding,
        "slice_spacing_mm": d.value("slice_spacing_mm", _spacing_between(slices, thickness)),
        "intercept": d.value("intercept", lambda u: 0 if storage == 1 and signed else -1024),
        "noise_hu": d.value("noise_hu", _noise_for(thickness)),
        "blur_mm": d.value("blur_mm", _uniform(0.3, 0.7)),
        "instance_order": d.value("instance_order", _categorical(INSTANCE_ORDERS, (0.7, 0.3))),
        "fov_padding": d.value("fov_padding", lambda u: signed and u < 0.3),
    }


def _patient(d: _Draw, signed: bool) -> dict[str, Any]:
    return {
        "n_lesions": d.value("n_lesions", _lesion_count),
        "lesion_kind": d.value("lesion_kind", lambda u: "any"),
        "lesion_site": d.value("lesion_site", lambda u: "any"),
        "region": d.value("region", _categorical(REGIONS, (0.4, 0.35, 0.25))),
        "contrast": d.value("contrast", _categorical(DRAWN_CONTRASTS, (0.35, 0.25, 0.4))),
        "oral_contrast": d.value("oral_contrast", lambda u: u < 0.25),
        "arms_down": d.value("arms_down", lambda u: u < 0.25),
        "marrow_hu": d.value("marrow_hu", lambda u: MARROW_HU),
        "bone_variants": d.value("bone_variants", lambda u: False),
    }
