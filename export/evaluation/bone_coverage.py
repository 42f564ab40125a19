"""How much reference lesion lies outside the bone gate's region, on phantoms with known truth.

The gate (:mod:`api.inference.bone_gate`) can only cost sensitivity where a lesion pixel
falls outside its region, so this counts them, before any network runs: lesion pixels and
2-D lesion components (one per slice) wholly or partly outside, for each gate given.

    python -m export.evaluation.bone_coverage phantoms:90000-90002 --gate 200:24:3 --gate 250:24:3
    python -m export.evaluation.bone_coverage phantoms:90003-90006 --marrow-hu 70:140 \
        --gate 200:24:3
    python -m export.evaluation.bone_coverage /tmp/gate-osteo --gate 200:24:3

Slices of another size are fitted to the model's 512x512 first, as evaluation does.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from api.inference.bone_gate import BoneGate, bone_region

__all__ = ["Coverage", "coverage", "main"]


@dataclass
class Coverage:
    """Reference lesion outside one gate's region, summed over slices."""

    lesion_pixels: int = 0
    pixels_outside: int = 0
    components: int = 0
    components_touching: int = 0  # at least one pixel outside
    components_outside: int = 0  # every pixel outside: the gate removes them whole
    region_pixels: int = 0
    slices: int = 0

    def add(self, truth: npt.NDArray[np.bool_], region: npt.NDArray[np.bool_]) -> None:
        """Count one slice's reference mask against its region."""
        self.slices += 1
        self.region_pixels += int(region.sum())
        self.lesion_pixels += int(truth.sum())
        self.pixels_outside += int((truth & ~region).sum())
        labels, count = ndimage.label(truth)
        for index in range(1, count + 1):
            inside = region[labels == index]
            self.components += 1
            self.components_touching += int(not inside.all())
            self.components_outside += int(not inside.any())


def coverage(
    hounsfield: npt.NDArray[np.int16], truth: npt.NDArray[np.bool_], gates: Sequence[BoneGate]
) -> list[Coverage]:
    """One :class:`Coverage` per gate for a stack of slices (N, H, W) and its reference."""
    tallies = [Coverage() for _ in gates]
    for gate, tally in zip(gates, tallies, strict=True):
        region = bone_region(hounsfield, gate)
        for plane, mask in zip(region, truth, strict=True):
            tally.add(mask, plane)
    return tallies


def _fitted(plane: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    from api.dicom.geometry import resize_to_model
    from api.inference.contract import INPUT_SIZE

    return resize_to_model(plane, INPUT_SIZE)[0]


def main(argv: Sequence[str] | None = None) -> int:
    """Print each gate's coverage of the reference lesions on the given phantoms."""
    from export.evaluation.data import open_studies, parse_data_source, phantom_studies

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="phantoms:FIRST-LAST or a folder of studies with SEGs")
    parser.add_argument("--gate", action="append", required=True, help="HU:CLOSE:DILATE")
    parser.add_argument("--marrow-hu", help="vertebral marrow LOW:HIGH HU (phantom option)")
    args = parser.parse_args(argv)
    source = parse_data_source(args.data)
    gates = [BoneGate.parse(text) for text in args.gate]
    chosen = [gate for gate in gates if gate is not None]
    overrides = {}
    if args.marrow_hu:
        low, high = (int(part) for part in args.marrow_hu.split(":"))
        overrides["marrow_hu"] = (low, high)
    totals = [Coverage() for _ in chosen]
    if source.seeds is not None:
        studies = phantom_studies(source.seeds, **overrides)
    else:
        studies = open_studies(source)[1]
    for study in studies:
        batch = study.read(0, study.slice_count)
        hounsfield = np.stack([_fitted(plane) for plane in batch.hounsfield])
        truth = np.stack([_fitted(mask.astype(np.int16) * 1000) >= 500 for mask in batch.truth])
        for total, tally in zip(totals, coverage(hounsfield, truth, chosen), strict=True):
            for name in vars(total):
                setattr(total, name, getattr(total, name) + getattr(tally, name))
    print("gate | lesion px outside | 2-D components touching / wholly outside | region %")
    for gate, total in zip(chosen, totals, strict=True):
        area = 100.0 * total.region_pixels / max(1, total.slices * hounsfield.shape[-1] ** 2)
        print(
            f"{gate} | {total.pixels_outside} of {total.lesion_pixels} | "
            f"{total.components_touching} / {total.components_outside} of {total.components}"
            f" | {area:.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
