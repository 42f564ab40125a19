"""How the gallery draws a finding: a windowed crop with both outlines, and the contact
sheet of crops with their captions."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from api.inference.contract import Window
from api.lesions.render import OUTLINE_RGB, outline, window_grey
from export.evaluation.metrics import SliceComponents

__all__ = ["REFERENCE_RGB", "Finding", "crop_box", "draw_tile", "fit_text", "write_sheet"]

REFERENCE_RGB = (0, 220, 0)  # green: the reference; the model's outline is the overlay's red
PREDICTED_RGB = OUTLINE_RGB
_ZOOM = 2  # each crop pixel drawn as 2 x 2, so one-pixel outlines stay visible
_COLUMNS = 6
_MARGIN, _LINE = 8, 15  # pixels of the contact sheet: gaps, and a line of 12 px text
_SHEET_MIN_WIDTH = 640  # room for the title and legend


@dataclass(frozen=True)
class Finding:
    """One missed reference component or one false detection, drawn.

    ``slice_index`` is the slice's position in the study as evaluated (0-based; ascending z
    for phantoms). ``score`` is the model's largest probability under the component (0..255).
    """

    study: str
    slice_index: int
    pixels: int
    score: int
    rgb: NDArray[np.uint8] = field(repr=False, compare=False)

    @property
    def caption(self) -> str:
        return f"{self.study} #{self.slice_index}\n{self.pixels} px, p {self.score / 255:.2f}"


def crop_box(component: NDArray[np.bool_], size: int) -> tuple[int, int]:
    """Top-left (row, column) of a ``size`` x ``size`` crop centred on the component's box.

    The crop may reach past the slice's edges (the caller pads); its centre is the box's.
    """
    rows = np.flatnonzero(component.any(axis=1))
    columns = np.flatnonzero(component.any(axis=0))
    if not len(rows):
        raise ValueError("the component is empty")
    centre_row = (int(rows[0]) + int(rows[-1])) // 2
    centre_column = (int(columns[0]) + int(columns[-1])) // 2
    return centre_row - size // 2, centre_column - size // 2


def _cut(
    image: NDArray[np.generic], top: int, left: int, size: int, fill: float
) -> NDArray[np.generic]:
    """``image[top:top+size, left:left+size]``, padded with ``fill`` where it leaves the image."""
    out = np.full((size, size), fill, dtype=image.dtype)
    rows, columns = image.shape
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + size, rows), min(left + size, columns)
    if r0 < r1 and c0 < c1:
        out[r0 - top : r1 - top, c0 - left : c1 - left] = image[r0:r1, c0:c1]
    return out


def _zoom(image: NDArray[np.generic]) -> NDArray[np.generic]:
    """Each pixel as a _ZOOM x _ZOOM block (rows and columns; trailing axes kept)."""
    return np.repeat(np.repeat(image, _ZOOM, axis=0), _ZOOM, axis=1)


def draw_tile(
    hounsfield: NDArray[np.int16],
    components: SliceComponents,
    mask: NDArray[np.bool_],
    crop: int,
    window: Window,
) -> NDArray[np.uint8]:
    """The ``crop``-pixel square around ``mask`` in ``window``, zoomed, with the reference
    outlined green and the model's red."""
    top, left = crop_box(mask, crop)
    hu = _cut(hounsfield, top, left, crop, fill=window.low)
    grey = window_grey(hu.astype(np.int16), window)
    rgb = _zoom(np.repeat(grey[:, :, np.newaxis], 3, axis=2))
    for labels, colour in ((components.truth, REFERENCE_RGB),
                           (components.predicted, PREDICTED_RGB)):
        rgb[_edges(labels > 0, top, left, crop)] = colour
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def _edges(mask: NDArray[np.bool_], top: int, left: int, crop: int) -> NDArray[np.bool_]:
    """The mask's outline within the zoomed crop: cut a pixel wider, so a component that
    runs past the crop gets no false edge along the crop's border."""
    wider = _cut(mask, top - 1, left - 1, crop + 2, fill=False)
    edges = outline(_zoom(wider).astype(np.bool_))
    return edges[_ZOOM:-_ZOOM, _ZOOM:-_ZOOM]



def write_sheet(
    findings: Sequence[Finding], path: Path, title: str, none: str, window: Window
) -> None:
    """A contact sheet of ``findings`` (captions under each tile), or one line saying none."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=12)
    legend = (
        f"window {window}; reference outline green, model outline red; "
        "p: the model's largest probability under the component"
    )
    if not findings:
        sheet = Image.new("RGB", (_SHEET_MIN_WIDTH, 2 * _LINE + 3 * _MARGIN), "white")
        draw = ImageDraw.Draw(sheet)
        draw.text((_MARGIN, _MARGIN), none, fill="black", font=font)
        draw.text((_MARGIN, _MARGIN + _LINE + _MARGIN), title, fill="dimgray", font=font)
        sheet.save(path)
        return
    tile = findings[0].rgb.shape[0]
    columns = min(_COLUMNS, len(findings))
    rows = math.ceil(len(findings) / columns)
    cell_width, cell_height = tile + _MARGIN, tile + 2 * _LINE + _MARGIN
    header = 2 * _LINE + 2 * _MARGIN
    width = max(_SHEET_MIN_WIDTH, columns * cell_width + _MARGIN)
    sheet = Image.new("RGB", (width, header + rows * cell_height), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((_MARGIN, _MARGIN), title, fill="black", font=font)
    draw.text((_MARGIN, _MARGIN + _LINE), legend, fill="dimgray", font=font)
    for k, finding in enumerate(findings):
        left = _MARGIN + (k % columns) * cell_width
        top = header + (k // columns) * cell_height
        sheet.paste(Image.fromarray(finding.rgb), (left, top))
        for line, text in enumerate(finding.caption.splitlines()):
            text = fit_text(text, tile, lambda t: draw.textlength(t, font=font))
            draw.text((left, top + tile + 2 + line * _LINE), text, fill="black", font=font)
    sheet.save(path)


def fit_text(text: str, width: float, length: Callable[[str], float]) -> str:
    """``text``, or its start and end around an ellipsis, within ``width`` as ``length``
    measures it: a long series name keeps its scanner prefix and its distinguishing end."""
    if length(text) <= width:
        return text
    keep = len(text)
    while keep > 1:
        keep -= 1
        head = (keep + 1) // 2
        shorter = text[:head] + "\u2026" + text[len(text) - (keep - head):]
        if length(shorter) <= width:
            return shorter
    return "\u2026"
