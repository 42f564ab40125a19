"""Every file of the real CT corpus is read like pydicom reads it, or rejected with its error.

The corpus (``ct_corpus`` fixture) holds real scanners' files: series, one slice in 15
transfer syntaxes, enhanced multi-frame, edge cases and malformed files. Tests are
parametrized over ``manifest.tsv`` so that a failure names the file.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, pixel_array

from api.dicom.series import CTSeries, load_slice_hounsfield, select_ct_series
from api.errors import (
    CorruptPixelData,
    InconsistentGeometry,
    InvalidUpload,
    MalformedDicom,
    NoCTSeries,
    NoPixelData,
    NotCT,
    NotDicom,
    UnsupportedCompression,
)
from tests.conftest import REPO_ROOT

pytestmark = [
    pytest.mark.timeout(120),
    # The corpus is full of deliberately odd files; pydicom warns about each while reading.
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

SUPPORT_FILES = {"README.md", "manifest.tsv", "SOURCES.txt"}
TS_GE = "singles/ts_ge_hispeed_"
NO_PIXELS = "malformed/ge_lightspeed_ct_header_only_no_pixeldata_"
# Every file not listed here must be read, with HU equal to pydicom's modality LUT.
REJECTED: dict[str, type[InvalidUpload]] = {
    "edgecases/ct_modality_secondary_capture_8bit.dcm": NotCT,
    "edgecases/ct_sagittal_reformat_568x652_nonsquare_unsigned.dcm": NotCT,
    "edgecases/philips_brilliance64_LOCALIZER_j2ki_716x512.dcm": NoCTSeries,
    "edgecases/philips_exam_summary_secondary_capture_modality_CT.dcm": NotCT,
    "edgecases/philips_ingenuity_flex_LOCALIZER_surview_evrle.dcm": NoCTSeries,
    "edgecases/philips_localizer_scout_256x512.dcm": NoCTSeries,
    "edgecases/toshiba_pelvis_coronalMPR_j2k_signed_pixrep1.dcm": NoCTSeries,
    "edgecases/toshiba_pelvis_coronalMPR_j2k_signed_stream_but_pixrep0.dcm": NoCTSeries,
    "edgecases/wrong_modality_MR_small.dcm": NotCT,
    "labels/S01_totalseg_fast_multilabel_seg.nii.gz": NotDicom,
    "labels/S04_liver_SEG.dcm": NotCT,
    "labels/S04_liver_spine_seg.nrrd": NotDicom,
    "labels/S04_partial_overlaps_SEG.dcm": NotCT,
    "labels/S04_spine_seg.nrrd": NotDicom,
    "malformed/ct1_ivrle_bigendian_undefined_length.dcm": NotDicom,
    # pydicom reads the next four leniently; each breaks a rule we refuse to guess around.
    "malformed/ct1_bigendian_ELE_undefined_length.dcm": MalformedDicom,
    "malformed/ge_CT_small_bad_file_meta.dcm": MalformedDicom,
    "malformed/siemens_chest_ct_implicit_vr_file_meta.dcm": MalformedDicom,
    "malformed/toshiba_aquilion_jp2_header_in_j2k.dcm": CorruptPixelData,
    # pydicom decodes this one to noise over the whole int16 range without complaint.
    "malformed/ct_jpeg_lossless57_bad_codestream.dcm": CorruptPixelData,
    "malformed/derived_empty.dcm": NotDicom,
    "malformed/derived_not_dicom.dcm": NotDicom,
    "malformed/derived_truncated_S01_slice.dcm": CorruptPixelData,
    "malformed/ge_CT_small_no_file_meta_misaligned.dcm": NotDicom,
    "malformed/ge_ct_meta_says_jpegls_but_raw_pixels.dcm": CorruptPixelData,
    NO_PIXELS + "GH178.dcm": NoPixelData,
    NO_PIXELS + "GH179A.dcm": NoPixelData,
    NO_PIXELS + "GH179B.dcm": NoPixelData,
    "malformed/hologic_breast_tomo_modality_CT_short_pixeldata.dcm": CorruptPixelData,
    "malformed/meta_missing_transfer_syntax.dcm": NotDicom,
    "malformed/mr_j2k_too_short.dcm": NotCT,
    "malformed/mr_truncated_pixeldata.dcm": NotCT,
    "malformed/nm_j2k_embedded_sequence_delimiter.dcm": NotCT,
    "singles/ge_genesis_zeus_ankle_ivrle.dcm": NotCT,
    TS_GE + "JPEGProcess10_12TransferSyntax_1.2.840.10008.1.2.4.55.dcm": UnsupportedCompression,
    TS_GE + "JPEGProcess6_8TransferSyntax_1.2.840.10008.1.2.4.53.dcm": UnsupportedCompression,
}
SERIES_DIRS = {
    "S01_siemens_biograph_mCT_abdomen_j2k": 20,
    "S01b_DERIVED_S01_uids_restamped": 20,
    "S02_ge_hispeed_head_tilt_variable_spacing": 28,
    "S03_philips_ingenuity_phantom_head_5mm": 28,
    "S04_ge_lightspeed_abdomen_3slice": 3,
}


def _manifest_files() -> list[str]:
    """Manifest entries, read at collection time so that each file is its own test."""
    override = os.environ.get("BONEMETS_CT_CORPUS")
    corpus = Path(override) if override else REPO_ROOT.parent / "shared" / "ct-corpus"
    manifest = corpus / "manifest.tsv"
    if not manifest.is_file():
        return []
    with manifest.open(newline="") as fp:
        return [row["file"] for row in csv.DictReader(fp, delimiter="\t")]


def reference_hounsfield(path: Path, frame: int | None) -> NDArray[np.int16]:
    """pydicom's own decode and modality LUT, rounded and clipped, padding mapped to air."""
    ds = pydicom.dcmread(path, force=True)
    stored = pixel_array(ds, index=frame) if frame is not None else ds.pixel_array
    lut_source = _frame_rescale(ds, frame) if frame is not None else ds
    hu = np.rint(np.asarray(apply_modality_lut(stored, lut_source), dtype=np.float64))
    padding = ds.get("PixelPaddingValue")
    if isinstance(padding, int):
        if ds.PixelRepresentation == 1 and padding > 32767:
            padding -= 65536
        slope = float(lut_source.get("RescaleSlope", 1.0))
        intercept = float(lut_source.get("RescaleIntercept", 0.0))
        if slope * padding + intercept <= -1000:  # the documented tissue guard
            hu[stored == padding] = -1024
    return np.clip(hu, -32768, 32767).astype(np.int16)


