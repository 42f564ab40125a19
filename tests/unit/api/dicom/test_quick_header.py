"""The header pass's fast path gives pydicom's answer or none, never another.

:func:`api.dicom.headers.read_plain_header` reads plain files without pydicom; anything else falls
back to the pydicom reader. Over the real corpus, the benchmark study, synthetic series of
every plain variant and hostile bytes, the fast path either declines (None) or returns an
ImageHeader equal to the pydicom path's, and it does answer for the common files.
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian, RLELossless

from api.dicom import bounds
from api.dicom.headers import (
    ImageHeader,
    read_header,
    read_plain_header,
    read_pydicom_header,
)
from api.errors import InvalidUpload
from export.phantoms import ct_dicom
from tests.dicom_builders import compressed, ct_slice, tilted, write

MAX = bounds.DEFAULT_MAX_IMAGE_PIXELS
BENCH_STUDY = Path("/tmp/bonemets-bench/study-200-1.25mm-s0/phantom/dicom")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def pydicom_path(path: Path) -> ImageHeader | InvalidUpload:
    """What the pydicom reader alone answers for ``path``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return read_pydicom_header(path, MAX)
        except InvalidUpload as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - read_header turns it into NotDicom
            return InvalidUpload(repr(exc))


def assert_same(path: Path) -> bool:
    """The fast path declines or agrees with the pydicom path; whether it answered."""
    fast = read_plain_header(path, MAX)
    if fast is None:
        return False
    slow = pydicom_path(path)
    assert isinstance(slow, ImageHeader), f"{path}: fast path accepted, pydicom path {slow!r}"
    assert fast == slow, path
    assert read_header(path) == slow
    return True


def test_corpus_files_agree(ct_corpus: Path) -> None:
    files = sorted(
        p for p in ct_corpus.rglob("*")
        if p.is_file() and p.suffix not in (".md", ".txt", ".tsv", ".nrrd", ".gz", ".nii")
    )
    answered = [p for p in files if assert_same(p)]
    series = [p for p in files if "series" in p.parts]
    answered_series = [p for p in answered if "series" in p.parts]
    # S01's JPEG 2000 slices with blank UIDs and S02-S04's plain slices: all but odd ones.
    assert len(answered_series) >= 0.95 * len(series), (len(answered_series), len(series))
    assert len(answered) >= 120


def test_benchmark_study_agrees() -> None:
    if not BENCH_STUDY.is_dir():
        pytest.skip("no benchmark study in /tmp/bonemets-bench")
    files = sorted(BENCH_STUDY.glob("*.dcm"))
    assert all(assert_same(p) for p in files)


