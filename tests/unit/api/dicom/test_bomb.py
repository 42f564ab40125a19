"""Decompression bombs: images refused on their declared size, before any decoding."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pydicom.filereader
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, JPEG2000Lossless

import api.dicom.bounds
import api.dicom.pixels
from api.dicom.bounds import (
    DEFAULT_MAX_IMAGE_PIXELS,
    MAX_FRAMES,
    check_codestream,
    check_compressed_frame,
    check_declared_size,
    check_inflated_size,
    codestream_size,
)
from api.dicom.headers import read_header
from api.dicom.pixels import decode_stored
from api.dicom.series import select_ct_series
from api.errors import CorruptPixelData, ImageTooLarge
from export.phantoms.ct_dicom import PixelFormat, SeriesIdentity, ct_series, ct_slice, save

SIDE = 64  # openjpeg's default resolutions need at least 32 x 32
CORPUS = Path(__file__).resolve().parents[4] / ".." / "shared" / "ct-corpus"


def small_slice(transfer_syntax: Any = JPEG2000Lossless) -> Dataset:
    """A 64 x 64 CT slice, JPEG 2000 lossless unless told otherwise."""
    series = ct_series(SeriesIdentity.random(), rows=SIDE, columns=SIDE,
                       pixel_spacing=[0.8, 0.8], slice_thickness=2.5)
    hu = np.full((SIDE, SIDE), 40, dtype=np.int16)
    return ct_slice(series, PixelFormat().stored(hu), position=[0.0, 0.0, 0.0],
                    instance_number=1, transfer_syntax=transfer_syntax)


def with_siz(codestream: bytes, rows: int, columns: int) -> bytes:
    """The codestream with its SIZ marker declaring ``rows`` x ``columns``."""
    assert codestream[:4] == b"\xff\x4f\xff\x51"
    return codestream[:8] + struct.pack(">II", columns, rows) + codestream[16:]


def frames_of(ds: Dataset) -> list[bytes]:
    return list(generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames", 1))))


def declaring_huge(tmp_path: Path) -> Path:
    """A file of about a kilobyte declaring 65535 x 65535 pixels in 10,000 frames."""
    ds = small_slice()
    ds.Rows = ds.Columns = 65535
    ds.NumberOfFrames = 10_000
    return save(ds, tmp_path / "bomb.dcm")


def test_a_tiny_jpeg2000_file_declaring_a_huge_image_is_refused_fast(tmp_path: Path) -> None:
    path = declaring_huge(tmp_path)
    assert path.stat().st_size < 4096
    started = time.perf_counter()
    with pytest.raises(ImageTooLarge, match="65535"):
        read_header(path)
    assert time.perf_counter() - started < 1.0
    with pytest.raises(ImageTooLarge):
        select_ct_series([path])


def test_a_frame_whose_codestream_declares_more_than_the_header_is_refused(
    tmp_path: Path,
) -> None:
    ds = small_slice()
    (frame,) = frames_of(ds)
    ds.PixelData = encapsulate([with_siz(frame, 60000, 60000)])
    path = save(ds, tmp_path / "siz-bomb.dcm")
    with pytest.raises(ImageTooLarge, match="60000 x 60000"):
        read_header(path)


def test_a_later_frame_is_checked_before_the_decoder_sees_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = small_slice()
    (frame,) = frames_of(ds)
    ds.NumberOfFrames = 2
    ds.PixelData = encapsulate([frame, with_siz(frame, 60000, 60000)])
    path = save(ds, tmp_path / "second-frame-bomb.dcm")
    decoded: list[object] = []
    real = api.dicom.pixels.pixel_array
    monkeypatch.setattr(api.dicom.pixels, "pixel_array",
                        lambda *a, **k: decoded.append(a) or real(*a, **k))
    assert decode_stored(path, 0).shape == (SIDE, SIDE)
    assert len(decoded) == 1
    with pytest.raises(ImageTooLarge):
        decode_stored(path, 1)
    assert len(decoded) == 1  # the bomb never reached the decoder


def test_an_uncompressed_file_declaring_more_pixels_than_it_holds_is_truncated(
    tmp_path: Path,
) -> None:
    ds = small_slice(transfer_syntax=ExplicitVRLittleEndian)
    ds.Rows = ds.Columns = 4096  # 16 Mpx declared, 4096 px present
    path = save(ds, tmp_path / "short.dcm")
    with pytest.raises(CorruptPixelData, match="the image needs"):
        read_header(path)
    ds.NumberOfFrames = 1000  # 16 billion: past the bound, refused on the declaration
    with pytest.raises(ImageTooLarge):
        read_header(save(ds, tmp_path / "short-many.dcm"))


def test_the_bound_comes_from_the_caller(tmp_path: Path) -> None:
    ds = small_slice()
    path = save(ds, tmp_path / "ok.dcm")
    assert read_header(path).frames
    with pytest.raises(ImageTooLarge, match="the limit is 100"):
        read_header(path, max_pixels=100)
    with pytest.raises(ImageTooLarge):
        select_ct_series([path], max_image_pixels=SIDE * SIDE - 1)
    assert select_ct_series([path], max_image_pixels=SIDE * SIDE).slices


def declared(rows: int, columns: int, frames: int, samples: int = 1) -> Dataset:
    ds = Dataset()
    ds.Rows, ds.Columns, ds.NumberOfFrames, ds.SamplesPerPixel = rows, columns, frames, samples
    return ds


def test_the_largest_real_ct_passes_the_default_bound() -> None:
    check_declared_size(declared(1024, 1024, 2000))  # enhanced CT, 2,000 frames of 1024
    check_declared_size(declared(2048, 2048, 1000))  # ultra-high-resolution CT
    assert 2000 * 1024 * 1024 * 2 <= DEFAULT_MAX_IMAGE_PIXELS
    with pytest.raises(ImageTooLarge):
        check_declared_size(declared(2048, 2048, 1100))
    with pytest.raises(ImageTooLarge, match="larger than any CT"):
        check_declared_size(declared(65535, 65535, 1))  # one frame, under the file bound
    with pytest.raises(ImageTooLarge, match="frames"):
        check_declared_size(declared(1, 1, MAX_FRAMES + 1))


def test_codestream_sizes_are_read_from_real_encoders() -> None:
    (j2k,) = frames_of(small_slice())
    assert codestream_size(j2k) == (SIDE, SIDE, 1)
    assert codestream_size(with_siz(j2k, 300, 200)) == (300, 200, 1)
    check_codestream(j2k, SIDE, SIDE, 1)
    assert codestream_size(b"not a codestream") is None
    jp2 = b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00\x00\x00\x0cftypjp2 "
    wrapped = jp2 + struct.pack(">I", 8 + len(j2k)) + b"jp2c" + with_siz(j2k, 60000, 60000)
    assert codestream_size(wrapped) == (60000, 60000, 1)  # a JP2 wrapper hides nothing


def first_frame(path: Path) -> tuple[Dataset, bytes] | None:
    """A compressed corpus file's dataset and first frame; None for others or damaged ones."""
    try:
        ds = dcmread(path)
        syntax = str(ds.file_meta.TransferSyntaxUID)
        if not syntax.startswith("1.2.840.10008.1.2.4."):
            return None
        return ds, next(generate_frames(ds.PixelData, number_of_frames=1))
    except Exception:  # noqa: BLE001 - the corpus' damaged files are for other tests
        return None


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the CT corpus is not here")
def test_real_jpeg_and_jpeg_ls_frames_pass_their_own_headers() -> None:
    checked: set[str] = set()
    for path in sorted(CORPUS.rglob("*.dcm")):
        found = None if "malformed" in path.parts else first_frame(path)
        if found is None:
            continue
        ds, head = found
        size = codestream_size(head)
        assert size is not None, path.name
        assert size[:2] == (int(ds.Rows), int(ds.Columns)), path.name
        check_compressed_frame(path, 0)
        checked.add(str(ds.file_meta.TransferSyntaxUID))
    # JPEG baseline, extended, lossless, JPEG-LS and JPEG 2000 were all read.
    assert {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80",
            "1.2.840.10008.1.2.4.90"} <= checked


