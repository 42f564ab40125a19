"""Default phantoms stay bit-identical: new options add variety without moving old studies.

The hashes were taken with the generator as it was before the variety options (kernels,
delayed phase, metal, partial volume, randomise) came in, on small phantoms that cover the
drawn scanner (seed 2 at its own size), thick slices, osteoporotic marrow and normal variants.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any

import numpy as np
import pytest

from export.phantoms import make_phantom, sample_spec

GOLDEN: list[tuple[int, dict[str, Any], str]] = [
    (2, {"slices": 3},
     "8b112ace370e87f159130ae3026041fd927bfe05f3fae46be4a2b0cfb0720a5f"),
    (3, {"slices": 6, "size": 256},
     "e7b589fdd31f0aa025c531f199afc14d7ba6bafc66d9893e945367f4926b3e92"),
    (11, {"slices": 6, "size": 256, "n_lesions": 2},
     "e1e1a1a0dc2df31b7d9603ba8bc9ea491fc2afa80183c00b61621f9e2321d662"),
    (1, {"slices": 6, "size": 256, "n_lesions": 3, "slice_thickness_mm": 5.0,
         "slice_spacing_mm": 5.0},
     "533eda8351fed861f328e12aa8d80dad9967bdf90bd89d241e24313e70648b0d"),
    (7, {"slices": 6, "size": 256, "n_lesions": 2, "marrow_hu": (70, 270)},
     "5fa10ed09023e4989623fe313c5d0b26ee2e90583ccede2fd4fb9d269b3544bf"),
    (5, {"slices": 6, "size": 256, "n_lesions": 3, "region": "lumbar", "bone_variants": True},
     "49632f797524a14e467f8f3d115c1efbd6edd4b4b3b13d522e66aa7faf9570a1"),
]


def phantom_digest(seed: int, overrides: dict[str, Any]) -> str:
    """SHA-256 of the pixels, labels, bone mask, lesion and variant truth of one phantom."""
    phantom = make_phantom(sample_spec(seed, **overrides))
    digest = hashlib.sha256()
    for array in (phantom.hounsfield, phantom.labels, phantom.bone):
        digest.update(np.ascontiguousarray(array).tobytes())
    truth = [asdict(x) for x in (*phantom.lesions, *phantom.variants)]
    digest.update(json.dumps(truth, sort_keys=True).encode())
    digest.update(json.dumps([phantom.origin_mm, phantom.pixel_spacing,
                              phantom.slice_positions_z]).encode())
    return digest.hexdigest()


@pytest.mark.parametrize(("seed", "overrides", "expected"), GOLDEN)
def test_default_phantoms_are_bit_identical(seed: int, overrides: dict[str, Any],
                                            expected: str) -> None:
    assert phantom_digest(seed, overrides) == expected
