"""How well :mod:`api.lesions.site` places lesions: the truth masks of phantoms as the lesions,
each read on its largest cross-section, tabled against the site the phantom drew it in.

    python -m export.evaluation.sites --seeds 100000-100009
    python -m export.evaluation.sites --seeds 100010-100014 --marrow-hu 70:140
    python -m export.evaluation.sites --seeds 100015-100019 --bone-variants
    python -m export.evaluation.sites --map docs/evaluation/sites-corpus.png \
        ../shared/ct-corpus/series/S01_siemens_biograph_mCT_abdomen_j2k \
        ../shared/ct-corpus/series/S04_ge_lightspeed_abdomen_3slice

``--map`` draws, for the middle and last slice of each series, every 8th bone pixel in the
colour of its site (red vertebral body, yellow posterior elements, blue rib, purple other
bone, grey unknown).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from typing import Any

import numpy as np
from numpy.typing import NDArray

from api.lesions.site import BoneSite, site_on_slice

# The phantom's words for where it drew a lesion; a pedicle is one of the posterior elements.
TRUTH = {"vertebral_body": BoneSite.VERTEBRAL_BODY, "pedicle": BoneSite.POSTERIOR_ELEMENTS,
         "rib": BoneSite.RIB}
SLICES = 32  # enough for several lesions, cheap to draw


def largest_cross_section(labels: NDArray[np.uint8], bbox: dict[str, tuple[int, int]],
                          slices: tuple[int, ...]) -> tuple[int, NDArray[np.bool_]]:
    """(slice, mask) of a lesion's largest cross-section: its labelled pixels in its box."""
    (r0, r1), (c0, c1) = bbox["row"], bbox["col"]
    best: tuple[int, NDArray[np.bool_]] | None = None
    for k in slices:
        mask = np.zeros(labels.shape[1:], bool)
        mask[r0:r1 + 1, c0:c1 + 1] = labels[k, r0:r1 + 1, c0:c1 + 1] > 0
        if best is None or mask.sum() > best[1].sum():
            best = (k, mask)
    if best is None:
        raise ValueError("a lesion without slices")
    return best


def confusion(seeds: range, **overrides: Any) -> tuple[Counter[tuple[str, str]], list[float]]:
    """(truth, found) counts over every lesion of the phantoms ``seeds``, and the classifier's
    time per lesion in seconds."""
    from export.phantoms import make_phantom, sample_spec

    table: Counter[tuple[str, str]] = Counter()
    seconds = []
    for seed in seeds:
        phantom = make_phantom(sample_spec(seed, slices=SLICES, n_lesions=6, **overrides))
        for lesion in phantom.lesions:
            k, mask = largest_cross_section(phantom.labels, lesion.bbox_px, lesion.slices)
            began = time.perf_counter()
            found = site_on_slice(phantom.hounsfield[k], mask, phantom.pixel_spacing)
            seconds.append(time.perf_counter() - began)
            table[(TRUTH[lesion.site].value, found.value)] += 1
    return table, seconds


def markdown(table: Counter[tuple[str, str]]) -> str:
    """The table as markdown: truth in rows, what the classifier said in columns."""
    found = [site.value for site in BoneSite]
    lines = ["| truth \\ found | " + " | ".join(found) + " |",
             "| --- |" + " --- |" * len(found)]
    for truth in (site.value for site in TRUTH.values()):
        lines.append(f"| {truth} | " + " | ".join(str(table[(truth, f)]) for f in found) + " |")
    right = sum(n for (t, f), n in table.items() if t == f)
    lines.append(f"\n{right} of {sum(table.values())} right")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Print the confusion table of the phantoms asked for."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="100000-100009", help="FIRST-LAST, inclusive")
    parser.add_argument("--marrow-hu", help="LOW:HIGH, as bonemets phantom takes it")
    parser.add_argument("--bone-variants", action="store_true")
    parser.add_argument("--map", metavar="PNG", help="draw the site map of SERIES to PNG")
    parser.add_argument("series", nargs="*", help="series folders, for --map")
    args = parser.parse_args(argv)
    if args.map:
        _draw_maps(args.series, args.map)
        return
    first, last = (int(x) for x in args.seeds.split("-"))
    overrides: dict[str, Any] = {"bone_variants": args.bone_variants}
    if args.marrow_hu:
        overrides["marrow_hu"] = tuple(float(x) for x in args.marrow_hu.split(":"))
    table, seconds = confusion(range(first, last + 1), **overrides)
    print(markdown(table))
    print(f"classifier: median {1000 * float(np.median(seconds)):.1f} ms,"
          f" max {1000 * max(seconds):.1f} ms per lesion")


COLOURS = {BoneSite.VERTEBRAL_BODY: (255, 64, 64), BoneSite.POSTERIOR_ELEMENTS: (255, 200, 0),
           BoneSite.RIB: (64, 160, 255), BoneSite.OTHER_BONE: (200, 64, 255),
           BoneSite.UNKNOWN: (128, 128, 128)}


def site_map(hounsfield: NDArray[np.int16], spacing: tuple[float, float],
             step: int = 8) -> NDArray[np.uint8]:
    """An RGB picture of the slice (bone window) with every ``step``-th bone pixel, as a
    3 x 3 lesion, painted in the colour of the site it is given (:data:`COLOURS`)."""
    grey = np.clip((hounsfield.astype(np.float32) + 500) / 1800 * 255, 0, 255).astype(np.uint8)
    picture = np.repeat(grey[..., None], 3, axis=2)
    for row in range(step // 2, hounsfield.shape[0] - 1, step):
        for col in range(step // 2, hounsfield.shape[1] - 1, step):
            if hounsfield[row, col] < 200:
                continue
            lesion = np.zeros(hounsfield.shape, bool)
            lesion[row - 1:row + 2, col - 1:col + 2] = True
            site = site_on_slice(hounsfield, lesion, spacing)
            picture[row - 2:row + 3, col - 2:col + 3] = COLOURS[site]
    return picture


def _draw_maps(folders: list[str], out: str) -> None:
    from pathlib import Path

    import pydicom
    from PIL import Image
    from pydicom.pixels.processing import apply_modality_lut

    pictures = []
    for folder in folders:
        headers = sorted((pydicom.dcmread(f) for f in sorted(Path(folder).iterdir())),
                         key=lambda ds: float(ds.ImagePositionPatient[2]))
        for ds in {id(d): d for d in (headers[len(headers) // 2], headers[-1])}.values():
            hounsfield = apply_modality_lut(ds.pixel_array, ds).astype(np.int16)
            spacing = (float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1]))
            pictures.append(site_map(hounsfield, spacing))
    Image.fromarray(np.concatenate(pictures, axis=1)).save(out)


if __name__ == "__main__":
    main()
