"""Normal variants in phantoms: what each one looks like, and that none of them is a label."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from export.phantoms import Phantom, PhantomSpec, make_phantom, read_truth, sample_spec
from export.phantoms.levels import build_spine
from export.phantoms.variants import VARIANT_KINDS, BoneVariant, draw_variants, variant_marrow

SMALL = {"slices": 24, "size": 192, "pixel_spacing_mm": 1.0, "slice_thickness_mm": 2.0,
         "slice_spacing_mm": 2.0, "n_lesions": 3, "region": "lumbar", "encoding": "none"}


@pytest.fixture(scope="module")
def pair() -> tuple[Phantom, Phantom]:
    """The same patient without and with normal variants (seed 5: a haemangioma in L3)."""
    return (make_phantom(sample_spec(5, **SMALL)),
            make_phantom(sample_spec(5, **SMALL, bone_variants=True)))


def _grid(half: float = 15.0, step: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    axis = np.arange(-half, half + step / 2, step, dtype=np.float32)
    y, x = np.meshgrid(axis, axis, indexing="ij")
    return x, y


def test_every_vertebra_has_a_channel_and_every_kind_occurs() -> None:
    counts: Counter[str] = Counter()
    for seed in range(12):
        rng = np.random.default_rng(seed)
        # Small and large patients: a small cervical vertebra still has room for each kind.
        spine = build_spine(rng, z_t1_top=0.0, scale=(0.5, 1.0, 1.5)[seed % 3])
        variants = draw_variants(spine, np.random.default_rng([seed, 4]))
        channels = [v for v in variants if v.kind == "basivertebral_channel"]
        assert [v.level for v in channels] == [vb.name for vb in spine.vertebrae]
        counts.update(v.kind for v in variants)
        for v in variants:
            vb = spine.by_name(v.level)
            low, high = v.z_range
            # Inside its own vertebral body.
            assert vb.z_bottom - 0.01 <= low < high <= vb.z_top + 0.01, v
            assert abs(v.x) < vb.rx and abs(v.y) < vb.ry, v
    assert set(counts) == set(VARIANT_KINDS)
    # Each optional kind in a few percent of vertebrae (21 per spine), none in most.
    for kind in VARIANT_KINDS[1:]:
        assert 3 <= counts[kind] <= 60, counts


@pytest.mark.parametrize(("kind", "low", "high"), [
    ("bone_island", 700, 1150), ("fatty_marrow", -80, -10)])
def test_round_variants_are_solid_and_sized(kind: str, low: float, high: float) -> None:
    v = BoneVariant(kind=kind, level="L2", x=1.0, y=-2.0, z=10.0, rx=3.0, ry=2.0, rz=2.5,
                    hu=low + 0.5 * (high - low))
    x, y = _grid()
    drawn = variant_marrow(v, x, y, 10.0)
    assert drawn is not None
    where, value, breach = drawn
    area_mm2 = where.sum() * 0.25**2
    assert area_mm2 == pytest.approx(np.pi * 3.0 * 2.0, rel=0.05)
    assert np.all(value[where] == np.float32(v.hu)) and not breach.any()
    # Thinner towards its top and bottom, absent beyond them.
    top = variant_marrow(v, x, y, 12.0)
    assert top is not None and 0 < top[0].sum() < where.sum()
    assert variant_marrow(v, x, y, 12.6) is None


def test_haemangioma_is_fat_crossed_by_dots_of_bone() -> None:
    v = BoneVariant(kind="haemangioma", level="T12", x=0.0, y=0.0, z=0.0, rx=8.0, ry=8.0,
                    rz=9.0, hu=-20.0, rim_hu=500.0, pitch=3.2)
    x, y = _grid()
    drawn = variant_marrow(v, x, y, 3.0)
    assert drawn is not None
    where, value, _ = drawn
    dots = where & (value == 500.0)
    labelled, n = ndimage.label(dots)
    # Separate dots, about one per pitch squared (more with the part-dots at the edge),
    # each ~1.5 mm across.
    expected = where.sum() * 0.25**2 / 3.2**2
    assert 0.8 * expected <= n <= 1.8 * expected
    sizes = ndimage.sum(dots, labelled, range(1, n + 1)) * 0.25**2
    assert np.median(sizes) == pytest.approx(np.pi * 0.75**2, rel=0.3)
    assert 0.1 < dots.sum() / where.sum() < 0.35  # mostly fat


def test_schmorl_node_enters_from_its_endplate_and_breaks_it() -> None:
    v = BoneVariant(kind="schmorl_node", level="T9", x=0.0, y=0.0, z=50.0, rx=4.0, ry=3.0,
                    rz=3.0, hu=80.0, rim_hu=500.0, into=-1)  # from the top endplate, down
    x, y = _grid()
    assert variant_marrow(v, x, y, 50.5) is None  # above the endplate: the disc
    assert variant_marrow(v, x, y, 46.9) is None  # deeper than the node
    drawn = variant_marrow(v, x, y, 49.5)
    assert drawn is not None
    where, value, breach = drawn
    assert breach.any() and np.all(value[breach] == 80.0)
    rim = where & ~breach
    assert rim.any() and np.all(value[rim] == 500.0)  # sclerotic rim around it
    assert v.z_range == (47.0, 50.0)


def test_branched_channel_reaches_forward_on_both_sides() -> None:
    plain = BoneVariant(kind="basivertebral_channel", level="L1", x=0.0, y=10.0, z=0.0,
                        rx=2.0, ry=5.0, rz=3.0, hu=50.0)
    branched = BoneVariant(**{**plain.__dict__, "branch": 0.7})
    x, y = _grid()
    a, b = variant_marrow(plain, x, y, 0.0), variant_marrow(branched, x, y, 0.0)
    assert a is not None and b is not None
    assert np.array_equal(a[0], a[2])  # the channel opens through the back wall
    assert b[0].sum() > 1.5 * a[0].sum()
    front = b[0] & (y < 2.0)
    assert front[:, x[0] < -2.0].any() and front[:, x[0] > 2.0].any()


def test_variants_change_bone_only_and_never_the_labels(pair: tuple[Phantom, Phantom]) -> None:
    plain, varied = pair
    assert plain.spec.bone_variants is False and varied.spec.bone_variants is True
    assert plain.variants == [] and varied.variants
    assert varied.labels.tobytes() == plain.labels.tobytes()
    assert varied.lesions == plain.lesions
    changed = varied.hounsfield != plain.hounsfield
    assert changed.sum() > 50
    # Only in bone, as far as the blur reaches (2 px at 1 mm).
    reach = ndimage.binary_dilation(plain.bone, structure=np.ones((1, 5, 5)))
    assert not (changed & ~reach).any()
    kinds = {v.kind for v in varied.variants}
    assert "basivertebral_channel" in kinds and "haemangioma" in kinds
    for v in varied.variants:
        assert v.slices and all(0 <= k < varied.spec.slices for k in v.slices)
        # Its box holds pixels it changed.
        (r0, r1), (c0, c1) = v.bbox_px["row"], v.bbox_px["col"]
        box = changed[list(v.slices), r0:r1 + 1, c0:c1 + 1]
        assert box.any(), v
    # The haemangioma's slices hold both fat (darker) and dots (brighter) than before.
    haem = next(v for v in varied.variants if v.kind == "haemangioma")
    k = haem.slices[len(haem.slices) // 2]
    delta = varied.hounsfield[k].astype(int) - plain.hounsfield[k].astype(int)
    assert (delta < -100).sum() > 10 and (delta > 50).sum() > 3  # dots blurred at 1 mm


def test_variants_flag_is_drawn_last_and_survives_json() -> None:
    spec = sample_spec(7, bone_variants=True)
    assert spec.to_dict() == {**sample_spec(7).to_dict(), "bone_variants": True}
    assert PhantomSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_cli_writes_variants_into_truth(tmp_path: Path) -> None:
    from api.cli import main

    out = tmp_path / "mimics"
    assert main(["phantom", "--out", str(out), "--studies", "1", "--seed", "5", "--slices", "30",
                 "--size", "128", "--region", "lumbar", "--bone-variants"]) == 0
    truth = read_truth(out / "study_0001")
    assert truth.spec.bone_variants is True
    listed = json.loads((out / "study_0001" / "truth.json").read_text())["normal_variants"]
    assert listed and all(item["kind"] in VARIANT_KINDS and item["slices"] for item in listed)
    for item in listed:
        assert set(item) == {"kind", "level", "diameter_mm", "z_mm", "slices", "bbox_px"}
        (k0, k1), (r0, r1), (c0, c1) = (item["bbox_px"][a] for a in ("slice", "row", "col"))
        assert k0 == min(item["slices"]) and k1 == max(item["slices"])
        assert 0 <= r0 <= r1 < 128 and 0 <= c0 <= c1 < 128


def test_variant_figure_shows_each_kind_against_the_same_slice_without(tmp_path: Path) -> None:
    from export.phantoms.variant_figure import draw, find_examples

    rows = find_examples(max_seed=7)
    assert set(rows) == set(VARIANT_KINDS)
    for _, row in rows.values():
        without, with_ = row[:, :80], row[:, 80:160]
        assert row.shape == (80, 240) and (without != with_).sum() >= 10
    out = draw(tmp_path / "variants.png", max_seed=7)
    from PIL import Image

    assert Image.open(out).size == (190 + 3 * 240, 24 + 5 * 240)