def _frame_rescale(ds: Dataset, frame: int) -> Dataset:
    """The Pixel Value Transformation of one enhanced frame (per-frame over shared)."""
    shim = Dataset()
    for groups in (ds.get("SharedFunctionalGroupsSequence"), ds.PerFrameFunctionalGroupsSequence):
        item = groups[0 if groups is not ds.PerFrameFunctionalGroupsSequence else frame]
        if groups and "PixelValueTransformationSequence" in item:
            transform = item.PixelValueTransformationSequence[0]
            shim.RescaleSlope = transform.RescaleSlope
            shim.RescaleIntercept = transform.RescaleIntercept
    return shim


def read_all(path: Path) -> tuple[CTSeries, list[NDArray[np.int16]]]:
    series = select_ct_series([path])
    return series, [load_slice_hounsfield(ref) for ref in series.slices]


def test_the_manifest_lists_every_file(ct_corpus: Path) -> None:
    on_disk = {
        str(p.relative_to(ct_corpus))
        for p in ct_corpus.rglob("*")
        if p.is_file() and p.name not in SUPPORT_FILES
    }
    assert on_disk == set(_manifest_files())
    assert set(REJECTED) <= on_disk


@pytest.mark.parametrize("name", _manifest_files())
def test_each_file_is_read_like_pydicom_or_rejected(ct_corpus: Path, name: str) -> None:
    path = ct_corpus / name
    expected_error = REJECTED.get(name)
    if expected_error is not None:
        with pytest.raises(InvalidUpload) as raised:
            read_all(path)
        assert type(raised.value) is expected_error, raised.value.detail
        assert raised.value.detail.startswith(f"{path.name}: ")
        return
    series, slices = read_all(path)
    assert len(slices) >= 1
    for ref, hounsfield in zip(series.slices, slices, strict=True):
        assert hounsfield.dtype == np.int16
        assert hounsfield.shape == (ref.geometry.rows, ref.geometry.columns)
        np.testing.assert_array_equal(hounsfield, reference_hounsfield(path, ref.frame))


