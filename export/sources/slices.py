"""Where labelled CT comes from: phantoms made on the fly, DICOM series with SEG, NIfTI pairs.

Every reader returns a :class:`LabelledVolume` of axial slices already fitted to the
model's square input with :func:`api.dicom.geometry.resize_to_model` (the serving path's
own resize), the label resampled on the same grid. Label > 0 means metastasis.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from api.dicom.geometry import resize_to_model
from api.inference.contract import INPUT_SIZE

logger = logging.getLogger(__name__)

NIFTI_IMAGE_SUFFIX = "_image.nii.gz"
NIFTI_MASK_SUFFIX = "_mask.nii.gz"


# Where a source does not say where its slices lie, they are taken as this far apart: the
# demo context spacing, so a context model's neighbours are the adjacent slices.
UNKNOWN_SLICE_SPACING_MM = 2.5


@dataclass
class LabelledVolume:
    """Axial HU slices and their metastasis labels, both (Z, H, W) at the model's size.

    ``positions_mm``: each slice's position along the slice normal (mm, strictly
    ascending, in slice order), which a model with slice context needs to find its
    neighbours. Unknown (None), the slices are taken as evenly spaced
    :data:`UNKNOWN_SLICE_SPACING_MM` apart.
    """

    name: str
    hounsfield: npt.NDArray[np.int16]
    labels: npt.NDArray[np.uint8]
    positions_mm: npt.NDArray[np.float64] | None = None

    def __post_init__(self) -> None:
        if self.hounsfield.shape != self.labels.shape or self.hounsfield.ndim != 3:
            raise ValueError(
                f"{self.name}: hounsfield {self.hounsfield.shape} and labels "
                f"{self.labels.shape} must be equal (Z, H, W) shapes"
            )
        depth = self.hounsfield.shape[0]
        if self.positions_mm is None:
            self.positions_mm = np.arange(depth, dtype=np.float64) * UNKNOWN_SLICE_SPACING_MM
        self.positions_mm = np.asarray(self.positions_mm, dtype=np.float64)
        if self.positions_mm.shape != (depth,):
            raise ValueError(f"{self.name}: {self.positions_mm.shape} positions for {depth} slices")
        if depth > 1 and not np.all(np.diff(self.positions_mm) > 0):
            raise ValueError(f"{self.name}: slice positions must ascend strictly")

    @property
    def z(self) -> npt.NDArray[np.float64]:
        """Each slice's position (mm), ascending."""
        assert self.positions_mm is not None  # set in __post_init__
        return self.positions_mm


def fit_slices(
    name: str,
    hounsfield: npt.NDArray[np.integer[Any] | np.floating[Any]],
    labels: npt.NDArray[np.integer[Any] | np.bool_],
    size: int = INPUT_SIZE,
    positions_mm: npt.ArrayLike | None = None,
) -> LabelledVolume:
    """Fit (Z, rows, columns) HU and labels into (Z, size, size) as the gateway does;
    ``positions_mm`` are the slices' positions (None: unknown, see :class:`LabelledVolume`)."""
    depth = hounsfield.shape[0]
    fitted = np.empty((depth, size, size), dtype=np.int16)
    fitted_labels = np.empty((depth, size, size), dtype=np.uint8)
    info = np.iinfo(np.int16)
    for z in range(depth):
        plane = np.clip(np.rint(hounsfield[z]), info.min, info.max).astype(np.int16)
        fitted[z], _ = resize_to_model(plane, size)
        # Linear resampling of a 0/1 plane then rounding is a nearest-boundary resize on
        # exactly the grid the image used.
        label_plane, _ = resize_to_model((labels[z] > 0).astype(np.int16), size, pad_value=0)
        fitted_labels[z] = label_plane > 0
    positions = None if positions_mm is None else np.asarray(positions_mm, dtype=np.float64)
    return LabelledVolume(name, fitted, fitted_labels, positions)


def phantom_volume(seed: int, overrides: dict[str, Any] | None = None) -> LabelledVolume:
    """A synthetic CT phantom with known lesions, generated in memory from ``seed``."""
    from export.phantoms.phantom import make_phantom
    from export.phantoms.spec import sample_spec

    phantom = make_phantom(sample_spec(seed, **(overrides or {})))
    return fit_slices(
        f"phantom-{seed}", phantom.hounsfield, phantom.labels,
        positions_mm=phantom.slice_positions_z,
    )


def find_nifti_pairs(root: Path) -> list[tuple[Path, Path]]:
    """(image, mask) pairs: ``X_image.nii.gz`` with ``X_mask.nii.gz``, or ``images/X`` with
    ``labels/X``."""
    pairs = []
    for image in sorted(root.rglob(f"*{NIFTI_IMAGE_SUFFIX}")):
        mask = image.with_name(image.name[: -len(NIFTI_IMAGE_SUFFIX)] + NIFTI_MASK_SUFFIX)
        if mask.is_file():
            pairs.append((image, mask))
        else:
            logger.warning("%s has no %s beside it; skipped", image.name, NIFTI_MASK_SUFFIX)
    for images in sorted(p for p in root.rglob("images") if p.is_dir()):
        for image in sorted(images.glob("*.nii*")):
            mask = images.parent / "labels" / image.name
            if mask.is_file():
                pairs.append((image, mask))
            else:
                logger.warning("%s has no labels/%s; skipped", image, image.name)
    return pairs


def _to_axial(image: Any) -> npt.NDArray[np.float64]:
    """A NIfTI volume as (Z, rows, columns) in the DICOM axial display orientation.

    Rows run anterior to posterior and columns patient right to left (the LPS display of
    PS3.3 C.7.6.2.1.1), whatever the voxel order on disk.
    """
    import nibabel as nib

    orientations: Any = nib.orientations  # untyped module
    current = orientations.io_orientation(image.affine)
    target = orientations.axcodes2ornt(("L", "P", "S"))
    transform = orientations.ornt_transform(current, target)
    data = orientations.apply_orientation(np.asanyarray(image.dataobj), transform)
    # (columns=L, rows=P, slices=S) on disk order -> (slices, rows, columns)
    return np.asarray(data, dtype=np.float64).transpose(2, 1, 0)


def read_nifti_pair(image_path: Path, mask_path: Path) -> LabelledVolume:
    """A NIfTI HU volume and its label volume (label > 0 = metastasis)."""
    import nibabel as nib

    image: Any = nib.load(image_path)
    mask: Any = nib.load(mask_path)
    if image.shape[:3] != mask.shape[:3]:
        raise ValueError(
            f"{image_path.name} {image.shape} and {mask_path.name} {mask.shape} differ"
        )
    if not np.allclose(image.affine, mask.affine, atol=1e-3):
        raise ValueError(f"{image_path.name} and {mask_path.name} have different affines")
    # dataobj applies scl_slope/scl_inter, so the values are HU as stored by the converter.
    hounsfield = _to_axial(image)
    labels = _to_axial(mask) > 0
    name = image_path.name.removesuffix(".gz").removesuffix(".nii")
    positions = np.arange(len(hounsfield)) * _axial_spacing(image)
    return fit_slices(name, hounsfield, labels, positions_mm=positions)


def _axial_spacing(image: Any) -> float:
    """The distance between a NIfTI volume's axial slices (mm), from its affine."""
    import nibabel as nib

    orientations: Any = nib.orientations  # untyped module
    axes = orientations.io_orientation(image.affine)[:, 0]
    superior = int(np.flatnonzero(axes == 2)[0])  # the voxel axis running along S
    return float(np.linalg.norm(np.asarray(image.affine)[:3, superior]))
