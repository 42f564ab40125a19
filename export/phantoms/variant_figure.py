"""Draw each normal variant next to the same slice without it: what a model must not report.

    python -m export.phantoms.variant_figure docs/evaluation/mimic-phantoms/variants.png

One row per kind, from the first phantom seeds that show it well: the slice without the
variant and with it in the marrow window (150:500), then with it in the bone window (400:1800).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from api.inference.contract import BONE_WINDOW, Window
from api.lesions.render import window_grey
from export.phantoms.phantom import make_phantom
from export.phantoms.spec import sample_spec
from export.phantoms.variants import VARIANT_KINDS

_CROP = 40  # half-size of a crop, pixels
MARROW = Window(150, 500)
_NAMES = {"basivertebral_channel": "basivertebral channel", "bone_island": "bone island",
          "haemangioma": "haemangioma", "schmorl_node": "Schmorl's node",
          "fatty_marrow": "focal fatty marrow"}
_ZOOM = 3


def find_examples(max_seed: int = 80) -> dict[str, tuple[int, NDArray[np.uint8]]]:
    """Per kind: (seed, row of three crops), from the first seed that changes >= 20 pixels."""
    rows: dict[str, tuple[int, NDArray[np.uint8]]] = {}
    for seed in range(1, max_seed):
        if len(rows) == len(VARIANT_KINDS):
            break
        spec = sample_spec(seed, slices=40, size=512, n_lesions=0)
        plain = None  # made only when the seed has a kind still missing
        varied = make_phantom(sample_spec(seed, slices=40, size=512, n_lesions=0,
                                          bone_variants=True))
        for variant in varied.variants:
            if variant.kind in rows:
                continue
            plain = plain if plain is not None else make_phantom(spec)
            k = variant.slices[len(variant.slices) // 2]
            changed = np.abs(varied.hounsfield[k].astype(np.int32)
                             - plain.hounsfield[k].astype(np.int32)) > 30
            if changed.sum() < 20:
                continue
            r, c = np.argwhere(changed).mean(axis=0).astype(int)
            r0 = int(np.clip(r - _CROP, 0, spec.size - 2 * _CROP))
            c0 = int(np.clip(c - _CROP, 0, spec.size - 2 * _CROP))
            box = (slice(r0, r0 + 2 * _CROP), slice(c0, c0 + 2 * _CROP))
            row = np.concatenate([window_grey(plain.hounsfield[k][box], MARROW),
                                  window_grey(varied.hounsfield[k][box], MARROW),
                                  window_grey(varied.hounsfield[k][box], BONE_WINDOW)], axis=1)
            rows[variant.kind] = (seed, row)
    return rows


def draw(out: Path, max_seed: int = 80) -> Path:
    """Write the figure; return its path."""
    from PIL import Image, ImageDraw, ImageFont

    rows = find_examples(max_seed)
    font = ImageFont.load_default(size=13)
    label_w, head_h = 190, 24
    tile = 2 * _CROP * _ZOOM
    sheet = Image.new("L", (label_w + 3 * tile, head_h + len(rows) * tile), 255)
    pen = ImageDraw.Draw(sheet)
    for i, text in enumerate(("without (150:500)", "with (150:500)", "with (400:1800)")):
        pen.text((label_w + i * tile + 6, 5), text, fill=0, font=font)
    for j, kind in enumerate(k for k in VARIANT_KINDS if k in rows):
        seed, row = rows[kind]
        image = Image.fromarray(row).resize((3 * tile, tile), Image.Resampling.NEAREST)
        sheet.paste(image, (label_w, head_h + j * tile))
        pen.text((6, head_h + j * tile + 6), _NAMES[kind], fill=0, font=font)
        pen.text((6, head_h + j * tile + 24), f"phantom seed {seed}", fill=90, font=font)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, optimize=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m export.phantoms.variant_figure",
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog="example:\n  python -m export.phantoms.variant_figure "
               "docs/evaluation/mimic-phantoms/variants.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--max-seed", type=int, default=80,
                        help="look at phantom seeds below this (default 80)")
    args = parser.parse_args(argv)
    print(draw(args.out, args.max_seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