@pytest.mark.parametrize(("folder", "count"), sorted(SERIES_DIRS.items()))
def test_real_series_select_every_slice_sorted_by_position(
    ct_corpus: Path, folder: str, count: int
) -> None:
    files = sorted((ct_corpus / "series" / folder).iterdir())
    series = select_ct_series(files)
    assert len(series.slices) == count
    assert {ref.path for ref in series.slices} == set(files)
    z = [ref.z for ref in series.slices]
    assert all(b > a for a, b in zip(z, z[1:], strict=False))
    for ref in series.slices:
        ds = pydicom.dcmread(ref.path, stop_before_pixels=True)
        assert ref.position == pytest.approx(tuple(float(v) for v in ds.ImagePositionPatient))
    assert series.rejected == ()


def test_s01_blank_uids_get_synthetic_ones_and_match_s01b(ct_corpus: Path) -> None:
    s01 = select_ct_series(
        sorted((ct_corpus / "series" / "S01_siemens_biograph_mCT_abdomen_j2k").iterdir())
    )
    s01b = select_ct_series(
        sorted((ct_corpus / "series" / "S01b_DERIVED_S01_uids_restamped").iterdir())
    )
    assert s01.synthetic_uids and not s01b.synthetic_uids
    assert s01.series_uid.startswith("2.25.") and s01.study_uid.startswith("2.25.")
    assert len({ref.sop_instance_uid for ref in s01.slices}) == 20
    assert any(w.startswith("blank StudyInstanceUID, SeriesInstanceUID") for w in s01.warnings)
    assert s01b.warnings == ()
    assert s01.slice_spacing_mm == pytest.approx(2.0)
    assert [ref.instance_number for ref in s01.slices] == list(range(286, 266, -1))
    for index in (0, 19):
        np.testing.assert_array_equal(
            load_slice_hounsfield(s01.slices[index]), load_slice_hounsfield(s01b.slices[index])
        )


def test_s02_tilt_and_uneven_spacing_are_warnings(ct_corpus: Path) -> None:
    series = select_ct_series(
        sorted((ct_corpus / "series" / "S02_ge_hispeed_head_tilt_variable_spacing").iterdir())
    )
    assert [ref.instance_number for ref in series.slices] == list(range(1, 29))
    assert series.slice_spacing_mm == pytest.approx(4.0, abs=0.01)
    kinds = sorted(w.split(":")[0] for w in series.warnings)
    assert kinds == ["gantry tilt", "uneven slice spacing"]
    assert "18.5 degrees" in next(w for w in series.warnings if w.startswith("gantry"))


