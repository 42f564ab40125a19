"""Series selection on small synthetic uploads: sorting, gaps, duplicates, tilt, rejections."""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

import api.dicom.pixels
from api.dicom.series import load_slice_hounsfield, select_ct_series
from api.errors import (
    ConflictingInstances,
    CorruptPixelData,
    InconsistentGeometry,
    InvalidUpload,
    NoCTSeries,
    NoPixelData,
    NotCT,
    NotDicom,
    TooManySlices,
)
from tests.dicom_builders import (
    MR_IMAGE_STORAGE,
    SAGITTAL,
    SECONDARY_CAPTURE,
    ct_slice,
    enhanced_ct,
    stored_pattern,
    tilted,
    write,
    write_series,
)

pytestmark = pytest.mark.timeout(60)


def test_shuffled_files_are_sorted_by_position(tmp_path: Path) -> None:
    zs = [10.0, 11.25, 12.5, 13.75, 15.0]
    series = select_ct_series(write_series(tmp_path, zs))
    assert [s.z for s in series.slices] == pytest.approx(zs)
    assert [s.instance_number for s in series.slices] == [1, 2, 3, 4, 5]
    assert series.slice_spacing_mm == pytest.approx(1.25)
    assert series.warnings == ()
    assert series.rejected == ()
    assert series.slice_thickness == 1.0


def test_instance_numbers_do_not_decide_the_order(tmp_path: Path) -> None:
    zs = [-50.0, -48.0, -46.0, -44.0]
    series = select_ct_series(write_series(tmp_path, zs, descending_instances=True))
    assert [s.position[2] for s in series.slices] == zs
    assert [s.instance_number for s in series.slices] == [4, 3, 2, 1]


def test_z_is_measured_along_the_normal(tmp_path: Path) -> None:
    # Column cosine (0,-1,0) turns the normal to -z: ascending z is descending patient z.
    flipped = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0)
    series = select_ct_series(write_series(tmp_path, [0.0, 2.0, 4.0], orientation=flipped))
    assert [s.position[2] for s in series.slices] == [4.0, 2.0, 0.0]
    assert [s.z for s in series.slices] == pytest.approx([-4.0, -2.0, 0.0])


def test_slices_carry_geometry_and_decode_to_hu(tmp_path: Path) -> None:
    paths = write_series(tmp_path, [0.0, 1.0], rows=8, columns=12, spacing=(0.5, 0.8))
    series = select_ct_series(paths)
    first = series.slices[0]
    assert (first.geometry.rows, first.geometry.columns) == (8, 12)
    assert first.geometry.pixel_spacing == (0.5, 0.8)
    assert first.geometry.normal == (0.0, 0.0, 1.0)
    expected = stored_pattern(8, 12, 0).astype(np.int16) - 1024
    np.testing.assert_array_equal(load_slice_hounsfield(first), expected)


def test_missing_slices_are_a_warning(tmp_path: Path) -> None:
    series = select_ct_series(write_series(tmp_path, [0.0, 1.0, 2.0, 4.0, 5.0, 6.0]))
    assert len(series.slices) == 6
    assert series.slice_spacing_mm == pytest.approx(1.0)
    assert len(series.warnings) == 1
    assert series.warnings[0].startswith("missing slices: about 1 slice(s) missing in 1 gap")


def test_uneven_spacing_is_a_warning(tmp_path: Path) -> None:
    series = select_ct_series(write_series(tmp_path, [0.0, 1.0, 2.0, 3.6, 4.6, 5.6]))
    assert [w.split(":")[0] for w in series.warnings] == ["uneven slice spacing"]
    assert "1.60" in series.warnings[0]


def test_a_file_sent_twice_is_dropped(tmp_path: Path) -> None:
    paths = write_series(tmp_path, [0.0, 1.0, 2.0])
    copy = tmp_path / "copy" / "again.dcm"
    copy.parent.mkdir()
    shutil.copy(paths[0], copy)
    series = select_ct_series([*paths, copy])
    assert len(series.slices) == 3
    assert series.warnings == ("1 duplicate slice(s) dropped (same position, same pixels)",)


def test_same_position_same_pixels_new_uid_is_dropped(tmp_path: Path) -> None:
    paths = write_series(tmp_path, [0.0, 1.0])
    paths.append(write(ct_slice(z=1.0, instance_number=9), tmp_path / "dup.dcm"))
    series = select_ct_series(paths)
    assert [s.z for s in series.slices] == [0.0, 1.0]
    assert "duplicate" in series.warnings[0]


