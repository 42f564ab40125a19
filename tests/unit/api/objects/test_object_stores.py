"""Both object stores, a folder and a real S3 server (SeaweedFS), through one protocol."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from api.errors import StorageError
from api.objects import FolderObjects, ObjectStore, S3Location, S3Objects, open_objects
from tests.seaweedfs import SeaweedS3


@pytest.fixture(params=["folder", "s3"])
def objects(request: pytest.FixtureRequest, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> ObjectStore:
    if request.param == "folder":
        return open_objects(None, tmp_path / "root")
    s3: SeaweedS3 = request.getfixturevalue("seaweedfs")
    environment = s3.environment(s3.new_prefix())
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    # From the URL and the AWS variables alone, as the service makes it.
    return open_objects(environment["BONEMETS_STORAGE_URL"], tmp_path / "root", part_mb=5)


def test_bytes_round_trip_and_a_missing_object_is_none(objects: ObjectStore) -> None:
    assert objects.get_bytes("a/b.bin") is None
    objects.make_folder("a/")
    objects.put_bytes("a/b.bin", b"\x00first")
    objects.put_bytes("a/b.bin", b"\x00second")
    assert objects.get_bytes("a/b.bin") == b"\x00second"
    assert sorted(objects.keys("a/")) == ["a/b.bin"]


def test_files_go_up_and_come_down_byte_for_byte(objects: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "deep" / "er").mkdir(parents=True)
    files = {"one.dcm": os.urandom(1000), "deep/er/two.dcm": os.urandom(6 << 20)}
    for name, data in files.items():
        (source / name).write_bytes(data)
    objects.put_files((f"up/{name}", source / name) for name in files)
    assert sorted(objects.keys("up/")) == sorted(f"up/{name}" for name in files)
    target = tmp_path / "target"
    objects.download_files((f"up/{name}", target / name) for name in files)
    assert {name: (target / name).read_bytes() for name in files} == files


def test_a_large_file_goes_up_in_parts(seaweedfs: SeaweedS3, tmp_path: Path) -> None:
    prefix = seaweedfs.new_prefix()
    objects = S3Objects(S3Location(seaweedfs.bucket, f"{prefix}/"), part_bytes=5 << 20,
                        client=seaweedfs.client())
    big = tmp_path / "big.dcm"
    big.write_bytes(os.urandom(11 << 20))
    objects.put_files([("big.dcm", big)])
    head = seaweedfs.client().head_object(Bucket=seaweedfs.bucket, Key=f"{prefix}/big.dcm")
    # A multipart upload's ETag ends in the number of its parts: 5 + 5 + 1 MiB.
    assert head["ETag"].strip('"').endswith("-3")
    assert head["ContentLength"] == 11 << 20


def test_a_missing_file_to_fetch_is_a_storage_error(objects: ObjectStore, tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        objects.download_files([("nowhere.dcm", tmp_path / "x" / "nowhere.dcm")])


def test_deleting_a_prefix_removes_every_object_past_one_batch(objects: ObjectStore,
                                                              tmp_path: Path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for index in range(1003):  # more than one DeleteObjects call takes
        (folder / f"{index}.bin").write_bytes(b"x")
    objects.make_folder("job/")
    objects.put_files((f"job/files/{index}.bin", folder / f"{index}.bin")
                      for index in range(1003))
    objects.make_folder("other/")
    objects.put_bytes("other/keep.bin", b"k")
    assert objects.has_folder("job/")
    assert objects.delete_prefix("job/") >= 1003
    assert list(objects.keys("job/")) == [] and not objects.has_folder("job/")
    assert list(objects.keys("other/")) == ["other/keep.bin"]


def test_folder_keys_never_leave_the_root(tmp_path: Path) -> None:
    objects = FolderObjects(tmp_path)
    for key in ("../x", "/etc/passwd", "a/../../b", ""):
        with pytest.raises(ValueError):
            objects.put_bytes(key, b"x")


def test_a_bucket_url_is_parsed_or_refused() -> None:
    assert S3Location.parse("s3://scans/bonemets/prod/") == S3Location("scans", "bonemets/prod/")
    assert S3Location.parse("s3://scans") == S3Location("scans", "")
    for url in ("http://scans/x", "s3:///x", "s3://b/x?y=1"):
        with pytest.raises(ValueError):
            S3Location.parse(url)


def test_an_unreachable_server_is_a_storage_error(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    from tests.seaweedfs import _free_ports

    (port,) = _free_ports(1)  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    objects = open_objects("s3://nowhere/x", tmp_path)
    with pytest.raises(StorageError, match="object store"):
        objects.get_bytes("a")
    with pytest.raises(StorageError, match="object store"):
        objects.put_bytes("a", b"x")


def test_the_storage_setting_takes_only_a_bucket_url(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from api.config import Settings

    assert Settings(data_dir=tmp_path, storage_url="").storage_url is None
    assert Settings(data_dir=tmp_path, storage_url="s3://scans/p").storage_url == "s3://scans/p"
    for url in ("/srv/data", "https://s3.example.org/scans", "s3://"):
        with pytest.raises(ValidationError, match="storage_url"):
            Settings(data_dir=tmp_path, storage_url=url)
