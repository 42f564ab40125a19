"""The same slice of one patient under several randomised looks (``randomise=True``).

    python -m export.phantoms.look_figure docs/evaluation/randomised-looks.png

The first column is the phantom as its seed draws it; each further column keeps the patient,
matrix and field of view and takes the look (kernel, contrast phase, metal, partial volume,
dose, marrow density, normal variants) from another seed's randomise stream. Top: the whole
slice in a soft-tissue window (40:400); bottom: the vertebra in the bone window (400:1800).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from api.inference.contract import BONE_WINDOW, Window
from api.lesions.render import window_grey
from export.phantoms.phantom import Phantom, make_phantom
from export.phantoms.randomise import randomised_look
from export.phantoms.spec import PhantomSpec, sample_spec

SOFT = Window(40, 400)
_TILE = 300
# What stays the patient's own, so that the columns show the same slice.
_KEPT = {"slices", "size", "pixel_spacing_mm", "body_scale", "n_lesions", "region", "seed"}


def base_spec(max_seed: int = 40) -> PhantomSpec:
    """The first seed whose middle slice shows a vertebral-body metastasis."""
    for seed in range(1, max_seed):
        spec = sample_spec(seed, slices=5, size=512, n_lesions=3, region="lumbar",
                           slice_thickness_mm=5.0, slice_spacing_mm=5.0)
        phantom = make_phantom(spec)
        if any(les.site == "vertebral_body" and 2 in les.slices for les in phantom.lesions):
            return spec
    raise ValueError(f"no seed below {max_seed} shows a vertebral-body lesion on its middle slice")


def looks(base: PhantomSpec, columns: int = 5) -> list[tuple[str, Phantom]]:
    """The default look, then randomised ones (one of them with metal), with captions."""
    out = [("default", make_phantom(base))]
    drawn = base.to_dict()
    metal_shown = False
    for look_seed in range(1, 200):
        if len(out) == columns + 1:  # the default and `columns` looks
            break
        look = randomised_look(look_seed, drawn, _KEPT)
        if look["metal"] != "none" and metal_shown:
            continue
        if look["metal"] == "none" and not metal_shown and len(out) == columns:
            continue  # keep the last column for a look with metal
        metal_shown |= look["metal"] != "none"
        spec = replace(base, **look, randomise=True)
        caption = (f"look {look_seed}: {spec.kernel}, {spec.contrast}, "
                   f"{'metal, ' if spec.metal != 'none' else ''}"
                   f"{'5 mm averaged, ' if spec.partial_volume else ''}"
                   f"noise {spec.noise_hu:.0f}, marrow {spec.marrow_hu[0]:.0f}-"
                   f"{spec.marrow_hu[1]:.0f}{', variants' if spec.bone_variants else ''}")
        out.append((caption, make_phantom(spec)))
    return out


def _tiles(phantom: Phantom, k: int, centre: tuple[int, int]) -> NDArray[np.uint8]:
    from PIL import Image

    whole = Image.fromarray(window_grey(phantom.hounsfield[k], SOFT)).resize((_TILE, _TILE))
    r, c = centre
    half = 50
    crop = phantom.hounsfield[k][r - half:r + half, c - half:c + half]
    bone = Image.fromarray(window_grey(crop, BONE_WINDOW)).resize(
        (_TILE, _TILE), Image.Resampling.NEAREST)
    return np.concatenate([np.asarray(whole), np.asarray(bone)], axis=0)


def draw(out: Path) -> Path:
    """Write the figure; return its path."""
    from PIL import Image, ImageDraw, ImageFont

    base = base_spec()
    columns = looks(base)
    lesion = next(les for les in columns[0][1].lesions if les.site == "vertebral_body")
    centre = (int(np.mean(lesion.bbox_px["row"])), int(np.mean(lesion.bbox_px["col"])))
    centre = (min(max(centre[0], 50), base.size - 50), min(max(centre[1], 50), base.size - 50))
    head = 50
    sheet = Image.new("L", (len(columns) * _TILE, head + 2 * _TILE), 255)
    pen = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=12)
    for i, (caption, phantom) in enumerate(columns):
        sheet.paste(Image.fromarray(_tiles(phantom, 2, centre)), (i * _TILE, head))
        words = caption.split(", ")
        for line, part in enumerate((words[:2], words[2:4], words[4:])):
            pen.text((i * _TILE + 4, 3 + 15 * line), ", ".join(part), fill=0, font=font)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, optimize=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m export.phantoms.look_figure",
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog="example:\n  python -m export.phantoms.look_figure "
               "docs/evaluation/randomised-looks.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out", type=Path, help="PNG to write")
    args = parser.parse_args(argv)
    print(draw(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
