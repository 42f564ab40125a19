"""Uncompressed slices read straight from the file: the path taken, and HU equal to pydicom's.

The raw read (:mod:`api.dicom.native`) must give, for every slice it accepts, the very HU
that pydicom's decode gives (``load_slice_hounsfield`` of the same slice without its
``native`` layout, today's path). Which path ran is observed by counting pydicom's
``pixel_array`` calls, the decode behind :func:`api.dicom.pixels.decode_stored`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, RLELossless

import api.dicom.pixels
from api.dicom.native import NativeLayout, native_layout, read_native
from api.dicom.pixels import decode_hounsfield
from api.dicom.series import SliceRef, load_slice_hounsfield, select_ct_series
from api.errors import InvalidUpload
from tests.dicom_builders import (
    compressed,
    ct_slice,
    enhanced_ct,
    stored_pattern,
    write,
    write_series,
)

pytestmark = [pytest.mark.timeout(120), pytest.mark.filterwarnings("ignore::UserWarning")]

CORPUS_FOLDERS = ("series", "singles", "enhanced_multiframe", "edgecases")
# Files the raw read must serve: one of each layout it claims.
NATIVE_IN_CORPUS = (
    "singles/nema_CT1_explicit_big_endian_ge.dcm",
    "singles/ts_ge_hispeed_BigEndianExplicitTransferSyntax_1.2.840.10008.1.2.2.dcm",
    "singles/ts_ge_hispeed_LittleEndianImplicitTransferSyntax_1.2.840.10008.1.2.dcm",
    "singles/nema_CT2_UNC_toshiba.dcm",
    "edgecases/ct_693_bitsstored14_unc.dcm",
    "enhanced_multiframe/eCT_Supplemental_2frame_evrle.dcm",
    "series/S03_philips_ingenuity_phantom_head_5mm",  # unsigned, intercept -1024
    "series/S04_ge_lightspeed_abdomen_3slice",  # implicit VR
)


@pytest.fixture
def pydicom_decodes(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every call of pydicom's ``pixel_array`` made by our decode, recorded."""
    calls: list[Any] = []
    real: Callable[..., Any] = api.dicom.pixels.pixel_array

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(api.dicom.pixels, "pixel_array", counting)
    return calls


def _through_pydicom(ref: SliceRef) -> np.ndarray[Any, Any]:
    """The slice's HU as read before the raw path was wired in."""
    return load_slice_hounsfield(replace(ref, native=None))


def test_an_uncompressed_slice_is_read_without_pydicom(
    tmp_path: Path, pydicom_decodes: list[Any]
) -> None:
    series = select_ct_series(write_series(tmp_path, [0.0, 1.0, 2.0]))
    assert all(ref.native is not None for ref in series.slices)
    loaded = [load_slice_hounsfield(ref) for ref in series.slices]
    assert pydicom_decodes == []
    for ref, hounsfield in zip(series.slices, loaded, strict=True):
        np.testing.assert_array_equal(hounsfield, decode_hounsfield(ref.path))
    assert len(pydicom_decodes) == 3  # the references, through pydicom: the counter counts


def test_a_compressed_slice_is_decoded_by_pydicom(
    tmp_path: Path, pydicom_decodes: list[Any]
) -> None:
    path = write(compressed(ct_slice(), RLELossless), tmp_path / "rle.dcm")
    (ref,) = select_ct_series([path]).slices
    assert ref.native is None
    load_slice_hounsfield(ref)
    assert len(pydicom_decodes) == 1


def test_each_frame_of_an_uncompressed_enhanced_ct_is_read_without_pydicom(
    tmp_path: Path, pydicom_decodes: list[Any]
) -> None:
    pixels = np.stack([stored_pattern(8, 8, seed) for seed in range(3)])
    ds = enhanced_ct([(0, 0, 0), (0, 0, 1), (0, 0, 2)], pixels, [(1.0, -1024.0)] * 3)
    refs = select_ct_series([write(ds, tmp_path / "enhanced.dcm")]).slices
    assert [ref.frame for ref in refs] == [0, 1, 2]
    loaded = [load_slice_hounsfield(ref) for ref in refs]
    assert pydicom_decodes == []
    for ref, hounsfield in zip(refs, loaded, strict=True):
        assert hounsfield.tobytes() == _through_pydicom(ref).tobytes()
        np.testing.assert_array_equal(hounsfield, pixels[ref.frame] - 1024)


def test_a_file_cut_short_after_the_header_pass_fails_as_pydicom_says(tmp_path: Path) -> None:
    path = write(ct_slice(rows=32, columns=32), tmp_path / "slice.dcm")
    (ref,) = select_ct_series([path]).slices
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(InvalidUpload) as raw:
        load_slice_hounsfield(ref)
    with pytest.raises(InvalidUpload) as decoded:
        _through_pydicom(ref)
    assert (type(raw.value), raw.value.detail) == (type(decoded.value), decoded.value.detail)


def _layout_dataset() -> Dataset:
    ds = Dataset()
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 2, 4, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation = 16, 12, 1
    return ds


def test_native_layout_of_a_plain_image() -> None:
    layout = native_layout(_layout_dataset(), 1234, ExplicitVRBigEndian)
    assert layout == NativeLayout(1234, 2, 4, 12, signed=True, big_endian=True)


