"""PNG pictures of one slice: the lesion mask, and an overlay for people to look at.

Both are at the stored slice's own size, (rows, columns); masks from the model grid are
mapped there first with :meth:`api.dicom.geometry.ResizeMapping.mask_to_original`.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from scipy import ndimage

from api.inference.contract import Window
from api.inference.processing import window_unit
from api.lesions.components import PixelBox

OUTLINE_RGB = (255, 0, 0)  # red: stands out against grey and saturated white bone
BOX_RGB = (255, 255, 0)  # yellow, distinct from the outline
_CROSS = np.asarray(ndimage.generate_binary_structure(2, 1), dtype=np.bool_)


def mask_png(mask: NDArray[np.bool_]) -> bytes:
    """8-bit greyscale PNG of a bool (rows, columns) mask: lesion 255, background 0."""
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    return _png(Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)))


def window_grey(hounsfield: NDArray[np.int16], window: Window) -> NDArray[np.uint8]:
    """HU to 0..255 grey through ``window``: low -> 0, high -> 255, linear, rounded half up.

    A display window in the sense of PS3.3 C.11.2.1.2 (VOI LUT), linear and without its
    -0.5 / -1 offsets: ``grey = floor(window_unit(hu) * 255 + 0.5)``. In float64, not the
    model's float32: float32 moves a few HU of most windows by one grey level.
    """
    unit = window_unit(hounsfield, window, np.float64)
    grey: NDArray[np.uint8] = np.floor(unit * 255.0 + 0.5).astype(np.uint8)
    return grey


def outline(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """The mask's own edge pixels: those with a 4-neighbour outside it (or the image edge)."""
    inner = ndimage.binary_erosion(mask, structure=_CROSS, border_value=0)
    return np.asarray(mask & ~inner, dtype=np.bool_)


def overlay_png(
    hounsfield: NDArray[np.int16],
    mask: NDArray[np.bool_],
    window: Window,
    boxes: Sequence[PixelBox] = (),
) -> bytes:
    """RGB PNG: the slice in ``window`` as grey, lesion outlines red, ``boxes`` yellow.

    ``hounsfield`` and ``mask`` are (rows, columns) on the stored slice's grid; ``boxes`` are
    half-open boxes in those pixels, drawn as a one-pixel frame just outside the box (clipped to
    the image) so they never cover lesion pixels. Pixels inside a lesion keep their grey.
    """
    if hounsfield.ndim != 2 or hounsfield.shape != mask.shape:
        raise ValueError(f"slice {hounsfield.shape} and mask {mask.shape} differ")
    grey = window_grey(hounsfield, window)
    rgb = np.repeat(grey[:, :, np.newaxis], 3, axis=2)
    for box in boxes:
        rgb[_frame(box, mask.shape)] = BOX_RGB
    rgb[outline(mask)] = OUTLINE_RGB
    return _png(Image.fromarray(rgb))


def _frame(box: PixelBox, shape: tuple[int, ...]) -> NDArray[np.bool_]:
    """The ring of pixels one step outside ``box``, clipped to an image of ``shape``."""
    rows, columns = shape[0], shape[1]
    frame = np.zeros((rows + 2, columns + 2), dtype=np.bool_)  # padded by one on each side
    top, left, bottom, right = box.row0, box.col0, box.row1 + 1, box.col1 + 1
    frame[top : bottom + 1, left : right + 1] = True
    frame[top + 1 : bottom, left + 1 : right] = False
    return frame[1:-1, 1:-1]


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
