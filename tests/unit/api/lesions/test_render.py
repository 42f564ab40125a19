"""Mask and overlay PNGs, decoded and checked pixel by pixel."""

from __future__ import annotations

import io

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from api.inference.contract import BONE_WINDOW, Window
from api.lesions.components import PixelBox
from api.lesions.render import (
    BOX_RGB,
    OUTLINE_RGB,
    mask_png,
    outline,
    overlay_png,
    window_grey,
)


def _decode(png: bytes) -> tuple[str, NDArray[np.uint8]]:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(png)) as image:
        return image.mode, np.asarray(image)


def test_mask_png_is_exact_greyscale_at_slice_size() -> None:
    mask = np.zeros((20, 30), dtype=np.bool_)
    mask[3:7, 10:25] = True
    mask[15, 0] = True
    mode, pixels = _decode(mask_png(mask))
    assert mode == "L" and pixels.shape == (20, 30)
    np.testing.assert_array_equal(pixels, np.where(mask, 255, 0).astype(np.uint8))


def test_bone_window_grey_levels() -> None:
    hu = np.array([[-1024, -500, 400, 1300, 3000]], dtype=np.int16)
    # 400:1800 spans -500..1300; 400 HU is 127.5, rounded half up
    assert window_grey(hu, BONE_WINDOW).tolist() == [[0, 0, 128, 255, 255]]


def _grey_before_one_formula(hounsfield: NDArray[np.int16], window: Window) -> NDArray[np.uint8]:
    """window_grey as it was written before it shared processing's formula (the PNG bytes)."""
    scaled = (hounsfield.astype(np.float64) - window.low) / window.width * 255.0
    return np.clip(np.floor(scaled + 0.5), 0, 255).astype(np.uint8)


_EVERY_HU = np.arange(-32768, 32768, dtype=np.int16).reshape(256, 256)
_RANDOM_WINDOWS = [
    Window(float(level), float(width))
    for level, width in np.random.default_rng(18).uniform((-1000, 1), (1500, 4000), (40, 2))
]


@pytest.mark.parametrize(
    "window",
    [BONE_WINDOW, Window(150, 500), Window(40, 400), Window(-600, 1500), *_RANDOM_WINDOWS],
    ids=str,
)
def test_window_grey_is_byte_identical_over_the_whole_int16_range(window: Window) -> None:
    # float32 (the model's precision) differs from these bytes at a few HU of most windows.
    np.testing.assert_array_equal(
        window_grey(_EVERY_HU, window), _grey_before_one_formula(_EVERY_HU, window)
    )


def test_outline_is_the_inner_edge() -> None:
    mask = np.zeros((7, 7), dtype=np.bool_)
    mask[1:6, 1:6] = True
    edge = outline(mask)
    assert edge.sum() == 16 and not edge[2:5, 2:5].any() and edge[1, 1:6].all()


def test_overlay_colours_outline_and_box_and_keeps_interior_grey() -> None:
    rng = np.random.default_rng(0)
    hu = rng.integers(-1000, 1500, size=(40, 50)).astype(np.int16)
    mask = np.zeros((40, 50), dtype=np.bool_)
    mask[10:20, 12:30] = True
    box = PixelBox(10, 12, 20, 30)
    mode, pixels = _decode(overlay_png(hu, mask, BONE_WINDOW, boxes=[box]))
    assert mode == "RGB" and pixels.shape == (40, 50, 3)
    grey = window_grey(hu, BONE_WINDOW)
    edge = outline(mask)
    frame = np.zeros_like(mask)
    frame[9:21, 11:31] = True
    frame[10:20, 12:30] = False
    assert (pixels[edge] == OUTLINE_RGB).all()
    assert (pixels[frame] == BOX_RGB).all()
    plain = ~edge & ~frame
    for channel in range(3):
        np.testing.assert_array_equal(pixels[..., channel][plain], grey[plain])
    assert plain[11:19, 13:29].all()  # lesion interior stays grey


def test_box_frame_clips_at_the_image_edge() -> None:
    hu = np.zeros((8, 8), dtype=np.int16)
    mask = np.zeros((8, 8), dtype=np.bool_)
    _, pixels = _decode(overlay_png(hu, mask, BONE_WINDOW, boxes=[PixelBox(0, 0, 3, 8)]))
    coloured = (pixels == BOX_RGB).all(axis=2)
    assert coloured.sum() == 8 and coloured[3].all()


def test_overlay_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        overlay_png(np.zeros((4, 4), np.int16), np.zeros((4, 5), np.bool_), BONE_WINDOW)
