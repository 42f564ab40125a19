"""Slice geometry in patient space and the fit of a stored slice into the model's square input.

PS3.3 C.7.6.2 (Image Plane Module): ImagePositionPatient is the centre of the first stored
pixel; ImageOrientationPatient holds the direction cosines of the first row (the direction
in which the column index grows) and of the first column (the direction in which the row
index grows); PixelSpacing is (spacing between rows, spacing between columns).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

Vector = tuple[float, float, float]
Coordinate = TypeVar("Coordinate", float, NDArray[np.float64])

AIR_HU = -1024


@dataclass(frozen=True)
class PlaneGeometry:
    """Where one slice's pixels lie in patient space (PS3.3 C.7.6.2)."""

    origin: Vector  # ImagePositionPatient, centre of pixel (0,0), mm
    row_cosine: Vector  # IOP[0:3]: direction of increasing column index
    column_cosine: Vector  # IOP[3:6]: direction of increasing row index
    pixel_spacing: tuple[float, float]  # PixelSpacing: (between rows, between columns), mm
    rows: int
    columns: int

    @property
    def normal(self) -> Vector:
        """Unit slice normal, row_cosine x column_cosine (right-handed)."""
        n = np.cross(np.asarray(self.row_cosine), np.asarray(self.column_cosine))
        length = float(np.linalg.norm(n))
        if length == 0.0:
            raise ValueError("row and column cosines are parallel")
        n = n / length
        return (float(n[0]), float(n[1]), float(n[2]))

    def patient_point(self, row: float, column: float) -> Vector:
        """Patient coordinates (mm) of the centre of pixel (row, column); PS3.3 C.7.6.2.1.1."""
        row_step, column_step = self.pixel_spacing
        point = (
            np.asarray(self.origin)
            + np.asarray(self.row_cosine) * column_step * column
            + np.asarray(self.column_cosine) * row_step * row
        )
        return (float(point[0]), float(point[1]), float(point[2]))

    def projection(self, point: Vector) -> float:
        """Signed distance of ``point`` along the slice normal (mm), for sorting slices."""
        return float(np.dot(np.asarray(self.normal), np.asarray(point)))


@dataclass(frozen=True)
class ResizeMapping:
    """How a stored slice was fitted into the model's square input, and the way back."""

    original_shape: tuple[int, int]  # (rows, columns) as stored
    size: int  # model input size (square, 512)
    scale: float  # model pixels per original pixel (aspect kept; short side padded with air)
    offset: tuple[float, float]  # (row, column) offset in model pixels of the scaled image

    @classmethod
    def fit(cls, original_shape: tuple[int, int], size: int) -> ResizeMapping:
        """The mapping that scales the long side to ``size`` and centres the short side."""
        rows, columns = original_shape
        if rows <= 0 or columns <= 0 or size <= 0:
            raise ValueError(f"cannot fit shape {original_shape} into {size}")
        scale = size / max(rows, columns)
        scaled_rows, scaled_columns = _scaled_shape(original_shape, scale, size)
        # Integer offsets keep the scaled image on the model's pixel grid.
        offset = (float((size - scaled_rows) // 2), float((size - scaled_columns) // 2))
        return cls((rows, columns), size, scale, offset)

    @property
    def scaled_shape(self) -> tuple[int, int]:
        """(rows, columns) of the scaled image inside the square."""
        return _scaled_shape(self.original_shape, self.scale, self.size)

    @property
    def is_identity(self) -> bool:
        """True when the stored slice already is the model's square input."""
        return self.original_shape == (self.size, self.size)

    def to_original(self, row: Coordinate, column: Coordinate) -> tuple[Coordinate, Coordinate]:
        """Model pixel-centre coordinates to original pixel-centre coordinates."""
        # Pixel centres sit at index + 0.5 in edge coordinates; scaling acts on edges.
        return (
            (row - self.offset[0] + 0.5) / self.scale - 0.5,
            (column - self.offset[1] + 0.5) / self.scale - 0.5,
        )

    def to_model(self, row: Coordinate, column: Coordinate) -> tuple[Coordinate, Coordinate]:
        """Original pixel-centre coordinates to model pixel-centre coordinates."""
        return (
            (row + 0.5) * self.scale - 0.5 + self.offset[0],
            (column + 0.5) * self.scale - 0.5 + self.offset[1],
        )

    def mask_to_original(self, mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """A (size, size) model mask resampled (nearest pixel centre) onto the stored grid."""
        if mask.shape != (self.size, self.size):
            raise ValueError(f"mask shape {mask.shape} is not ({self.size}, {self.size})")
        if self.is_identity:
            return mask.astype(np.bool_, copy=True)
        rows, columns = self.original_shape
        model_rows, model_columns = self.to_model(
            np.arange(rows, dtype=np.float64), np.arange(columns, dtype=np.float64)
        )
        r = np.clip(np.rint(model_rows).astype(np.intp), 0, self.size - 1)
        c = np.clip(np.rint(model_columns).astype(np.intp), 0, self.size - 1)
        return np.asarray(mask[np.ix_(r, c)], dtype=np.bool_)


def _scaled_shape(original_shape: tuple[int, int], scale: float, size: int) -> tuple[int, int]:
    rows, columns = original_shape
    return (
        min(size, max(1, int(round(rows * scale)))),
        min(size, max(1, int(round(columns * scale)))),
    )


def resize_to_model(
    hounsfield: NDArray[np.int16], size: int, pad_value: int = AIR_HU
) -> tuple[NDArray[np.int16], ResizeMapping]:
    """Fit one HU slice into a (size, size) int16 square, keeping aspect, padding with air."""
    if hounsfield.ndim != 2:
        raise ValueError(f"expected one 2-D slice, got shape {hounsfield.shape}")
    mapping = ResizeMapping.fit((hounsfield.shape[0], hounsfield.shape[1]), size)
    if mapping.is_identity:
        return hounsfield.astype(np.int16, copy=False), mapping
    # Sample exactly where to_original says each model pixel centre lies, so that the
    # image and the coordinate mapping used for masks and lesions never disagree.
    from scipy import ndimage  # 14 MB resident: loaded by the first slice not 512 x 512

    inverse = 1.0 / mapping.scale
    shift = [(0.5 - o) * inverse - 0.5 for o in mapping.offset]
    scaled = ndimage.affine_transform(
        hounsfield.astype(np.float32),
        [inverse, inverse],
        offset=shift,
        output_shape=(size, size),
        order=1,
        mode="nearest",
    )
    out = np.clip(np.rint(scaled), np.iinfo(np.int16).min, np.iinfo(np.int16).max)
    out = out.astype(np.int16)
    inside_rows, inside_columns = _inside(mapping)
    out[~inside_rows, :] = pad_value
    out[:, ~inside_columns] = pad_value
    return out, mapping


def _inside(mapping: ResizeMapping) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Model rows and columns whose centres fall on the stored image (not the air padding)."""
    grid = np.arange(mapping.size, dtype=np.float64)
    rows, columns = mapping.to_original(grid, grid)
    return (
        (rows >= -0.5) & (rows < mapping.original_shape[0] - 0.5),
        (columns >= -0.5) & (columns < mapping.original_shape[1] - 0.5),
    )