def test_lossless_encodings_of_one_enhanced_ct_decode_alike(ct_corpus: Path) -> None:
    folder = ct_corpus / "enhanced_multiframe"
    names = [
        "CT0012.fragmented_no_bot_jpeg_lossless.57.dcm",
        "CT0012.fragmented_no_bot_jpeg_ls.80.dcm",
        "CT0012.not_fragmented_bot_rle.dcm",
        "eCT_Supplemental_2frame_evrle.dcm",
    ]
    decoded = [read_all(folder / name)[1] for name in names]
    for other in decoded[1:]:
        for a, b in zip(decoded[0], other, strict=True):
            np.testing.assert_array_equal(a, b)
    series = select_ct_series([folder / names[0]])
    # IOP (-1,0,0, 0,1,0): the normal points to -z, so frame 1 (z -149) precedes frame 0.
    assert [ref.frame for ref in series.slices] == [1, 0]
    assert [ref.position[2] for ref in series.slices] == [-149.0, -159.0]
    assert series.slice_spacing_mm == pytest.approx(10.0)
    assert any("RescaleType is US" in w for w in series.warnings)


def test_single_transfer_syntax_files_agree_with_the_uncompressed_one(ct_corpus: Path) -> None:
    singles = ct_corpus / "singles"
    reference = read_all(
        singles / (TS_GE[8:] + "LittleEndianExplicitTransferSyntax_1.2.840.10008.1.2.1.dcm")
    )[1][0]
    lossless = [
        "BigEndianExplicitTransferSyntax_1.2.840.10008.1.2.2.dcm",
        "DeflatedExplicitVRLittleEndianTransferSyntax_1.2.840.10008.1.2.1.99.dcm",
        "JPEG2000LosslessOnlyTransferSyntax_1.2.840.10008.1.2.4.90.dcm",
        "JPEGLSLosslessTransferSyntax_1.2.840.10008.1.2.4.80.dcm",
        "JPEGProcess14SV1TransferSyntax_1.2.840.10008.1.2.4.70.dcm",
        "JPEGProcess14TransferSyntax_1.2.840.10008.1.2.4.57.dcm",
        "LittleEndianImplicitTransferSyntax_1.2.840.10008.1.2.dcm",
        "RLELosslessTransferSyntax_1.2.840.10008.1.2.5.dcm",
    ]
    for name in lossless:
        np.testing.assert_array_equal(read_all(singles / (TS_GE[8:] + name))[1][0], reference)


def test_the_whole_corpus_as_one_upload(ct_corpus: Path) -> None:
    files = sorted(ct_corpus / name for name in _manifest_files())
    series = select_ct_series(files)
    # S02 and S03 both have 28 slices; S02's planes are closer (4 mm against 5 mm).
    assert series.series_uid == "1.2.826.0.1.3680043.9.4245.3115138630835728997848661150714813892"
    assert len(series.slices) == 28
    subjects = {r.subject: r for r in series.rejected}
    assert subjects["series 201 'STD BRAIN 5MM' (28 files)"].error is NoCTSeries
    assert any(r.error is NotCT and "S04_liver_SEG.dcm" in r.subject for r in series.rejected)
    # singles/ holds one slice in many encodings under one series UID: lossy and lossless
    # copies at one position make those groups (and the CT0012 files) inconsistent.
    inconsistent = sorted(r.files for r in series.rejected if r.error is InconsistentGeometry)
    assert inconsistent == [2, 5, 6, 13]
    assert sum(r.files for r in series.rejected) == len(files) - 28


@pytest.mark.parametrize(
    ("damaged", "rule"),
    [
        ("malformed/ct1_bigendian_ELE_undefined_length.dcm", "VR UN and undefined length"),
        ("malformed/ge_CT_small_bad_file_meta.dcm", "(0002,0002) Media Storage SOP Class UID"),
        ("malformed/siemens_chest_ct_implicit_vr_file_meta.dcm", "'DICM' prefix"),
        ("malformed/toshiba_aquilion_jp2_header_in_j2k.dcm", "JP2 file header"),
    ],
)
def test_leniently_readable_malformed_files_are_refused_naming_the_rule(
    ct_corpus: Path, damaged: str, rule: str
) -> None:
    with pytest.raises(InvalidUpload) as refused:
        select_ct_series([ct_corpus / damaged])
    assert rule in refused.value.detail