def deflated_file(path: Path, body: bytes) -> Path:
    """A Deflated Explicit VR Little Endian file whose body inflates to ``body``."""
    ds = small_slice(transfer_syntax=ExplicitVRLittleEndian)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = io.BytesIO()
    buffer.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(buffer, ds.file_meta, enforce_standard=True)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    buffer.write(deflater.compress(body) + deflater.flush())
    path.write_bytes(buffer.getvalue())
    return path


def test_a_deflated_file_inflating_past_the_bound_is_refused_without_holding_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api.dicom.bounds, "MAX_INFLATED_BYTES", 8 << 20)
    bomb = deflated_file(tmp_path / "bomb.dcm", bytes(32 << 20))
    assert bomb.stat().st_size < 64 << 10
    inflated: list[int] = []
    real = pydicom.filereader.zlib.decompress  # what pydicom inflates a whole body with
    monkeypatch.setattr(pydicom.filereader.zlib, "decompress",
                        lambda *a, **k: inflated.append(1) or real(*a, **k))
    with pytest.raises(ImageTooLarge, match="inflates past 8388608 bytes"):
        read_header(bomb)
    assert inflated == []
    with bomb.open("rb") as fp:
        fp.seek(7)
        check_inflated_size(fp, max_bytes=64 << 20)  # under the bound: passes
        assert fp.tell() == 7  # and leaves the file where it was


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the CT corpus is not here")
def test_a_real_deflated_file_passes() -> None:
    (path,) = (CORPUS / "singles").glob("*Deflated*.dcm")
    with path.open("rb") as fp:
        check_inflated_size(fp)
    assert read_header(path).transfer_syntax_uid == DeflatedExplicitVRLittleEndian
