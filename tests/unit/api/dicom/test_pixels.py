"""Stored values to HU (modality LUT, padding), windows, and decoding failures."""

from __future__ import annotations

import pickle
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut
from pydicom.uid import UID, JPEG2000Lossless, JPEGLSLossless, RLELossless

from api.dicom.hounsfield import Rescale, apply_rescale, check_plausible
from api.dicom.pixels import (
    decode_hounsfield,
    decode_stored,
    hounsfield,
    rescale_for,
)
from api.errors import CorruptPixelData, UnsupportedCompression
from tests.dicom_builders import compressed, ct_slice, enhanced_ct, stored_pattern, write

pytestmark = pytest.mark.timeout(60)

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def bundled(name: str) -> Path:
    """A file shipped inside pydicom (never fetched: get_testdata_file would download)."""
    path = PYDICOM_FILES / name
    if not path.is_file():
        pytest.skip(f"pydicom does not bundle {name}")
    return path


def test_rescale_is_slope_times_stored_plus_intercept() -> None:
    stored = np.array([[0, 1, 2, 1000]], dtype=np.uint16)
    assert apply_rescale(stored, Rescale(1.0, -1024.0)).tolist() == [[-1024, -1023, -1022, -24]]
    assert apply_rescale(stored, Rescale(2.0, -1000.0)).tolist() == [[-1000, -998, -996, 1000]]


def test_non_integer_results_round_half_to_even() -> None:
    stored = np.array([1, 3, 5, 6], dtype=np.int16)
    assert apply_rescale(stored, Rescale(0.5, 0.0)).tolist() == [0, 2, 2, 3]
    assert apply_rescale(stored, Rescale(1.0, 0.25)).tolist() == [1, 3, 5, 6]


def test_results_clip_to_int16() -> None:
    stored = np.array([-30000, 0, 30000], dtype=np.int16)
    assert apply_rescale(stored, Rescale(10.0, 0.0)).tolist() == [-32768, 0, 32767]
    assert apply_rescale(stored, Rescale(10.0, 0.0)).dtype == np.int16


def test_padding_becomes_air() -> None:
    stored = np.array([-2000, -1999, 0, 2000], dtype=np.int16)
    hu = apply_rescale(stored, Rescale(1.0, -1024.0, (-2000, -2000)))
    assert hu.tolist() == [-1024, -3023, -1024, 976]


def test_padding_value_written_unsigned_in_a_signed_image() -> None:
    ds = ct_slice(padding=-2000)
    ds.PixelPaddingValue = 63536  # -2000 as US, as some GE files have it
    assert rescale_for(ds).padding == (-2000, -2000)


def test_padding_range_limit() -> None:
    ds = ct_slice(padding=-3000)
    ds.PixelPaddingRangeLimit = -2000
    rescale = rescale_for(ds)
    assert rescale.padding == (-3000, -2000)
    stored = np.array([-3001, -3000, -2500, -2000, -1999], dtype=np.int16)
    assert apply_rescale(stored, rescale).tolist() == [-4025, -1024, -1024, -1024, -3023]


def test_padding_that_names_tissue_is_ignored() -> None:
    # Stored 0 with intercept 0 is water: mapping it to air would erase tissue.
    assert rescale_for(ct_slice(padding=0, intercept=0.0)).padding is None
    assert rescale_for(ct_slice(padding=0, intercept=-1024.0)).padding == (0, 0)


def test_rescale_defaults_and_broken_values() -> None:
    ds = ct_slice()
    del ds.RescaleSlope, ds.RescaleIntercept
    assert rescale_for(ds) == Rescale(1.0, 0.0, None)
    ds.RescaleSlope = "0"
    ds.RescaleIntercept = "0"
    with pytest.raises(CorruptPixelData):
        rescale_for(ds)


def test_enhanced_rescale_is_per_frame() -> None:
    ds = enhanced_ct(
        [(0, 0, 0), (0, 0, 1)], np.zeros((2, 4, 4), np.int16), [(1.0, -1024.0), (2.0, -1000.0)]
    )
    assert rescale_for(ds, 0) == Rescale(1.0, -1024.0)
    assert rescale_for(ds, 1) == Rescale(2.0, -1000.0)