def test_same_position_different_pixels_is_inconsistent(tmp_path: Path) -> None:
    paths = write_series(tmp_path, [0.0, 1.0])
    other = ct_slice(z=1.0, pixels=stored_pattern(16, 16, 99), instance_number=3)
    paths.append(write(other, tmp_path / "other.dcm"))
    with pytest.raises(InconsistentGeometry, match="same position"):
        select_ct_series(paths)


def test_mixed_sizes_are_inconsistent(tmp_path: Path) -> None:
    paths = write_series(tmp_path, [0.0, 1.0])
    paths.append(write(ct_slice(z=2.0, rows=8, columns=8), tmp_path / "small.dcm"))
    with pytest.raises(InconsistentGeometry, match="mixed image sizes"):
        select_ct_series(paths)


def test_mixed_orientations_are_inconsistent(tmp_path: Path) -> None:
    paths = write_series(tmp_path, [0.0, 1.0])
    paths.append(write(ct_slice(z=2.0, orientation=tilted(10)), tmp_path / "tilted.dcm"))
    with pytest.raises(InconsistentGeometry, match="orientations"):
        select_ct_series(paths)


def test_gantry_tilt_is_a_warning_and_spacing_is_between_planes(tmp_path: Path) -> None:
    # Table steps of 5 mm along z with planes tilted by 20 degrees: a sheared stack.
    zs = [0.0, 5.0, 10.0, 15.0]
    series = select_ct_series(write_series(tmp_path, zs, orientation=tilted(20), gantry_tilt=20))
    assert len(series.slices) == 4
    assert [s.position[2] for s in series.slices] == zs
    assert series.slice_spacing_mm == pytest.approx(5 * math.cos(math.radians(20)), abs=1e-4)
    assert len(series.warnings) == 1
    assert series.warnings[0].startswith("gantry tilt: slices are stacked 20.0 degrees")


def test_single_slice_is_accepted_with_a_warning(tmp_path: Path) -> None:
    series = select_ct_series([write(ct_slice(), tmp_path / "one.dcm")])
    assert len(series.slices) == 1 and series.slice_spacing_mm is None
    assert series.warnings == ("the series has a single slice",)


