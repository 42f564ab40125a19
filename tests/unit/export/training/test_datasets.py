"""Training data: balanced sampling, aligned augmentation, SEG and NIfTI labels on their slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from api.inference.contract import BONE_WINDOW
from api.inference.processing import window_channels
from export.training.augment import AugmentConfig, CropGeometry, augmented_crop, crop_slice
from export.training.bank import SliceBank, select_slices
from export.training.datasets import BalancedSampler, BatchSpec, training_batch


def _bank(n: int = 10, size: int = 64, positive_every: int = 3) -> SliceBank:
    """Dense squares (bone) on air; every ``positive_every``-th slice has a marked lesion."""
    hounsfield = np.full((n, size, size), -1000, dtype=np.int16)
    labels = np.zeros((n, size, size), dtype=np.uint8)
    hounsfield[:, 10:50, 12:44] = 700
    for i in range(0, n, positive_every):
        hounsfield[i, 20 + i % 5 : 28 + i % 5, 30:37] = 60
        labels[i, 20 + i % 5 : 28 + i % 5, 30:37] = 1
    return SliceBank(hounsfield, labels, [f"s:{i}" for i in range(n)])


def test_sampler_draws_the_configured_positive_fraction() -> None:
    bank = _bank(n=30)
    sampler = BalancedSampler(bank.positive, positive_fraction=0.3)
    index, on_lesion = sampler.draw(20_000, np.random.default_rng(0))
    # Binomial(20000, 0.3): one standard deviation is 0.0032.
    assert abs(on_lesion.mean() - 0.3) < 0.015
    assert bank.positive[index[on_lesion]].all()
    assert not bank.positive[index[~on_lesion]].any()
    # Every slice of each pool is used, not just a few.
    assert set(index[on_lesion]) == set(np.flatnonzero(bank.positive))
    assert set(index[~on_lesion]) == set(np.flatnonzero(~bank.positive))


def test_sampler_refuses_a_fraction_the_bank_cannot_give() -> None:
    bank = _bank(n=4)
    negatives_only = bank.positive & False
    with pytest.raises(ValueError, match="no slice with metastasis"):
        BalancedSampler(negatives_only, 0.5)
    BalancedSampler(negatives_only, 0.0)  # all-negative training is allowed


def test_select_slices_caps_positives_and_negatives() -> None:
    labels = np.zeros((20, 4, 4), dtype=np.uint8)
    labels[[1, 2, 3, 7, 9], 1, 1] = 1
    chosen = select_slices(labels, np.random.default_rng(1), max_positive=3, max_negative=4)
    positive = labels[chosen].reshape(len(chosen), -1).any(1)
    assert positive.sum() == 3 and (~positive).sum() == 4
    assert list(chosen) == sorted(set(chosen.tolist()))


def test_plain_crop_is_the_slice_itself() -> None:
    bank = _bank(n=1, size=64)
    geometry = CropGeometry(center=(31.5, 31.5), size=64)
    image, label = crop_slice(bank.hounsfield[0], bank.labels[0], geometry)
    np.testing.assert_array_equal(image, bank.hounsfield[0].astype(np.float32))
    np.testing.assert_array_equal(label, bank.labels[0])


def test_flip_mirrors_image_and_label_together() -> None:
    bank = _bank(n=1, size=64)
    plain = crop_slice(bank.hounsfield[0], bank.labels[0], CropGeometry((31.5, 31.5), 64))
    flipped = crop_slice(
        bank.hounsfield[0], bank.labels[0], CropGeometry((31.5, 31.5), 64, flip_left_right=True)
    )
    np.testing.assert_array_equal(flipped[0], plain[0][:, ::-1])
    np.testing.assert_array_equal(flipped[1], plain[1][:, ::-1])
    assert not np.array_equal(flipped[1], plain[1])  # the lesion is off-centre


@pytest.mark.parametrize("seed", range(6))
def test_augmentation_keeps_image_and_label_aligned(seed: int) -> None:
    # Label = "HU above 0" exactly, so after any geometry the two must still agree, up to
    # a ring of interpolated pixels on the boundary.
    size = 96
    hounsfield = np.full((size, size), -1000, dtype=np.int16)
    rows, cols = np.mgrid[:size, :size]
    blob = ((rows - 40) / 14.0) ** 2 + ((cols - 58) / 9.0) ** 2 < 1
    hounsfield[blob] = 1000
    labels = blob.astype(np.uint8)
    config = AugmentConfig(
        flip_left_right=0.5,
        flip_up_down=0.5,
        max_rotation_deg=30,
        scale_range=(0.8, 1.25),
        max_noise_hu=0.0,
        max_hu_shift=0.0,
    )
    rng = np.random.default_rng(seed)
    image, label = augmented_crop(hounsfield, labels, (45.0, 50.0), 64, rng, config)
    bright = image > 0
    intersection = (bright & (label > 0)).sum()
    union = (bright | (label > 0)).sum()
    assert label.sum() > 100
    assert intersection / union > 0.93


def test_noise_is_hu_and_stays_int16() -> None:
    flat = np.zeros((64, 64), dtype=np.int16)
    config = AugmentConfig(
        flip_left_right=0,
        max_rotation_deg=0,
        scale_range=(1, 1),
        max_noise_hu=30,
        max_hu_shift=0,
    )
    image, _ = augmented_crop(
        flat, flat.astype(np.uint8), (31.5, 31.5), 64, np.random.default_rng(3), config
    )
    assert image.dtype == np.int16
    assert 1.0 < image.std() < 31.0
    assert abs(image.mean()) < 2.0


def test_positive_crops_hold_a_lesion_and_windows_match_serving() -> None:
    bank = _bank(n=9, size=64)
    spec = BatchSpec(batch_size=12, crop=32, positive_fraction=1.0, jitter=0.3)
    sampler = BalancedSampler(bank.positive, spec.positive_fraction)
    images, labels = training_batch(
        bank, sampler, np.random.default_rng(5), spec, AugmentConfig(), (BONE_WINDOW,)
    )
    assert images.shape == (12, 1, 32, 32) and labels.shape == (12, 1, 32, 32)
    assert (labels.reshape(12, -1).sum(1) > 0).all()
    assert images.min() >= 0.0 and images.max() <= 1.0


def test_batch_images_are_the_served_window_of_int16_hu() -> None:
    # A uniform 220 HU slice: whatever the crop, every pixel inside must carry exactly the
    # value serving computes for 220 HU; outside the slice, air.
    hounsfield = np.full((1, 64, 64), 220, dtype=np.int16)
    labels = np.zeros((1, 64, 64), dtype=np.uint8)
    labels[0, 30:34, 30:34] = 1
    bank = SliceBank(hounsfield, labels, ["uniform:0"])
    spec = BatchSpec(batch_size=3, crop=32, positive_fraction=1.0, jitter=0.0)
    images, _ = training_batch(
        bank,
        BalancedSampler(bank.positive, 1.0),
        np.random.default_rng(4),
        spec,
        AugmentConfig.none(),
        (BONE_WINDOW,),
    )
    served = window_channels(np.full((1, 1, 1), 220, dtype=np.int16), (BONE_WINDOW,))[0, 0, 0, 0]
    assert images.dtype == np.float32
    np.testing.assert_array_equal(images, np.full_like(images, served))


def _display_volume() -> tuple[np.ndarray, np.ndarray]:
    """(Z, rows, columns) HU and labels in the DICOM axial display, with an off-centre lesion."""
    hounsfield = np.full((5, 40, 48), -1000, dtype=np.int16)
    hounsfield[:, 8:32, 6:42] = 40
    hounsfield[:, 26:31, 20:28] = 800  # a vertebra, posterior
    labels = np.zeros(hounsfield.shape, dtype=np.uint8)
    labels[2:4, 27:30, 24:27] = 2  # any label > 0 is metastasis; patient's left, posterior
    hounsfield[labels > 0] = 300
    return hounsfield, labels


def _write_nifti(path: Path, volume: np.ndarray, codes: str) -> None:
    import nibabel as nib

    # (Z, rows, columns) display = (S, P, L) axes; store in the orientation ``codes`` names.
    data = volume.transpose(2, 1, 0)  # L, P, S
    diagonal = [1.0, 1.0, 2.5, 1.0]
    if codes == "RAS":
        data = data[::-1, ::-1, :]
    else:
        diagonal[0] = diagonal[1] = -1.0
    affine = np.diag(diagonal)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data), affine), path)
    assert "".join(nib.orientations.aff2axcodes(affine)) == codes


@pytest.mark.parametrize("codes", ["LPS", "RAS"])
def test_nifti_pair_lands_on_the_right_slices_and_side(tmp_path: Path, codes: str) -> None:
    from export.sources.slices import find_nifti_pairs, fit_slices, read_nifti_pair

    hounsfield, labels = _display_volume()
    _write_nifti(tmp_path / "case_image.nii.gz", hounsfield, codes)
    _write_nifti(tmp_path / "case_mask.nii.gz", labels, codes)
    pairs = find_nifti_pairs(tmp_path)
    assert pairs == [(tmp_path / "case_image.nii.gz", tmp_path / "case_mask.nii.gz")]
    volume = read_nifti_pair(*pairs[0])
    expected = fit_slices("case", hounsfield, labels)
    np.testing.assert_array_equal(volume.hounsfield, expected.hounsfield)
    np.testing.assert_array_equal(volume.labels, expected.labels)
    assert volume.labels.reshape(5, -1).any(1).tolist() == [False, False, True, True, False]
    np.testing.assert_allclose(np.diff(volume.z), 2.5)  # the affine's slice spacing


def test_nifti_images_and_labels_folders(tmp_path: Path) -> None:
    from export.sources.slices import find_nifti_pairs, read_nifti_pair

    hounsfield, labels = _display_volume()
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    _write_nifti(tmp_path / "images" / "p1.nii.gz", hounsfield, "LPS")
    _write_nifti(tmp_path / "labels" / "p1.nii.gz", labels, "LPS")
    [(image, mask)] = find_nifti_pairs(tmp_path)
    volume = read_nifti_pair(image, mask)
    assert volume.name == "p1"
    assert int(volume.labels.sum()) > 0
    # The lesion's pixels are the 300 HU ones, and nothing else is.
    assert set(np.unique(volume.hounsfield[volume.labels > 0])) <= set(range(40, 801))


def test_corpus_seg_frames_map_by_referenced_sop_instance(ct_corpus: Path, tmp_path: Path) -> None:
    import highdicom as hd
    import pydicom

    from export.sources.seg_studies import read_dicom_studies

    series = next((ct_corpus / "series").glob("S04_*"))
    seg_path = next((ct_corpus / "labels").glob("S04_liver_SEG.dcm"))
    (tmp_path / "ct").symlink_to(series, target_is_directory=True)
    (tmp_path / "seg.dcm").symlink_to(seg_path)
    [volume] = read_dicom_studies(tmp_path, negative=False, segment_pattern="liver")
    # Independent truth: highdicom by UID, slices ordered by position along the normal.
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(series.iterdir())]
    headers.sort(key=lambda h: float(h.ImagePositionPatient[2]))
    seg = hd.seg.segread(seg_path)
    truth = seg.get_pixels_by_source_instance(
        [h.SOPInstanceUID for h in headers], ignore_spatial_locations=True
    )[..., 0]
    assert volume.hounsfield.shape == (3, 512, 512)
    np.testing.assert_array_equal(volume.labels, truth > 0)
    assert len({int(s) for s in truth.reshape(3, -1).sum(1)}) == 3  # slices differ
    liver_hu = volume.hounsfield[volume.labels > 0].mean()
    assert 20 < liver_hu < 200  # soft tissue, not air or bone: the mask sits on the liver


def test_corpus_seg_without_matching_segment_is_negative(ct_corpus: Path, tmp_path: Path) -> None:
    from export.sources.seg_studies import read_dicom_studies

    (tmp_path / "ct").symlink_to(next((ct_corpus / "series").glob("S04_*")))
    (tmp_path / "seg.dcm").symlink_to(ct_corpus / "labels" / "S04_liver_SEG.dcm")
    [volume] = read_dicom_studies(tmp_path, negative=False)  # default: metastasis segments
    assert not volume.labels.any()


def test_unlabelled_series_is_skipped_unless_declared_negative(ct_corpus: Path) -> None:
    from export.sources.seg_studies import read_dicom_studies

    series = next((ct_corpus / "series").glob("S04_*"))
    assert list(read_dicom_studies(series, negative=False)) == []
    [volume] = read_dicom_studies(series, negative=True)
    assert volume.labels.shape == (3, 512, 512) and not volume.labels.any()


@pytest.mark.parametrize("order", ["head_first", "feet_first"])
def test_phantom_study_seg_maps_onto_its_slices(tmp_path: Path, order: str) -> None:
    from export.phantoms.dicom_writer import write_study
    from export.phantoms.phantom import make_phantom
    from export.phantoms.spec import sample_spec
    from export.sources.seg_studies import read_dicom_studies
    from export.sources.slices import fit_slices

    spec = sample_spec(
        11,
        size=128,
        slices=10,
        n_lesions=3,
        lesion_site="vertebral_body",
        slice_thickness_mm=5.0,
        slice_spacing_mm=5.0,
        instance_order=order,
        encoding="none",
    )
    phantom = make_phantom(spec)
    assert phantom.labels.any()
    write_study(phantom, tmp_path / "study")
    [volume] = read_dicom_studies(tmp_path, negative=False)
    expected = fit_slices("truth", phantom.hounsfield, phantom.labels)
    np.testing.assert_array_equal(volume.labels, expected.labels)
    np.testing.assert_array_equal(volume.hounsfield, expected.hounsfield)
    # Positions along the normal, ascending whatever the instance order: 5 mm apart.
    np.testing.assert_allclose(volume.z, phantom.slice_positions_z, atol=1e-3)


def test_training_bank_progress_counts_folder_studies_as_they_are_found(
    ct_corpus: Path,
) -> None:
    """The bar starts at the phantom count and grows by each study read from a folder, so it
    ends full: never past its total (as it did when folders counted 0 up front)."""
    from export.training.config import DataConfig
    from export.training.data import build_training_bank, source_count

    s04 = next((ct_corpus / "series").glob("S04_*"))
    data = DataConfig(
        phantom_seeds=(7, 9),
        phantom_overrides={"slices": 4, "n_lesions": 1},
        negative_phantom_seeds=(9, 10),
        negative_dirs=(str(s04),),
        negative_dir_repeat=2,
        workers=0,
    )
    events: list[tuple[int, int]] = []
    bank = build_training_bank(data, 1, lambda done, found: events.append((done, found)))

    assert source_count(data) == 3
    assert events[-1] == (1, 1)  # S04, one study, found after the phantoms
    assert sum(done for done, _ in events) == source_count(data) + 1
    s04_slices = [name for name in bank.names if name.startswith(s04.name)]
    assert sorted(s04_slices) == sorted([f"{s04.name}:{i}" for i in range(3)] * 2)
    # Phantoms 7 and 8 keep their lesions; phantom 9 is made without any.
    volumes = np.array([name.split(":")[0] for name in bank.names])
    assert all(bank.positive[volumes == f"phantom-{seed}"].any() for seed in (7, 8))
    assert (volumes == "phantom-9").any() and not bank.positive[volumes == "phantom-9"].any()
