"""Uploads to files: safe zip extraction, size limits, clutter, folder listing."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest

from api.dicom.series import select_ct_series
from api.dicom.sources import (
    ZipLimits,
    expand_upload,
    extract_zip,
    gather_files,
    is_zip,
    list_upload,
    safe_parts,
)
from api.errors import InvalidUpload, UploadTooLarge
from tests.dicom_builders import ct_slice, write, write_series

pytestmark = pytest.mark.timeout(60)


def make_zip(path: Path, members: dict[str, bytes], **kwargs: int) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data, **kwargs)
    return path


def test_nested_folders_are_kept_and_clutter_skipped(tmp_path: Path) -> None:
    archive = make_zip(
        tmp_path / "study.zip",
        {
            "STUDY/SERIES1/IM0001": b"a",
            "STUDY/SERIES1/IM0002": b"b",
            "STUDY/": b"",
            "DICOMDIR": b"index",
            "__MACOSX/STUDY/._IM0001": b"resource fork",
            "STUDY/.DS_Store": b"finder",
            "./top.dcm": b"c",
        },
    )
    files = extract_zip(archive, tmp_path / "out")
    relative = [str(p.relative_to(tmp_path / "out")) for p in files]
    assert relative == ["STUDY/SERIES1/IM0001", "STUDY/SERIES1/IM0002", "top.dcm"]
    assert (tmp_path / "out" / "STUDY" / "SERIES1" / "IM0002").read_bytes() == b"b"


@pytest.mark.parametrize(
    "name", ["../evil.dcm", "a/../../evil.dcm", "/etc/evil.dcm", "C:\\evil.dcm", "..\\evil.dcm"]
)
def test_path_traversal_refuses_the_whole_zip(tmp_path: Path, name: str) -> None:
    archive = make_zip(tmp_path / "bad.zip", {"ok.dcm": b"ok", name: b"evil"})
    with pytest.raises(InvalidUpload, match="path"):
        extract_zip(archive, tmp_path / "deep" / "out")
    assert not (tmp_path / "deep" / "out").exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["bad.zip", "deep"]


def test_safe_parts() -> None:
    assert safe_parts("a/./b//c.dcm") == ("a", "b", "c.dcm")
    assert safe_parts("win\\dir\\x.dcm") == ("win", "dir", "x.dcm")
    with pytest.raises(InvalidUpload):
        safe_parts("x/\x00.dcm")


def test_too_many_members(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "many.zip", {f"f{i}": b"x" for i in range(11)})
    with pytest.raises(UploadTooLarge, match="11 members; the limit is 10"):
        extract_zip(archive, tmp_path / "out", ZipLimits(max_members=10))


def test_declared_size_over_the_limit(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "big.zip", {"a": b"x" * 600, "b": b"y" * 600})
    with pytest.raises(UploadTooLarge, match="inflates to 1200 bytes"):
        extract_zip(archive, tmp_path / "out", ZipLimits(max_total_bytes=1000))
    assert not (tmp_path / "out").exists()


def test_zip_bomb_ratio(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "bomb.zip", {"zeros": bytes(8 << 20)})
    assert archive.stat().st_size < 100_000
    with pytest.raises(UploadTooLarge, match="inflates suspiciously"):
        extract_zip(archive, tmp_path / "out")


def test_inflated_bytes_are_counted_while_writing(tmp_path: Path) -> None:
    # A zip whose directory under-states a member's size: the written bytes still count.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("a", b"x" * 5000)
    data = bytearray(buffer.getvalue())
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = (100).to_bytes(4, "little")  # uncompressed size
    archive = tmp_path / "liar.zip"
    archive.write_bytes(bytes(data))
    with pytest.raises((UploadTooLarge, InvalidUpload)):
        extract_zip(archive, tmp_path / "out", ZipLimits(max_total_bytes=1000))
    assert not (tmp_path / "out").exists()


def test_symlink_and_encrypted_members_are_refused(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as zf:
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(InvalidUpload, match="symbolic link"):
        extract_zip(tmp_path / "link.zip", tmp_path / "out1")
    # zipfile cannot write encrypted members: set the "encrypted" flag bit by hand.
    data = bytearray(make_zip(tmp_path / "plain.zip", {"locked": b"secret"}).read_bytes())
    data[6] |= 0x1  # local file header
    data[data.rfind(b"PK\x01\x02") + 8] |= 0x1  # central directory
    (tmp_path / "locked.zip").write_bytes(bytes(data))
    with pytest.raises(InvalidUpload, match="encrypted"):
        extract_zip(tmp_path / "locked.zip", tmp_path / "out2")


def test_damaged_zip(tmp_path: Path) -> None:
    archive = tmp_path / "broken.zip"
    archive.write_bytes(b"PK\x03\x04" + b"\x00" * 200)
    with pytest.raises(InvalidUpload, match="damaged or unsupported zip"):
        extract_zip(archive, tmp_path / "out")


def test_duplicate_member_names_do_not_overwrite(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "dup.zip", "w") as zf, pytest.warns(UserWarning):
        zf.writestr("x.dcm", b"first")
        zf.writestr("x.dcm", b"second")
    files = extract_zip(tmp_path / "dup.zip", tmp_path / "out")
    assert sorted(p.read_bytes() for p in files) == [b"first", b"second"]


def test_a_dicom_file_with_a_zip_like_preamble_is_not_a_zip(tmp_path: Path) -> None:
    path = write(ct_slice(), tmp_path / "x.dcm")
    data = bytearray(path.read_bytes())
    data[:4] = b"PK\x03\x04"
    path.write_bytes(bytes(data))
    assert not is_zip(path)
    assert is_zip(make_zip(tmp_path / "z.zip", {"a": b"a"}))


def test_expand_upload_extracts_in_place_and_lists_the_same_files(tmp_path: Path) -> None:
    series = write_series(tmp_path / "src", [0.0, 1.0, 2.0], shuffle=False)
    upload = tmp_path / "upload"
    upload.mkdir()
    make_zip(upload / "part-00001", {f"CT/{p.name}": p.read_bytes() for p in series[:2]})
    (upload / "part-00002").write_bytes(series[2].read_bytes())
    files = expand_upload(upload)
    assert [str(p.relative_to(upload)) for p in files] == [
        "part-00001.d/CT/slice-00.dcm",
        "part-00001.d/CT/slice-01.dcm",
        "part-00002",
    ]
    assert not (upload / "part-00001").exists()
    assert list_upload(upload) == files
    assert len(select_ct_series(files).slices) == 3


def test_expand_upload_shares_one_byte_budget_across_zips(tmp_path: Path) -> None:
    upload = tmp_path / "upload"
    upload.mkdir()
    make_zip(upload / "part-00001", {"a": b"x" * 700})
    make_zip(upload / "part-00002", {"b": b"y" * 700})
    with pytest.raises(UploadTooLarge):
        expand_upload(upload, ZipLimits(max_total_bytes=1000))


def test_gather_files_from_folders_zips_and_files(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    write_series(folder, [0.0, 1.0], shuffle=False)
    single = write(ct_slice(z=5.0), tmp_path / "single.dcm")
    archive = make_zip(tmp_path / "more.zip", {"s.dcm": single.read_bytes()})
    files = gather_files([folder, archive, single], tmp_path / "scratch")
    assert [p.name for p in files] == ["slice-00.dcm", "slice-01.dcm", "s.dcm", "single.dcm"]
    with pytest.raises(InvalidUpload, match="no such file"):
        gather_files([tmp_path / "missing"], tmp_path / "scratch2")


@pytest.mark.parametrize("order", [("a", "a/b.dcm"), ("a/b.dcm", "a")])
def test_a_file_and_a_folder_of_one_name(tmp_path: Path, order: tuple[str, str]) -> None:
    """Either order is the client's mistake or a harmless clash: never an OSError (a 500)."""
    archive = tmp_path / "clash.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in (*order, "c.dcm"):
            zf.writestr(name, b"x" * 10)
    if order[0] == "a":  # the file first: its folder cannot be made
        with pytest.raises(InvalidUpload, match="both a file and a folder"):
            extract_zip(archive, tmp_path / "out")
        assert not (tmp_path / "out").exists()
    else:
        files = extract_zip(archive, tmp_path / "out")
        assert len(files) >= 2 and all(f.is_file() for f in files)
