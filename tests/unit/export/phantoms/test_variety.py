"""Variety options (kernels, delayed phase, metal, partial volume, randomise): each does what
it says, and the labels stay on the lesions under every one of them."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from scipy import ndimage

from export.phantoms import Phantom, make_phantom, sample_spec
from export.phantoms.kernels import finish

SMALL = {"slices": 24, "size": 192, "pixel_spacing_mm": 1.0, "slice_thickness_mm": 2.0,
         "slice_spacing_mm": 2.0, "n_lesions": 3, "region": "lumbar"}
THICK = {**SMALL, "slices": 10, "slice_thickness_mm": 5.0, "slice_spacing_mm": 5.0}


def _high_frequency_share(image: np.ndarray) -> float:
    """Share of the noise power above 0.25 cycles per pixel."""
    power = np.abs(np.fft.fft2(image - image.mean())) ** 2
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(image.shape[0]), np.fft.fftfreq(image.shape[1]),
                              indexing="ij"))
    return float(power[f > 0.25].sum() / power.sum())


def test_a_sharp_kernel_has_more_high_frequency_noise_than_a_soft_one() -> None:
    flat = np.full((256, 256), 40.0, np.float32)
    share = {}
    for kernel in ("soft", "standard", "sharp"):
        spec = sample_spec(1, **SMALL, kernel=kernel, noise_hu=20.0)
        out = finish(flat.copy(), spec, np.random.default_rng(0), None).astype(np.float64)
        assert 16.0 < out.std() < 24.0, (kernel, out.std())  # the level is noise_hu's
        share[kernel] = _high_frequency_share(out)
    assert share["sharp"] > 0.5 > 0.15 > share["soft"], share
    assert share["soft"] < share["standard"] < share["sharp"], share


def _lesion_contrast(phantom: Phantom) -> list[tuple[str, float]]:
    """Per lesion: its kind and labelled HU minus the HU of the bone just around it."""
    out = []
    hu = phantom.hounsfield.astype(np.float64)
    for lesion in phantom.lesions:
        k0, k1 = lesion.bbox_px["slice"]
        inside = np.zeros(hu.shape, bool)
        inside[k0:k1 + 1] = phantom.labels[k0:k1 + 1] > 0  # every label on its slices
        ring = ndimage.binary_dilation(inside, np.ones((1, 3, 3)), iterations=3) & ~inside
        ring &= phantom.bone & (phantom.hounsfield < 2500)  # bone, not metal
        out.append((lesion.kind, float(hu[inside].mean() - hu[ring].mean())))
    return out


OPTIONS: list[dict[str, Any]] = [
    {}, {"kernel": "soft"}, {"kernel": "sharp"}, {"contrast": "delayed"},
    {"metal": "spinal_fixation"}, {**THICK, "partial_volume": True}, {"randomise": True},
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(map(str, o.values())) or "-")
def test_labels_stay_on_the_lesion_under_every_option(options: dict[str, Any]) -> None:
    phantom = make_phantom(sample_spec(5, **{**SMALL, **options}))
    contrast = _lesion_contrast(phantom)
    assert len(contrast) >= 2
    for kind, difference in contrast:
        if kind == "lytic":
            assert difference < -40.0, contrast
        elif kind == "blastic":
            assert difference > 40.0, contrast
    # Metal is never labelled.
    assert not (phantom.labels.astype(bool) & (phantom.hounsfield >= 3000)).any()


def test_metal_streaks_are_where_the_metal_is_and_nowhere_else() -> None:
    plain = make_phantom(sample_spec(5, **SMALL))
    fixed = make_phantom(sample_spec(5, **SMALL, metal="spinal_fixation"))
    metal = fixed.hounsfield >= 3000
    with_metal = metal.any(axis=(1, 2))
    assert 2 <= with_metal.sum() < len(with_metal)
    assert fixed.metal_slices == tuple(np.nonzero(with_metal)[0])
    assert len(fixed.metal_levels) in (2, 3) and plain.metal_levels == plain.metal_slices == ()
    difference = fixed.hounsfield.astype(np.int32) - plain.hounsfield
    # The same noise stream: slices without metal are the plain phantom's, pixel for pixel.
    assert not difference[~with_metal].any()
    screw_slices = np.nonzero(metal.sum(axis=(1, 2)) > 3 * metal.sum(axis=(1, 2)).min())[0]
    assert screw_slices.size
    for k in screw_slices:
        parts, count = ndimage.label(metal[k])
        sizes = ndimage.sum(metal[k], parts, range(1, count + 1))
        a, b = (np.array(ndimage.center_of_mass(metal[k], parts, 1 + i))
                for i in np.argsort(sizes)[-2:])
        near_metal = ndimage.binary_dilation(metal[k], iterations=3)
        # Beyond the two largest pieces, on the line through them: the dark band.
        points = [np.round(a + t * (b - a)).astype(int) for t in np.linspace(-1.0, 2.0, 61)]
        band = [difference[k][r, c] for r, c in points
                if 0 <= r < 192 and 0 <= c < 192 and not near_metal[r, c]]
        assert len(band) > 20 and np.median(band) < -60, (k, np.median(band))


def test_delayed_phase_fills_the_renal_pelvis_with_contrast() -> None:
    bright = {}
    for phase in ("venous", "delayed"):
        # Seed 6's slices cross both kidneys (seed 5's lie below them).
        phantom = make_phantom(sample_spec(6, **SMALL, contrast=phase, noise_hu=0.0))
        soft_tissue = ~ndimage.binary_dilation(phantom.bone, iterations=2)
        bright[phase] = int((soft_tissue & (phantom.hounsfield > 350)).sum())
    # Venous-phase vessels and oral contrast are bright too; the pelvis adds hundreds.
    assert bright["delayed"] > bright["venous"] + 300, bright


def test_partial_volume_averages_thin_planes_and_labels_by_majority() -> None:
    thin = {**SMALL, "slice_thickness_mm": 1.25, "slice_spacing_mm": 1.25}
    # Thin slices have nothing to average: bit-identical with or without the option.
    a, b = (make_phantom(sample_spec(5, **thin, partial_volume=pv)) for pv in (False, True))
    assert np.array_equal(a.hounsfield, b.hounsfield) and np.array_equal(a.labels, b.labels)
    plain, averaged = (make_phantom(sample_spec(5, **THICK, partial_volume=pv, noise_hu=0.0))
                       for pv in (False, True))
    assert plain.slice_positions_z == averaged.slice_positions_z
    # A 5 mm slice sees 3.3 mm above and below its centre plane: edges soften along z.
    assert np.abs(averaged.hounsfield.astype(np.int32) - plain.hounsfield).mean() > 3.0
    # Labels are where most of the slab (two of its three planes) is lesion: fewer than the
    # centre plane's at a small lesion's ends, mostly within them, never a lesion unseen.
    labelled = averaged.labels.astype(bool)
    assert 0 < labelled.sum() < plain.labels.sum()
    assert (labelled & (plain.labels > 0)).sum() > 0.6 * labelled.sum()
    assert {les.level for les in averaged.lesions} <= {les.level for les in plain.lesions}


def test_randomise_draws_every_look_from_its_own_stream() -> None:
    specs = [sample_spec(seed, slices=12, randomise=True) for seed in range(60)]
    assert {s.kernel for s in specs} == {"soft", "standard", "sharp"}
    assert {s.contrast for s in specs} == {"none", "arterial", "venous", "delayed"}
    assert {s.metal for s in specs} == {"none", "spinal_fixation"}
    assert {s.size for s in specs} == {256, 512, 768}
    assert {s.intercept for s in specs} == {0, -1024}
    assert {s.bone_variants for s in specs} == {False, True}
    assert min(s.marrow_hu[0] for s in specs) < 90 < 180 < max(s.marrow_hu[0] for s in specs)
    assert all(s.partial_volume == (s.slice_thickness_mm >= 3.0) for s in specs)
    # Deterministic, and what the caller fixes stays fixed.
    assert sample_spec(7, randomise=True) == sample_spec(7, randomise=True)
    kept = sample_spec(7, randomise=True, marrow_hu=(70, 270), size=512, kernel="soft")
    assert (kept.marrow_hu, kept.size, kept.kernel) == ((70.0, 270.0), 512, "soft")
    # The seed's own draw is untouched: scanner fields randomise does not redraw are equal.
    plain, varied = sample_spec(7), sample_spec(7, randomise=True)
    assert (plain.slice_thickness_mm, plain.region, plain.n_lesions, plain.signed) == (
        varied.slice_thickness_mm, varied.region, varied.n_lesions, varied.signed)
    assert (plain.kernel, plain.metal, plain.partial_volume) == ("standard", "none", False)


def test_the_command_and_the_training_config_ask_for_randomised_phantoms() -> None:
    import argparse

    from export.phantoms.cli import add_parser, study_overrides
    from export.sources.slices import phantom_volume

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["phantom", "--out", "x", "--randomise", "--metal",
                              "spinal_fixation", "--partial-volume", "--kernel", "sharp"])
    overrides = study_overrides(args, 1, negative=False)
    assert {k: overrides[k] for k in ("randomise", "metal", "partial_volume", "kernel")} == {
        "randomise": True, "metal": "spinal_fixation", "partial_volume": True, "kernel": "sharp"}
    # Training draws its phantoms as phantom_volume(seed, data.phantom_overrides).
    plain = phantom_volume(3, {"slices": 3})
    varied = phantom_volume(3, {"randomise": True, "slices": 3})
    assert plain.hounsfield.shape == varied.hounsfield.shape
    assert not np.array_equal(plain.hounsfield, varied.hounsfield)


def test_a_randomised_study_with_metal_reads_back_exactly(tmp_path: Any) -> None:
    import pydicom

    from export.phantoms import write_study

    # Unsigned storage with intercept -1024: titanium at the 3071 HU ceiling must still fit.
    spec = sample_spec(2, slices=4, size=192, randomise=True, metal="spinal_fixation",
                       signed=False, intercept=-1024, region="lumbar")
    phantom = make_phantom(spec)
    assert phantom.hounsfield.max() == 3071
    study = write_study(phantom, tmp_path / "study")
    slices = sorted((pydicom.dcmread(f) for f in (study / "dicom").glob("*.dcm")),
                    key=lambda ds: float(ds.ImagePositionPatient[2]))
    volume = np.stack([ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope)
                       + int(ds.RescaleIntercept) for ds in slices])
    assert np.array_equal(volume, phantom.hounsfield)
    metal = json.loads((study / "truth.json").read_text())["metal"]
    assert metal == {"kind": "spinal_fixation", "levels": list(phantom.metal_levels),
                     "slices": list(phantom.metal_slices)}


def test_the_look_figure_keeps_the_patient_and_changes_the_look() -> None:
    from export.phantoms.look_figure import looks

    base = sample_spec(3, slices=3, size=128, n_lesions=1, region="lumbar")
    columns = looks(base, columns=2)
    assert [caption for caption, _ in columns][0] == "default"
    shapes = {phantom.hounsfield.shape for _, phantom in columns}
    assert shapes == {(3, 128, 128)}
    assert {phantom.spec.body_scale for _, phantom in columns} == {base.body_scale}
    assert any(phantom.spec.metal != "none" for _, phantom in columns)