VARIANTS: dict[str, dict[str, object]] = {
    "plain": {},
    "tilted": {"orientation": tilted(18.5), "gantry_tilt": 18.5},
    "odd_rescale": {"slope": 0.5, "intercept": -1023.5},
    "padding": {"padding": -2000},
    "blank_uids": {"series_uid": "", "study_uid": "", "sop_uid": ""},
    "not_ct": {"modality": "MR"},
    "localizer": {"image_type": ("ORIGINAL", "PRIMARY", "LOCALIZER")},
    "sagittal": {"orientation": (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)},
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_synthetic_variants_agree(tmp_path: Path, name: str) -> None:
    ds = ct_slice(z=3.5, **VARIANTS[name])  # type: ignore[arg-type]
    answered = assert_same(write(ds, tmp_path / "explicit.dcm"))
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    answered_implicit = assert_same(write(ds, tmp_path / "implicit.dcm"))
    rejected = name in ("not_ct", "localizer", "sagittal")
    assert (answered, answered_implicit) == (not rejected, not rejected)


def test_unsigned_missing_optional_and_sequences_agree(tmp_path: Path) -> None:
    ds = ct_slice(z=1.0, padding=3000)
    ds.PixelRepresentation = 0
    ds.PixelPaddingRangeLimit = 3010
    for keyword in ("SliceThickness", "Manufacturer", "SeriesNumber", "RescaleSlope"):
        delattr(ds, keyword)
    ds.ConvolutionKernel = ["B30f", "SOFT "]
    item = Dataset()
    item.CodeValue = "X"
    ds.ProcedureCodeSequence = Sequence([item, Dataset()])
    ds.SliceThickness = ""
    assert assert_same(write(ds, tmp_path / "explicit.dcm"))
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    assert assert_same(write(ds, tmp_path / "implicit.dcm"))


def test_compressed_slice_agrees(tmp_path: Path) -> None:
    assert assert_same(write(compressed(ct_slice(z=2.0), RLELossless), tmp_path / "rle.dcm"))


@pytest.mark.parametrize("pixel_format", [
    ct_dicom.PixelFormat(), ct_dicom.PixelFormat(signed=False, intercept=-1024),
    ct_dicom.PixelFormat(bits_stored=12, intercept=-1024, signed=False, padding=0),
])
def test_api_tests_series_agree(tmp_path: Path, pixel_format: ct_dicom.PixelFormat) -> None:
    """Files as tests/api/conftest.py's build_series writes them, 512 x 512."""
    series = ct_dicom.ct_series(
        ct_dicom.SeriesIdentity.random("TEST^API", "API-0001"), rows=512, columns=512,
        pixel_spacing=[0.8, 0.8], slice_thickness=2.5, pixel_format=pixel_format,
    )
    hounsfield = np.full((512, 512), 40, dtype=np.int16)
    paths = ct_dicom.write_series(tmp_path, (
        (f"img{k}.dcm", ct_dicom.ct_slice(series, pixel_format.stored(hounsfield),
                                          position=[-200.0, -200.0, -50.0 + 2.5 * k],
                                          instance_number=100 - k))
        for k in range(2)
    ))
    assert all(assert_same(path) for path in paths)


def _elements_after_meta(data: bytes) -> int:
    (meta_length,) = struct.unpack_from("<I", data, 140)
    return 144 + meta_length


def hostile_variants(data: bytes) -> dict[str, bytes]:
    """Damaged copies of one good Explicit VR file."""
    start = _elements_after_meta(data)
    pixel = data.index(b"\xe0\x7f\x10\x00")
    variants = {f"cut_{n}": data[:n] for n in range(0, pixel + 20, 37)}
    variants["cut_in_pixels"] = data[:pixel + 100]
    # The first element's 2-byte length made odd, then pointing past the end of the file.
    first = bytearray(data)
    first[start + 6:start + 8] = struct.pack("<H", data[start + 6] + 1)
    variants["odd_length"] = bytes(first)
    first[start + 6:start + 8] = b"\xff\xff"
    variants["length_past_end"] = bytes(first)
    # A sequence of undefined length that never ends, before Pixel Data.
    never_ends = b"\x08\x00\x15\x11SQ\x00\x00\xff\xff\xff\xff\xfe\xff\x00\xe0\xff\xff\xff\xff"
    variants["endless_sequence"] = data[:pixel] + never_ends + b"\x00" * 64
    variants["endless_sequence_no_pixels"] = data[:pixel] + never_ends
    variants["garbage_vr"] = data[:start + 4] + b"zz" + data[start + 6:]
    explicit, implicit = b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008.1.2\x00\x00\x00"
    variants["implicit_label"] = data.replace(explicit, implicit)
    variants["not_ascii"] = data.replace(b"synthetic axial", b"synth\xe9tic axial")
    variants["no_dicm"] = data[:128] + b"XXXX" + data[132:]
    return variants


def test_hostile_bytes_agree(tmp_path: Path) -> None:
    good = write(ct_slice(z=0.0, gantry_tilt=0.0), tmp_path / "good.dcm").read_bytes()
    answered = []
    for name, data in hostile_variants(good).items():
        path = tmp_path / f"{name}.dcm"
        path.write_bytes(data)
        if assert_same(path):
            answered.append(name)
    # Only a cut inside the pixel data leaves a header to read: pydicom refuses it too.
    assert answered == []


RAW_VALUES = {
    "DS": [b"1.25", b" 1.25 ", b"-.5", b"+5.", b"1e3", b"1.0\\2.0 ", b"1.0 \\2.0", b"", b"  ",
           b"1.0\x00", b"nan", b"1_0", b"1.0\\", b"0x10", b"1.2.3"],
    "IS": [b"12", b" 12", b"+12 ", b"-3", b"", b"  ", b"1\\2", b"1.0", b"1e2", b"12\x00"],
    "CS": [b"CT", b"CT ", b"ORIGINAL\\PRIMARY\\AXIAL ", b"A \\B", b"", b"CT\x00", b"\xe9"],
    "LO": [b"synthetic ", b"B30f\\SOFT ", b"a \\b", b"", b"x\x00", b"caf\xc3\xa9"],
    "UI": [b"1.2.3\x00", b"1.2.3 ", b"", b"1.2\\3.4"],
    "US": [b"\x00\x02", b"\xff\xff", b"", b"\x01\x00\x02\x00"],
    "SS": [b"\x30\xf8", b"\xff\x7f"],
}


def plain(value: object) -> object:
    """A pydicom value as plain Python: MultiValue to list, DSfloat/IS/UID to float/int/str."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [plain(item) for item in value]  # type: ignore[union-attr]
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return (kind.__name__, kind(value)) if value != "" else ""
    return value


@pytest.mark.parametrize("vr", sorted(RAW_VALUES))
def test_values_convert_as_pydicom_does(vr: str) -> None:
    from pydicom.dataelem import RawDataElement
    from pydicom.values import convert_value as pydicom_convert

    from api.dicom.header_values import Unsure, convert_value

    converted = 0
    for raw in RAW_VALUES[vr]:
        try:
            mine = convert_value(vr, raw, None)
        except Unsure:
            continue
        element = RawDataElement(0x00181120, vr, len(raw), raw, 0, False, True)
        theirs = pydicom_convert(vr, element)
        assert plain(mine) == plain(theirs) or (mine, theirs) == (None, None), (vr, raw)
        converted += 1
    assert converted >= len(RAW_VALUES[vr]) // 2