@pytest.mark.parametrize(
    "change",
    [
        {"PhotometricInterpretation": None},  # pydicom refuses these: its error must stay
        {"PixelRepresentation": None},
        {"SamplesPerPixel": None},
        {"BitsStored": None},
        {"PixelRepresentation": 2},
        {"PhotometricInterpretation": "RGB"},
        {"BitsAllocated": 8},
        {"BitsAllocated": 32},
        {"BitsStored": 17},
        {"NumberOfFrames": 0},
        {"Rows": 0},
    ],
    ids=str,
)
def test_native_layout_refuses_what_pydicom_would_not_just_read(change: dict[str, Any]) -> None:
    ds = _layout_dataset()
    for keyword, value in change.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    assert native_layout(ds, 0, ExplicitVRLittleEndian) is None


@pytest.mark.parametrize("syntax", [RLELossless, "1.2.840.10008.1.2.1.99", ""])
def test_native_layout_refuses_other_transfer_syntaxes(syntax: str) -> None:
    assert native_layout(_layout_dataset(), 0, syntax) is None


@pytest.mark.parametrize(
    ("signed", "bits", "stored"),
    [
        (False, 12, [0xF123, 0x0FFF, 5, 0]),  # high bits above BitsStored are not pixel data
        (True, 12, [0x0800, 0x0FFF, 0xF7FF, 5]),  # sign bit at BitsStored - 1
        (True, 16, [0x8000, 0xFFFF, 5, 0x7FFF]),
        (False, 16, [0xFFFF, 0, 1024, 3071]),
    ],
)
@pytest.mark.parametrize("big_endian", [False, True])
def test_read_native_gives_pydicom_stored_values(
    tmp_path: Path, signed: bool, bits: int, stored: list[int], big_endian: bool
) -> None:
    values = np.array(stored * 2, dtype=">u2" if big_endian else "<u2").reshape(2, 4)
    ds = _layout_dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian if big_endian else ExplicitVRLittleEndian
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, int(signed)
    ds.PixelData = values.tobytes()
    path = tmp_path / "pixels.raw"
    path.write_bytes(b"\0" * 7 + values.tobytes())
    layout = NativeLayout(7, 2, 4, bits, signed, big_endian)
    np.testing.assert_array_equal(read_native(path, layout), ds.pixel_array)


@pytest.mark.parametrize(
    ("signed", "bits", "slope", "intercept", "padding"),
    [
        (True, 16, 1.0, -1024.0, -2000),
        (False, 16, 1.0, -1024.0, None),
        (False, 12, 1.0, -1024.0, 0),
        (True, 12, 0.5, -1024.3, -2048),
        (False, 16, 2.5, -1000.0, 0),
        (True, 13, 1.0, 7.0, None),
    ],
)
@pytest.mark.parametrize("big_endian", [False, True])
def test_odd_slices_give_pydicom_hounsfield_to_the_bit(
    tmp_path: Path,
    signed: bool,
    bits: int,
    slope: float,
    intercept: float,
    padding: int | None,
    big_endian: bool,
) -> None:
    rng = np.random.default_rng(bits)
    # Plausible CT in the BitsStored low bits; noise above them, which pydicom drops.
    low = rng.integers(0, min(1 << bits, 1500), size=(24, 24))
    if signed and bits == 16:
        low -= 1000
    noise = rng.integers(0, 1 << (16 - bits), size=low.shape) << bits
    raw = ((low & 0xFFFF) | noise).astype(np.uint16)
    raw[:4] = (padding or 0) & 0xFFFF
    ds = ct_slice(pixels=raw.view(np.int16), slope=slope, intercept=intercept, padding=padding)
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, int(signed)
    if padding is not None:
        ds["PixelPaddingValue"].VR = "SS" if signed else "US"
    if big_endian:
        ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
        ds.PixelData = raw.astype(">u2").tobytes()
    (ref,) = select_ct_series([write(ds, tmp_path / "odd.dcm")]).slices
    assert ref.native is not None and ref.native.big_endian == big_endian
    hounsfield = load_slice_hounsfield(ref)
    assert hounsfield.dtype == np.int16
    assert hounsfield.tobytes() == _through_pydicom(ref).tobytes()


def _corpus_uploads(corpus: Path) -> Iterator[tuple[str, list[Path]]]:
    """Each series folder as one upload, every other file as an upload of its own."""
    for folder in CORPUS_FOLDERS:
        for entry in sorted((corpus / folder).iterdir()):
            if entry.is_dir():
                yield f"{folder}/{entry.name}", sorted(p for p in entry.iterdir() if p.is_file())
            else:
                yield f"{folder}/{entry.name}", [entry]


def test_every_corpus_slice_read_raw_gives_pydicom_hounsfield(ct_corpus: Path) -> None:
    native: set[str] = set()
    for name, paths in _corpus_uploads(ct_corpus):
        try:
            series = select_ct_series(paths)
        except InvalidUpload:
            continue  # refused files are never decoded
        for ref in series.slices:
            if ref.native is None:
                continue
            hounsfield = load_slice_hounsfield(ref)
            assert hounsfield.dtype == np.int16, name
            assert hounsfield.tobytes() == _through_pydicom(ref).tobytes(), name
            native.add(name)
    assert set(NATIVE_IN_CORPUS) <= native, set(NATIVE_IN_CORPUS) - native
