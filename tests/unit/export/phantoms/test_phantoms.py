"""Synthetic CT phantoms: determinism, DICOM validity, HU round trip, truth consistency."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from scipy import ndimage

from export.phantoms import (
    Phantom,
    PhantomSpec,
    make_phantom,
    read_truth,
    sample_spec,
    write_study,
)
from export.phantoms.cli import negative_indices, study_seed
from export.phantoms.identity import MANUFACTURER

SMALL = {"slices": 12, "size": 192, "pixel_spacing_mm": 1.0, "slice_thickness_mm": 2.0,
         "slice_spacing_mm": 2.0}


def small_spec(seed: int, **overrides: object) -> PhantomSpec:
    """A small study: 12 slices of 192 x 192 at 1 mm, spine in view."""
    return sample_spec(seed, **{**SMALL, **overrides})


@pytest.fixture(scope="module")
def positive() -> Phantom:
    return make_phantom(small_spec(11, n_lesions=4, region="thoracic", encoding="none"))


@pytest.fixture(scope="module")
def written(positive: Phantom, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_study(positive, tmp_path_factory.mktemp("study") / "study_0001")


def read_series(study_dir: Path) -> list[pydicom.Dataset]:
    """The CT slices sorted by ascending z, read with warnings as errors."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        datasets = [pydicom.dcmread(p) for p in sorted((study_dir / "dicom").glob("*.dcm"))]
        for ds in datasets:
            ds.pixel_array  # noqa: B018 - decode now, under the warnings filter
    return sorted(datasets, key=lambda ds: float(ds.ImagePositionPatient[2]))


def hounsfield(ds: pydicom.Dataset) -> np.ndarray:
    """Modality LUT (PS3.3 C.11.1): stored * slope + intercept."""
    return ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)


# --- spec ------------------------------------------------------------------------------------


def test_sample_spec_is_deterministic_and_overrides_touch_only_their_field() -> None:
    base = sample_spec(42)
    assert sample_spec(42) == base
    changed = sample_spec(42, encoding="rle")
    assert changed.encoding == "rle"
    assert {k: v for k, v in changed.to_dict().items() if k != "encoding"} == {
        k: v for k, v in base.to_dict().items() if k != "encoding"}
    assert sample_spec(43) != base


def test_spec_rejects_unsigned_storage_with_intercept_zero() -> None:
    with pytest.raises(ValueError, match="unsigned"):
        PhantomSpec(seed=1, signed=False, intercept=0)
    with pytest.raises(TypeError):
        sample_spec(1, colour="red")


def test_sampled_specs_cover_the_scanner_variations() -> None:
    specs = [sample_spec(seed) for seed in range(300)]
    assert {s.size for s in specs} == {256, 512, 768}
    assert {(s.signed, s.intercept) for s in specs} == {(True, -1024), (True, 0), (False, -1024)}
    assert min(s.slice_thickness_mm for s in specs) == 0.625
    assert max(s.slice_thickness_mm for s in specs) == 5.0
    assert all(0.5 <= s.pixel_spacing_mm <= 1.0 for s in specs)
    negative_share = np.mean([s.negative for s in specs])
    assert 0.3 < negative_share < 0.5
    assert {s.encoding for s in (sample_spec(i, encoding="mixed") for i in range(60))} == {
        "none", "jpeg2000", "rle"}


# --- in memory -------------------------------------------------------------------------------


def test_make_phantom_is_deterministic(positive: Phantom) -> None:
    again = make_phantom(positive.spec)
    assert again.hounsfield.tobytes() == positive.hounsfield.tobytes()
    assert again.labels.tobytes() == positive.labels.tobytes()
    assert again.lesions == positive.lesions
    other = make_phantom(small_spec(12, n_lesions=4, region="thoracic"))
    assert other.hounsfield.tobytes() != positive.hounsfield.tobytes()


def test_phantom_arrays_and_geometry(positive: Phantom) -> None:
    spec = positive.spec
    assert positive.hounsfield.dtype == np.int16
    assert positive.hounsfield.shape == (spec.slices, spec.size, spec.size)
    assert positive.labels.dtype == np.uint8 and set(np.unique(positive.labels)) == {0, 1}
    z = np.array(positive.slice_positions_z)
    np.testing.assert_allclose(np.diff(z), spec.slice_spacing_mm, atol=1e-6)
    assert positive.origin_mm[2] == z[0]
    hu = positive.hounsfield
    assert hu.min() >= -1024 and (hu == -1024).any() or spec.fov_padding
    assert (hu[positive.bone] > 150).mean() > 0.8  # bone is bright ...
    body = hu[~positive.bone & (hu > -200)]
    assert np.median(body) < 100  # ... and most of the rest is soft tissue or fat