def test_mixed_upload_picks_the_axial_ct_series(tmp_path: Path) -> None:
    chosen = write_series(tmp_path / "axial", [0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    smaller = write_series(tmp_path / "thick", [0.0, 5.0], series_uid="1.2.3.4.5.2")
    scout = ct_slice(image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), orientation=SAGITTAL)
    capture = ct_slice(sop_class=SECONDARY_CAPTURE, series_uid="1.2.3.4.5.3")
    mr = ct_slice(modality="MR", sop_class=MR_IMAGE_STORAGE, series_uid="1.2.3.4.5.4")
    reformat = ct_slice(orientation=SAGITTAL, series_uid="1.2.3.4.5.5")
    others = [
        write(scout, tmp_path / "scout.dcm"),
        write(capture, tmp_path / "dose.dcm"),
        write(mr, tmp_path / "mr.dcm"),
        write(reformat, tmp_path / "sag.dcm"),
        write(ct_slice(with_pixels=False, series_uid="1.2.3.4.5.6"), tmp_path / "nopix.dcm"),
    ]
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    series = select_ct_series([notes, *others, *smaller, *chosen])
    assert len(series.slices) == 6
    assert {s.path for s in series.slices} == set(chosen)
    reasons = {(r.subject, r.error) for r in series.rejected}
    assert reasons == {
        ("series 1 'synthetic axial' (2 files)", NoCTSeries),
        ("scout.dcm", NoCTSeries),
        ("dose.dcm", NotCT),
        ("mr.dcm", NotCT),
        ("sag.dcm", NoCTSeries),
        ("nopix.dcm", NoPixelData),
        ("notes.txt", NotDicom),
    }
    by_subject = {r.subject: r.reason for r in series.rejected}
    assert by_subject["scout.dcm"] == "a localizer (scout) image"
    assert by_subject["mr.dcm"] == "modality MR, not CT"
    assert by_subject["sag.dcm"].startswith("a sagittal image")
    assert "secondary capture" in by_subject["dose.dcm"]
    assert by_subject["series 1 'synthetic axial' (2 files)"].startswith("another series")


def test_the_header_pass_decodes_no_pixels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> None:
        raise AssertionError("pixels decoded during series selection")

    monkeypatch.setattr(api.dicom.pixels, "pixel_array", refuse)
    assert len(select_ct_series(write_series(tmp_path, [0.0, 1.0, 2.0])).slices) == 3


def test_blank_uids_are_grouped_and_given_stable_synthetic_ones(tmp_path: Path) -> None:
    blank = {"series_uid": "", "study_uid": "", "sop_uid": "", "sop_class": ""}
    first = select_ct_series(write_series(tmp_path / "a", [0.0, 1.0, 2.0], **blank))
    again = select_ct_series(write_series(tmp_path / "b", [0.0, 1.0, 2.0], **blank))
    assert first.synthetic_uids
    assert first.series_uid.startswith("2.25.") and first.study_uid.startswith("2.25.")
    assert first.series_uid == again.series_uid
    assert [s.sop_instance_uid for s in first.slices] == [s.sop_instance_uid for s in again.slices]
    assert len({s.sop_instance_uid for s in first.slices}) == 3
    assert first.warnings[0].startswith(
        "blank StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID, SOPClassUID:"
    )


def test_blank_uid_series_with_different_descriptions_stay_apart(tmp_path: Path) -> None:
    blank = {"series_uid": "", "study_uid": "", "sop_uid": "", "sop_class": ""}
    bone = write_series(tmp_path / "bone", [0.0, 1.0, 2.0], series_description="bone", **blank)
    soft = write_series(tmp_path / "soft", [0.0, 1.0], series_description="soft", **blank)
    series = select_ct_series([*soft, *bone])
    assert series.series_description == "bone" and len(series.slices) == 3


def test_too_many_slices(tmp_path: Path) -> None:
    paths = write_series(tmp_path, [0.0, 1.0, 2.0, 3.0])
    with pytest.raises(TooManySlices, match="4 slices; the limit is 3"):
        select_ct_series(paths, max_slices=3)
    assert len(select_ct_series(paths, max_slices=4).slices) == 4


def test_a_smaller_series_is_taken_when_the_larger_exceeds_the_limit(tmp_path: Path) -> None:
    thin = write_series(tmp_path / "thin", [0.0, 1.0, 2.0, 3.0, 4.0])
    thick = write_series(tmp_path / "thick", [0.0, 2.5, 5.0], series_uid="1.2.3.4.5.7")
    series = select_ct_series([*thin, *thick], max_slices=3)
    assert series.series_uid == "1.2.3.4.5.7"
    assert "exceeded the slice limit" in series.warnings[-1]


def test_enhanced_multiframe_frames_become_sorted_slices(tmp_path: Path) -> None:
    positions = [(0.0, 0.0, 2.0), (0.0, 0.0, 0.0), (0.0, 0.0, 1.0)]
    pixels = np.stack([stored_pattern(8, 8, i) for i in range(3)])
    rescales = [(1.0, -1024.0), (2.0, -1000.0), (1.0, 0.0)]
    path = write(enhanced_ct(positions, pixels, rescales), tmp_path / "enhanced.dcm")
    series = select_ct_series([path])
    assert [s.frame for s in series.slices] == [1, 2, 0]
    assert [s.z for s in series.slices] == [0.0, 1.0, 2.0]
    assert series.slice_spacing_mm == 1.0
    for ref in series.slices:
        slope, intercept = rescales[ref.frame or 0]
        expected = pixels[ref.frame or 0].astype(np.int64) * int(slope) + int(intercept)
        np.testing.assert_array_equal(load_slice_hounsfield(ref), expected)


@pytest.mark.parametrize(
    ("make", "error", "detail"),
    [
        (lambda p: p.write_bytes(b"%PDF-1.4 not dicom"), NotDicom, "not a DICOM file"),
        (lambda p: p.write_bytes(b""), NotDicom, "not a DICOM file"),
        (lambda p: write(ct_slice(modality="MR", sop_class=MR_IMAGE_STORAGE), p), NotCT, "MR"),
        (lambda p: write(ct_slice(with_pixels=False), p), NoPixelData, "no Pixel Data"),
        (
            lambda p: write(ct_slice(image_type=("ORIGINAL", "PRIMARY", "LOCALIZER")), p),
            NoCTSeries,
            "localizer",
        ),
    ],
)
def test_a_single_rejected_file_raises_its_own_error(
    tmp_path: Path, make: object, error: type[InvalidUpload], detail: str
) -> None:
    path = tmp_path / "upload.dcm"
    make(path)  # type: ignore[operator]
    with pytest.raises(error, match=detail) as raised:
        select_ct_series([path])
    assert raised.value.detail.startswith("upload.dcm: ")


def test_truncated_native_pixel_data_is_corrupt(tmp_path: Path) -> None:
    path = write(ct_slice(), tmp_path / "cut.dcm")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CorruptPixelData, match="ends inside its pixel data"):
        select_ct_series([path])


