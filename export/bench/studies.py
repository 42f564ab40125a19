"""The CT studies the benchmark sends: phantoms where they fit, a simple synthetic trunk else.

Studies are written once under a cache folder and reused by later runs (writing 1,000
slices takes a while). The phantom generator (:mod:`export.phantoms`) covers at most the
spine's length (about 640 slices at 0.625 mm), so longer studies, and checkouts without a
finished phantom generator, get :func:`synthetic_volume`: air, an elliptic body, lungs, a
vertebra with a cortical ring, and two spherical lesions, with noise. What the benchmark
measures (bytes, CPU per slice, throughput) depends on slice count and size, barely on
what the slices show.
"""

from __future__ import annotations

import importlib
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

log = logging.getLogger(__name__)

SIZE = 512
PIXEL_SPACING_MM = 0.78125
INTERCEPT = -1024
MARKER = "study.json"
PHANTOM_LESIONS = 3


@dataclass(frozen=True)
class Study:
    """A study on disk: its DICOM files, in no particular order, and how it was made."""

    files: tuple[Path, ...]
    source: str  # "phantom" or "synthetic"
    slice_spacing_mm: float

    @property
    def slices(self) -> int:
        return len(self.files)

    @property
    def bytes_on_disk(self) -> int:
        return sum(path.stat().st_size for path in self.files)


def synthetic_slice(
    z_mm: float, rng: np.random.Generator, size: int = SIZE
) -> npt.NDArray[np.int16]:
    """One axial slice in HU at height ``z_mm`` (0 = the vertebra's centre), with noise."""
    grid = (np.arange(size, dtype=np.float32) - size / 2) * PIXEL_SPACING_MM
    y, x = grid[:, None], grid[None, :]
    hu = np.full((size, size), -1000.0, dtype=np.float32)
    hu[(x / 165.0) ** 2 + ((y - 10.0) / 120.0) ** 2 <= 1] = 40.0
    for side in (-1, 1):
        hu[((x - side * 75.0) / 55.0) ** 2 + ((y + 10.0) / 70.0) ** 2 <= 1] = -850.0
    # Vertebral bodies repeat every 30 mm; discs between them are soft tissue.
    in_body = abs((z_mm % 30.0) - 15.0) < 12.0
    radius = np.hypot(x, y - 60.0)
    if in_body:
        hu[radius <= 18.0] = 250.0
        hu[(radius > 18.0) & (radius <= 21.0)] = 1000.0
    for centre_z, centre_x, value in ((20.0, 6.0, 1200.0), (-35.0, -6.0, 30.0)):
        r = max(0.0, 7.0**2 - (z_mm - centre_z) ** 2) ** 0.5
        if r > 0 and in_body:
            hu[np.hypot(x - centre_x, y - 60.0) <= r] = value
    hu += rng.standard_normal((size, size), dtype=np.float32) * 15.0
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16)


def synthetic_volume(slices: int, spacing_mm: float, seed: int = 0) -> npt.NDArray[np.int16]:
    """``slices`` synthetic slices (Z, 512, 512), centred on z = 0 (small volumes only)."""
    rng = np.random.default_rng(seed)
    heights = (np.arange(slices) - (slices - 1) / 2) * spacing_mm
    return np.stack([synthetic_slice(float(z), rng) for z in heights])


def write_synthetic_study(folder: Path, slices: int, spacing_mm: float,
                          seed: int = 0) -> list[Path]:
    """Write ``slices`` synthetic CT files into ``folder``, slice by slice (bounded memory)."""
    from export.phantoms.ct_dicom import SeriesIdentity, ct_series, write_series

    rng = np.random.default_rng(seed)
    series = ct_series(SeriesIdentity.random("BENCH^SYNTHETIC", "BENCH-0001"),
                       rows=SIZE, columns=SIZE, pixel_spacing=[PIXEL_SPACING_MM] * 2,
                       slice_thickness=spacing_mm)
    named = ((f"slice{index:05d}.dcm", _slice(series, index, slices, spacing_mm, rng))
             for index in range(slices))
    return write_series(folder, named)