def test_lesion_truth_matches_labels(positive: Phantom) -> None:
    spec = positive.spec
    assert 1 <= len(positive.lesions) <= spec.n_lesions
    voxel_ml = spec.pixel_spacing_mm**2 * spec.slice_spacing_mm / 1000
    labelled_slices = set(np.nonzero(positive.labels.any(axis=(1, 2)))[0].tolist())
    assert set().union(*(les.slices for les in positive.lesions)) == labelled_slices
    assert sum(les.voxels for les in positive.lesions) == int(positive.labels.sum())
    for les in positive.lesions:
        assert les.slice_range == (min(les.slices), max(les.slices))
        assert les.volume_ml == pytest.approx(les.voxels * voxel_ml, abs=1e-4)
        assert les.diameter_mm >= 3.0
        k0, k1 = les.bbox_px["slice"]
        r0, r1 = les.bbox_px["row"]
        c0, c1 = les.bbox_px["col"]
        assert (k0, k1) == les.slice_range
        box = positive.labels[k0:k1 + 1, r0:r1 + 1, c0:c1 + 1]
        assert box.sum() >= les.voxels and box[:, 0].any() and box[:, -1].any()
        assert box[:, :, 0].any() and box[:, :, -1].any()


def test_labels_lie_inside_bone(positive: Phantom) -> None:
    spacing = positive.spec.pixel_spacing_mm
    labels = positive.labels.astype(bool)
    assert (labels & positive.bone).sum() >= 0.8 * labels.sum()
    for k in np.nonzero(labels.any(axis=(1, 2)))[0]:
        outside_mm = ndimage.distance_transform_edt(~positive.bone[k], sampling=spacing)
        assert outside_mm[labels[k]].max() <= 1.5 + spacing  # at most a small cortical breach


@pytest.mark.parametrize(("kind", "low", "high"), [("lytic", 0, 100), ("blastic", 700, 1500)])
def test_lesion_density(kind: str, low: float, high: float) -> None:
    phantom = make_phantom(small_spec(5, n_lesions=3, lesion_kind=kind,
                                      lesion_site="vertebral_body", region="lumbar", slices=16))
    assert phantom.lesions and all(les.kind == kind for les in phantom.lesions)
    # The eroded core: the rim is blurred with the surrounding bone (partial volume).
    core = ndimage.binary_erosion(phantom.labels.astype(bool), structure=np.ones((1, 3, 3)))
    assert core.sum() > 20
    assert low <= phantom.hounsfield[core].mean() <= high


def _marrow_core(phantom: Phantom) -> np.ndarray:
    """Bone 3 px or more inside its outline (marrow, no cortex), away from lesions."""
    lesions = ndimage.binary_dilation(phantom.labels.astype(bool), iterations=4)
    core = ndimage.binary_erosion(phantom.bone, structure=np.ones((1, 7, 7)))
    return core & ~lesions  # type: ignore[no-any-return]


def test_marrow_range_darkens_the_marrow_and_nothing_else(positive: Phantom) -> None:
    assert positive.spec.marrow_hu == (140.0, 270.0)  # normal adult bone unless asked
    dark = make_phantom(small_spec(11, n_lesions=4, region="thoracic", encoding="none",
                                   marrow_hu=(70.0, 70.0)))
    # Same patient, same lesions, same noise: only the marrow density moved.
    assert dark.labels.tobytes() == positive.labels.tobytes()
    assert dark.lesions == positive.lesions
    assert dark.bone.tobytes() == positive.bone.tobytes()
    core = _marrow_core(positive)
    assert core.sum() > 500
    normal, osteoporotic = (float(np.median(p.hounsfield[core])) for p in (positive, dark))
    assert 120 <= normal <= 300
    assert 40 <= osteoporotic <= 110 and normal - osteoporotic > 60
    # Beyond the blur's reach of any bone, every pixel is the same.
    far = ~ndimage.binary_dilation(positive.bone, structure=np.ones((1, 9, 9)))
    assert np.array_equal(dark.hounsfield[far], positive.hounsfield[far])
    changed = dark.hounsfield != positive.hounsfield
    assert changed.any() and not (changed & far).any()


