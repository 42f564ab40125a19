"""The shared CT builder: HU round trip per format and encoding, numbering, file meta, files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut
from pydicom.uid import CTImageStorage, JPEGLSLossless

from export.phantoms.ct_dicom import (
    TRANSFER_SYNTAX,
    PixelFormat,
    SeriesIdentity,
    ct_series,
    ct_slice,
    file_meta,
    instance_numbers,
    set_pixels,
    write_series,
)

IDENTITY = SeriesIdentity("1.2.3.1", "1.2.3.2", "1.2.3.3", "TEST^CT", "CT-1")
PLAIN = PixelFormat()


def hounsfield_ramp(low: int, high: int) -> np.ndarray:
    """A 32 x 32 slice of HU from ``low`` to ``high`` (JPEG 2000 needs more than 8 x 8)."""
    return np.linspace(low, high, 1024).round().astype(np.int16).reshape(32, 32)


def series(pixel_format: PixelFormat = PLAIN) -> pydicom.Dataset:
    return ct_series(IDENTITY, rows=32, columns=32, pixel_spacing=[0.5, 0.5],
                     slice_thickness=1.25, pixel_format=pixel_format)


@pytest.mark.parametrize("encoding", sorted(TRANSFER_SYNTAX))
@pytest.mark.parametrize(("signed", "intercept", "bits"), [(True, -1024, 16), (True, 0, 16),
                                                           (False, -1024, 12)])
def test_hounsfield_come_back_from_the_file(tmp_path: Path, encoding: str, signed: bool,
                                            intercept: int, bits: int) -> None:
    fmt = PixelFormat(intercept=intercept, signed=signed, bits_stored=bits)
    hu = hounsfield_ramp(-1000, 3000)
    ds = ct_slice(series(fmt), fmt.stored(hu), position=[-2.0, -2.0, 7.5], instance_number=4,
                  sop_instance_uid="1.2.3.9", transfer_syntax=TRANSFER_SYNTAX[encoding])
    (path,) = write_series(tmp_path / "new", [("a.dcm", ds)])
    read = pydicom.dcmread(path)
    assert read.file_meta.TransferSyntaxUID == TRANSFER_SYNTAX[encoding]
    assert read.pixel_array.dtype == (np.int16 if signed else np.uint16)
    assert np.array_equal(apply_modality_lut(read.pixel_array, read), hu)
    assert (int(read.PixelRepresentation), int(read.BitsStored), int(read.HighBit)) == (
        int(signed), bits, bits - 1)
    assert read.SOPInstanceUID == read.file_meta.MediaStorageSOPInstanceUID == "1.2.3.9"
    assert read.file_meta.MediaStorageSOPClassUID == read.SOPClassUID == CTImageStorage
    assert [float(v) for v in read.ImagePositionPatient] == [-2.0, -2.0, 7.5]
    assert int(read.InstanceNumber) == 4 and read.Modality == "CT"
    assert (read.StudyInstanceUID, read.SeriesInstanceUID, read.FrameOfReferenceUID) == (
        "1.2.3.1", "1.2.3.2", "1.2.3.3")
    assert (str(read.PatientName), read.PatientID) == ("TEST^CT", "CT-1")


def test_hounsfield_that_do_not_fit_the_format_are_refused() -> None:
    with pytest.raises(ValueError, match="do not fit uint16 with intercept 0"):
        PixelFormat(intercept=0, signed=False).stored(hounsfield_ramp(-1, 10))
    with pytest.raises(ValueError, match="do not fit int16"):
        PixelFormat(intercept=-1024).stored(np.full((2, 2), 32000, np.int16))


def test_padding_is_written_as_a_stored_value() -> None:
    assert series(PixelFormat(intercept=-1024, padding=-976)).PixelPaddingValue == -976
    assert "PixelPaddingValue" not in series()


def test_slices_are_copies_with_fresh_uids_unless_given() -> None:
    template = series()
    first = ct_slice(template, None, position=[0, 0, 0], instance_number=1)
    second = ct_slice(template, None, position=[0, 0, 1], instance_number=2)
    first.PatientID = "changed"
    assert template.PatientID == second.PatientID == "CT-1"
    assert first.SOPInstanceUID != second.SOPInstanceUID
    assert "SOPInstanceUID" not in template and "PixelData" not in second


def test_file_meta_names_a_class_and_instance_even_where_the_dataset_is_blank() -> None:
    ds = pydicom.Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "", ""
    meta = file_meta(ds)
    assert meta.MediaStorageSOPClassUID == CTImageStorage
    assert meta.MediaStorageSOPInstanceUID.is_valid


def test_an_encoding_without_a_lossless_encoder_here_is_refused() -> None:
    with pytest.raises(ValueError, match="no lossless encoder"):
        set_pixels(series(), np.zeros((32, 32), np.int16), JPEGLSLossless)


def test_instance_numbers_count_up_or_down_the_z_order() -> None:
    assert instance_numbers(3) == [1, 2, 3]
    assert instance_numbers(3, descending=True) == [3, 2, 1]


def test_series_is_written_in_the_order_given_one_slice_at_a_time(tmp_path: Path) -> None:
    made: list[int] = []

    def slices() -> Iterator[tuple[str, pydicom.Dataset]]:
        for k in (2, 0, 1):
            assert len(made) == len(list((tmp_path / "s").glob("*.dcm")))  # earlier ones saved
            made.append(k)
            yield f"s{k}.dcm", ct_slice(series(), np.full((32, 32), k, np.int16),
                                        position=[0, 0, k], instance_number=k + 1)

    paths = write_series(tmp_path / "s", slices())
    assert [p.name for p in paths] == ["s2.dcm", "s0.dcm", "s1.dcm"]
    assert [int(pydicom.dcmread(p).pixel_array[0, 0]) for p in paths] == [2, 0, 1]