def _slice(series: Dataset, index: int, slices: int, spacing_mm: float,
           rng: np.random.Generator) -> Dataset:
    """Slice ``index`` of ``slices``: a CT Image (PS3.3 A.3) stored with intercept -1024."""
    from export.phantoms.ct_dicom import PixelFormat, ct_slice

    z = (index - (slices - 1) / 2) * spacing_mm
    stored = PixelFormat(intercept=INTERCEPT).stored(synthetic_slice(z, rng))
    return ct_slice(series, stored, position=[-200.0, -200.0, round(z, 4)],
                    instance_number=index + 1)


def _phantom_spec(slices: int, seed: int) -> tuple[Any, Any] | None:
    """(the phantoms module, a spec of ``slices`` slices), or None when none can be made."""
    # Looked up by name: the generator was being finished alongside this benchmark.
    phantoms = importlib.import_module("export.phantoms")
    if not all(hasattr(phantoms, name) for name in ("make_phantom", "sample_spec", "write_study")):
        return None
    try:
        # Lesions on: the trained model then marks some, and lesion tracking has work to do.
        return phantoms, phantoms.sample_spec(seed, slices=slices, size=SIZE, encoding="none",
                                              n_lesions=PHANTOM_LESIONS)
    except ValueError as exc:  # more slices than the phantom's spine spans
        log.info("no phantom of %d slices (%s); using synthetic slices", slices, exc)
        return None


def _write_phantom(folder: Path, slices: int, seed: int) -> tuple[list[Path], float] | None:
    """A phantom study, or None when the generator is missing or cannot make this many slices."""
    made = _phantom_spec(slices, seed)
    if made is None:
        return None
    phantoms, spec = made
    try:
        study = Path(phantoms.write_study(phantoms.make_phantom(spec), folder))
    except Exception as exc:  # noqa: BLE001 - any generator failure: synthetic slices will do
        log.warning("phantom generation failed (%s: %s); using synthetic slices",
                    type(exc).__name__, exc)
        shutil.rmtree(folder, ignore_errors=True)
        return None
    # dicom/ only: the study folder also holds the truth as a SEG object.
    return sorted((study / "dicom").glob("*.dcm")), float(spec.slice_spacing_mm)


def cached_study(cache: Path, slices: int, *, spacing_mm: float, seed: int = 0,
                 prefer_phantom: bool = True) -> Study:
    """The study of ``slices`` slices under ``cache``, written first if not there yet."""
    folder = cache / f"study-{slices}-{spacing_mm:g}mm-s{seed}{'' if prefer_phantom else '-syn'}"
    marker = folder / MARKER
    if marker.is_file():
        meta = json.loads(marker.read_text())
        files = tuple(folder / name for name in meta["files"])
        stale = (prefer_phantom and meta["source"] == "synthetic"
                 and _phantom_spec(slices, seed) is not None)  # the generator arrived since
        if not stale and all(path.is_file() for path in files):
            return Study(files, meta["source"], meta["slice_spacing_mm"])
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    made = _write_phantom(folder / "phantom", slices, seed) if prefer_phantom else None
    if made is not None:
        paths, spacing, source = made[0], made[1], "phantom"
    else:
        paths = write_synthetic_study(folder / "dicom", slices, spacing_mm, seed)
        spacing, source = spacing_mm, "synthetic"
    names = [str(path.relative_to(folder)) for path in paths]
    marker.write_text(json.dumps({"files": names, "source": source, "slice_spacing_mm": spacing}))
    return Study(tuple(paths), source, spacing)


def model_batches(
    files: Sequence[Path], batch: int, size: int = SIZE
) -> list[npt.NDArray[np.int16]]:
    """The study as the gateway feeds it to the model: int16 HU batches of ``batch`` slices."""
    from api.dicom.geometry import resize_to_model
    from api.dicom.series import load_slice_hounsfield, select_ct_series

    series = select_ct_series(list(files))
    stack = np.stack(
        [resize_to_model(load_slice_hounsfield(ref), size)[0] for ref in series.slices]
    )
    return [np.ascontiguousarray(stack[i:i + batch]) for i in range(0, len(stack), batch)]