def test_marrow_range_is_checked_and_survives_json() -> None:
    spec = small_spec(4, marrow_hu=[70, 270])  # a JSON list, as training configs give it
    assert spec.marrow_hu == (70.0, 270.0)
    assert PhantomSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert sample_spec(4).marrow_hu == (140.0, 270.0)
    for bad in ((200, 100), (-10, 100), (100, 500), 150, (100, 150, 200), ("low", "high")):
        with pytest.raises(ValueError, match="marrow_hu"):
            PhantomSpec(seed=1, marrow_hu=bad)


def test_negative_study_has_no_labels(tmp_path: Path) -> None:
    phantom = make_phantom(small_spec(3, n_lesions=0, slices=6))
    assert phantom.lesions == [] and not phantom.labels.any()
    study = write_study(phantom, tmp_path / "neg")
    truth = read_truth(study)
    assert truth.negative and truth.positive_slices == []
    seg = hd.seg.segread(study / "seg.dcm")
    uids = [s.sop_instance_uid for s in truth.slices]
    mask = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[1])
    assert mask.shape[0] == len(uids) and not mask.any()


# --- on disk ---------------------------------------------------------------------------------


def test_written_series_is_a_consistent_ct_series(written: Path, positive: Phantom) -> None:
    datasets = read_series(written)
    truth = read_truth(written)
    assert len(datasets) == positive.spec.slices
    for key in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        assert len({ds[key].value for ds in datasets}) == 1
    assert len({ds.SOPInstanceUID for ds in datasets}) == len(datasets)
    first = datasets[0]
    assert first.SOPClassUID == pydicom.uid.CTImageStorage
    assert first.StudyInstanceUID == truth.study_instance_uid
    assert first.SeriesInstanceUID == truth.series_instance_uid
    assert first.Manufacturer == MANUFACTURER and first.RescaleType == "HU"
    assert str(first.PatientName).startswith("PHANTOM^") and first.PatientID.startswith("PHANTOM-")
    assert [float(v) for v in first.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    z = [float(ds.ImagePositionPatient[2]) for ds in datasets]
    np.testing.assert_allclose(np.diff(z), float(first.SpacingBetweenSlices), atol=1e-4)
    np.testing.assert_allclose(z, positive.slice_positions_z, atol=1e-4)
    assert [ds.SOPInstanceUID for ds in datasets] == [s.sop_instance_uid for s in truth.slices]
    # Head first: instance 1 is the top slice.
    numbers = [int(ds.InstanceNumber) for ds in datasets]
    expected = sorted(numbers, reverse=positive.spec.instance_order == "head_first")
    assert numbers == expected


def test_highdicom_reads_the_slices(written: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for path in sorted((written / "dicom").glob("*.dcm"))[:3]:
            image = hd.imread(path)
            assert image.number_of_frames == 1


def test_seg_matches_labels(written: Path, positive: Phantom) -> None:
    truth = read_truth(written)
    seg = hd.seg.segread(written / "seg.dcm")
    assert seg.StudyInstanceUID == truth.study_instance_uid
    assert seg.FrameOfReferenceUID == truth.frame_of_reference_uid
    assert seg.SegmentSequence[0].SegmentLabel == "Metastasis"
    mask = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[s.sop_instance_uid for s in truth.slices],
        segment_numbers=[1], assert_missing_frames_are_empty=True,
    )
    assert np.array_equal(mask[..., 0].astype(np.uint8), positive.labels)
    assert [s.positive for s in truth.slices] == positive.labels.any(axis=(1, 2)).tolist()


def test_truth_json_round_trip(written: Path, positive: Phantom) -> None:
    truth = read_truth(written)
    assert truth.spec == positive.spec
    assert list(truth.lesions) == positive.lesions
    assert truth.origin_mm == positive.origin_mm
    assert [s.z_mm for s in truth.slices] == positive.slice_positions_z
    for s in truth.slices:
        assert (written / s.file).is_file()
        assert s.positive == bool(s.lesion_ids)


def test_write_study_is_byte_identical(written: Path, positive: Phantom, tmp_path: Path) -> None:
    again = write_study(make_phantom(positive.spec), tmp_path / "again")
    for path in sorted(written.rglob("*")):
        if path.is_file():
            assert (again / path.relative_to(written)).read_bytes() == path.read_bytes(), path


STORAGE = [
    (True, -1024, "none", False), (True, 0, "none", True), (False, -1024, "none", False),
    (True, -1024, "jpeg2000", True), (False, -1024, "jpeg2000", False),
    (True, 0, "rle", False), (False, -1024, "rle", False),
]


@pytest.mark.parametrize(("signed", "intercept", "encoding", "padding"), STORAGE)
def test_hounsfield_round_trip(tmp_path: Path, signed: bool, intercept: int, encoding: str,
                               padding: bool) -> None:
    spec = small_spec(21, slices=4, signed=signed, intercept=intercept, encoding=encoding,
                      fov_padding=padding, n_lesions=1)
    phantom = make_phantom(spec)
    datasets = read_series(write_study(phantom, tmp_path / "s"))
    for k, ds in enumerate(datasets):
        assert int(ds.PixelRepresentation) == int(signed)
        assert ds.pixel_array.dtype == (np.int16 if signed else np.uint16)
        assert ds.pixel_array.max() < 2 ** int(ds.BitsStored - signed)
        assert np.array_equal(hounsfield(ds), phantom.hounsfield[k])
    if padding:
        assert (phantom.hounsfield == -2000).any()
        assert int(datasets[0].PixelPaddingValue) == -2000 - intercept
    expected = {"none": pydicom.uid.ExplicitVRLittleEndian,
                "jpeg2000": pydicom.uid.JPEG2000Lossless, "rle": pydicom.uid.RLELossless}
    assert datasets[0].file_meta.TransferSyntaxUID == expected[encoding]


# --- command line ----------------------------------------------------------------------------


def test_cli_writes_studies_with_the_negative_share(tmp_path: Path) -> None:
    from api.cli import main

    out = tmp_path / "set"
    code = main(["phantom", "--out", str(out), "--studies", "2", "--seed", "5", "--slices", "4",
                 "--size", "128", "--negative-share", "0.5"])
    assert code == 0
    index = json.loads((out / "index.json").read_text())
    assert [item["study"] for item in index] == ["study_0001", "study_0002"]
    negatives = negative_indices(5, 2, 0.5, 1)
    assert len(negatives) == 1
    for number, item in enumerate(index, start=1):
        truth = read_truth(out / item["study"])
        assert truth.spec.seed == study_seed(5, number)
        assert truth.spec.size == 128 and len(truth.slices) == 4
        assert truth.spec.n_lesions == 0 if number in negatives else truth.spec.n_lesions >= 1


def test_cli_marrow_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from api.cli import main

    out = tmp_path / "old"
    assert main(["phantom", "--out", str(out), "--studies", "1", "--seed", "5", "--slices", "2",
                 "--size", "96", "--marrow-hu", "70:90"]) == 0
    assert read_truth(out / "study_0001").spec.marrow_hu == (70.0, 90.0)
    for bad, says in (("90:70", "marrow_hu must be"), ("dense", "expected LOW:HIGH")):
        with pytest.raises(SystemExit) as exit_info:
            main(["phantom", "--out", str(out), "--marrow-hu", bad])
        assert exit_info.value.code == 2
        assert says in capsys.readouterr().err


def test_cli_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    from api.cli import main

    with pytest.raises(SystemExit):
        main(["phantom", "--help"])
    assert "bonemets phantom --out" in capsys.readouterr().out


@pytest.mark.slow
def test_full_size_study(tmp_path: Path) -> None:
    """A 100-slice 512 x 512 study, generated and written (timing is reported, not tested)."""
    spec = sample_spec(2024, slices=100, size=512, n_lesions=3)
    phantom = make_phantom(spec)
    study = write_study(phantom, tmp_path / "full")
    assert len(list((study / "dicom").glob("*.dcm"))) == 100
    assert read_truth(study).positive_slices == np.nonzero(
        phantom.labels.any(axis=(1, 2)))[0].tolist()


def test_written_slices_and_seg_pass_dciodvfy(written: Path) -> None:
    """No errors from dicom3tools' validator: a SEG or SR made from a phantom copies its
    patient module, so a phantom's own defect (once: PatientIdentityRemoved without
    DeidentificationMethod) would make theirs invalid too."""
    import shutil
    import subprocess

    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian's dicom3tools) is not installed: make dicom3tools")
    files = [next(iter(sorted((written / "dicom").glob("*.dcm")))), written / "seg.dcm"]
    for path in files:
        report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        errors = [line for line in (report.stdout + report.stderr).splitlines()
                  if line.startswith("Error")]
        assert errors == [], (path.name, errors)