def test_files_failing_alike_raise_that_error_and_mixed_failures_no_ct_series(
    tmp_path: Path,
) -> None:
    mr = [
        write(ct_slice(modality="MR", sop_class=MR_IMAGE_STORAGE, z=z), tmp_path / f"mr{z}.dcm")
        for z in (0.0, 1.0)
    ]
    with pytest.raises(NotCT, match=r"2 files \(mr0.0.dcm, mr1.0.dcm\): modality MR"):
        select_ct_series(mr)
    text = tmp_path / "readme.txt"
    text.write_text("hello")
    with pytest.raises(NoCTSeries, match="no axial CT image series among 3 files") as raised:
        select_ct_series([*mr, text])
    assert "readme.txt: not a DICOM file" in raised.value.detail


def test_an_empty_upload_is_invalid() -> None:
    with pytest.raises(InvalidUpload, match="no files"):
        select_ct_series([])


def test_one_sop_uid_on_two_different_images_is_a_conflict(tmp_path: Path) -> None:
    """A resent, edited image keeps its UID: which one is meant must not depend on order."""
    paths = write_series(tmp_path, [0.0, 1.0])
    edited = ct_slice(z=1.0, pixels=stored_pattern(16, 16, 99), instance_number=2)
    edited.SOPInstanceUID = edited.file_meta.MediaStorageSOPInstanceUID = (
        pydicom.dcmread(paths[1]).SOPInstanceUID
    )
    for order in ([*paths, tmp_path / "edited.dcm"], [tmp_path / "edited.dcm", *paths]):
        write(edited, tmp_path / "edited.dcm")
        with pytest.raises(ConflictingInstances, match="same SOP Instance UID"):
            select_ct_series(order)


def test_one_sop_uid_at_two_positions_is_a_conflict(tmp_path: Path) -> None:
    paths = write_series(tmp_path, [0.0, 1.0])
    moved = pydicom.dcmread(paths[1])
    moved.ImagePositionPatient = [0.0, 0.0, 2.0]
    moved.save_as(tmp_path / "moved.dcm")
    with pytest.raises(ConflictingInstances, match="names slices at 1.00 mm and 2.00 mm"):
        select_ct_series([*paths, tmp_path / "moved.dcm"])


def test_bytes_without_preamble_or_element_are_refused_at_their_start(tmp_path: Path) -> None:
    """A forced parse of a megabyte of zeros reads ~130,000 empty elements; it is never tried."""
    from api.dicom.headers import read_header
    from api.errors import NotDicom

    zeros = tmp_path / "zeros"
    zeros.write_bytes(bytes(1 << 20))
    with pytest.raises(NotDicom, match="no data element at its start"):
        read_header(zeros)


def test_pydicom_warnings_that_quote_values_stay_out_of_the_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An invalid birth date draws a pydicom warning that quotes it: never logged."""
    import api.dicom  # noqa: F401 - the package sets pydicom's log level

    ds = ct_slice(z=0.0)
    ds.PatientBirthDate = "19X1-02-30"
    path = write(ds, tmp_path / "odd.dcm")
    with caplog.at_level(logging.DEBUG):
        select_ct_series([path])
        pydicom.dcmread(path).PatientBirthDate  # noqa: B018 - reading the value validates it
    assert "19X1" not in caplog.text


def test_pydicom_stays_quiet_whichever_module_imports_it_first() -> None:
    """pydicom's config lowers its logger to WARNING on first import; api.dicom raises it after."""
    import subprocess
    import sys

    check = ("import logging, api.dicom.headers; "
             "print(logging.getLevelName(logging.getLogger('pydicom').level))")
    level = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert level == "ERROR"


def test_a_decode_worker_reads_plain_slices_without_pydicom_and_stays_quiet_after() -> None:
    """pydicom and its pixel plugins (about 40 MB) load in a decode worker only for a slice
    that needs them; when they do, pydicom's logger stays at ERROR all the same."""
    import subprocess
    import sys

    check = ("import logging, sys, api.study.decoding; print('pydicom' in sys.modules); "
             "import pydicom; print(logging.getLevelName(logging.getLogger('pydicom').level)); "
             "pydicom.config.debug(True, False); "
             "print(logging.getLevelName(logging.getLogger('pydicom').level))")
    lines = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                           check=True).stdout.split()
    assert lines == ["False", "ERROR", "ERROR"]