def test_plausibility_rejects_noise_and_accepts_constant_fill() -> None:
    rng = np.random.default_rng(1)
    check_plausible(np.full((64, 64), -1024, np.int16))
    fill = rng.integers(-1000, 2000, (64, 64)).astype(np.int16)
    fill[:, :40] = -32768  # outside the field of view, however wide
    check_plausible(fill)
    noise = rng.integers(-32768, 32767, (64, 64)).astype(np.int16)
    with pytest.raises(CorruptPixelData, match="not plausible"):
        check_plausible(noise)


def test_hounsfield_of_pydicom_ct_small() -> None:
    ds = pydicom.dcmread(bundled("CT_small.dcm"))
    expected = np.rint(apply_modality_lut(ds.pixel_array, ds)).astype(np.int16)
    # CT_small declares PixelPaddingValue -2000; no pixel holds it, so nothing changes.
    assert not (ds.pixel_array == -2000).any()
    result = hounsfield(ds)
    assert result.dtype == np.int16
    np.testing.assert_array_equal(result, expected)
    np.testing.assert_array_equal(decode_hounsfield(bundled("CT_small.dcm")), expected)


@pytest.mark.parametrize("name", ["693_J2KI.dcm", "J2K_pixelrep_mismatch.dcm"])
def test_hounsfield_of_pydicom_jpeg2000_ct(name: str) -> None:
    ds = pydicom.dcmread(bundled(name))
    stored = ds.pixel_array
    expected = np.rint(apply_modality_lut(stored, ds))
    padding = ds.get("PixelPaddingValue")
    if padding is not None:
        expected[stored == padding] = -1024
    np.testing.assert_array_equal(decode_hounsfield(bundled(name)), expected.astype(np.int16))


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless])
def test_compressed_round_trip(tmp_path: Path, syntax: UID) -> None:
    pixels = stored_pattern(32, 32, 3) - 1500
    path = write(compressed(ct_slice(pixels=pixels, intercept=0.0), syntax), tmp_path / "c.dcm")
    np.testing.assert_array_equal(decode_stored(path), pixels)
    np.testing.assert_array_equal(decode_hounsfield(path), pixels)


def test_damaged_codestream_is_corrupt_pixel_data(tmp_path: Path) -> None:
    ds = compressed(ct_slice(pixels=stored_pattern(32, 32, 1)), JPEG2000Lossless)
    data = bytearray(ds.PixelData)
    # Keep the item structure; cut the J2K codestream short inside its first fragment.
    data[16:] = b"\x00" * (len(data) - 16)
    ds.PixelData = bytes(data)
    path = write(ds, tmp_path / "damaged.dcm")
    with pytest.raises(CorruptPixelData):
        decode_stored(path)


def test_transfer_syntax_without_decoder_is_unsupported(tmp_path: Path) -> None:
    ds = compressed(ct_slice(), RLELossless)
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.55")  # JPEG process 10/12
    path = write(ds, tmp_path / "p10.dcm")
    with pytest.raises(UnsupportedCompression, match="Process 10"):
        decode_stored(path)


def test_a_multiframe_dataset_needs_a_frame_index() -> None:
    ds = enhanced_ct([(0, 0, 0), (0, 0, 1)], np.zeros((2, 4, 4), np.int16), [(1.0, 0.0)] * 2)
    with pytest.raises(ValueError, match="frame index"):
        hounsfield(ds)
    np.testing.assert_array_equal(hounsfield(ds, 1), np.zeros((4, 4), np.int16))


def test_decoding_is_picklable_and_runs_in_a_worker(tmp_path: Path) -> None:
    ds = enhanced_ct(
        [(0, 0, 0), (0, 0, 1), (0, 0, 2)],
        np.stack([stored_pattern(8, 8, i) for i in range(3)]),
        [(1.0, -1024.0)] * 3,
    )
    path = write(ds, tmp_path / "multi.dcm")
    pickle.dumps((decode_hounsfield, path, 1))
    with ProcessPoolExecutor(max_workers=1) as pool:
        frame = pool.submit(decode_hounsfield, path, 1).result(timeout=60)
    np.testing.assert_array_equal(frame, stored_pattern(8, 8, 1) - 1024)
