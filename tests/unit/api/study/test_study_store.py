"""A job's objects through StudyStore, on disk and in a real S3 server (SeaweedFS) alike."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest

from api.config import Settings
from api.db.sqlite import SqliteDatabase
from api.dicom.series import select_ct_series
from api.errors import StorageError
from api.schemas import StudyResult
from api.study.jobs import JobStore
from api.study.retention import sweep
from api.study.series_record import keep_series, series_on_disk, stored_series
from api.study.storage import StudyStore, open_study_store
from tests.api.conftest import build_series
from tests.seaweedfs import SeaweedS3

JOB = "0123456789abcdef0123456789abcdef"


class Listing:
    """What a store holds, as its server lists it: files on disk, or the bucket's keys."""

    def __init__(self, root: Path, s3: SeaweedS3 | None = None, prefix: str = "") -> None:
        self.root, self.s3, self.prefix = root, s3, prefix

    def __call__(self) -> list[str]:
        if self.s3 is not None:
            return [key.removeprefix(self.prefix + "/") for key in self.s3.keys(self.prefix)]
        return sorted(p.relative_to(self.root).as_posix()
                      for p in (self.root / "studies").rglob("*"))


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> tuple[StudyStore, Listing]:
    data = tmp_path / "data"
    if request.param == "local":
        return open_study_store(Settings(data_dir=data)), Listing(data)
    s3: SeaweedS3 = request.getfixturevalue("seaweedfs")
    prefix = s3.new_prefix()
    for name, value in s3.environment(prefix).items():
        monkeypatch.setenv(name, value)
    settings = Settings(data_dir=data, storage_part_mb=5)  # storage_url from the environment
    assert settings.storage_url == f"s3://{s3.bucket}/{prefix}"
    return open_study_store(settings), Listing(data, s3, prefix)


def _example_result() -> StudyResult:
    extra = StudyResult.model_config.get("json_schema_extra")
    assert isinstance(extra, dict)
    return StudyResult.model_validate(extra["example"])


def _received(store: StudyStore, files: dict[str, bytes], job_id: str = JOB) -> None:
    folder = store.create(job_id)
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    store.keep_upload(job_id)


def test_result_masks_outputs_and_record_read_back_and_missing_ones_read_as_before(
    backend: tuple[StudyStore, Listing]
) -> None:
    store, _ = backend
    store.create(JOB)
    assert store.exists(JOB) and not store.exists("f" * 32) and not store.exists("../x")
    assert store.read_result(JOB) is None
    assert store.read_output(JOB, "seg.dcm") is None
    assert store.read_series(JOB) is None
    assert not store.read_mask(JOB, 4, (37, 53)).any()
    result = _example_result()
    store.write_result(JOB, result)
    mask = np.random.default_rng(0).random((37, 53)) > 0.7
    store.write_mask(JOB, 3, mask)
    store.write_output(JOB, "seg.dcm", b"DICM" + bytes(range(256)))
    store.write_series(JOB, {"slices": (1, 2, 3)})
    assert store.read_result(JOB) == result
    assert np.array_equal(store.read_mask(JOB, 3, (37, 53)), mask)
    assert store.read_output(JOB, "seg.dcm") == b"DICM" + bytes(range(256))
    assert store.read_series(JOB) == {"slices": (1, 2, 3)}
    with pytest.raises(ValueError):
        store.write_output(JOB, "../result.json", b"x")


def test_a_stored_result_that_is_not_one_is_a_storage_error(
    backend: tuple[StudyStore, Listing]
) -> None:
    store, _ = backend
    store.create(JOB)
    store.objects.put_bytes(f"studies/{JOB}/result.json", b'{"slices": []}')
    with pytest.raises(StorageError, match="cannot be read"):
        store.read_result(JOB)
    store.objects.put_bytes(f"studies/{JOB}/series.pickle", b"not a pickle")
    assert store.read_series(JOB) is None


def test_clearing_outputs_keeps_the_upload_and_the_record(
    backend: tuple[StudyStore, Listing]
) -> None:
    store, listing = backend
    _received(store, {"a.dcm": b"A"})
    store.write_series(JOB, "record")
    store.write_result(JOB, _example_result())
    store.write_mask(JOB, 0, np.ones((2, 2), dtype=bool))
    store.write_output(JOB, "sr.dcm", b"SR")
    before = listing()
    store.clear_outputs(JOB)
    cleared = [f"studies/{JOB}/{name}" for name in ("result.json", "masks/0.bits",
                                                     "outputs/sr.dcm")]
    assert set(cleared) <= set(before)
    assert [name for name in listing() if "masks" in name or "outputs" in name
            or "result" in name] == []
    assert store.read_series(JOB) == "record"
    with store.local_upload(JOB) as folder:
        assert (folder / "a.dcm").read_bytes() == b"A"


def test_the_upload_goes_in_and_comes_back_byte_for_byte(
    backend: tuple[StudyStore, Listing], tmp_path: Path
) -> None:
    store, listing = backend
    files = {"one.dcm": os.urandom(2000), "study/series 1/two.dcm": os.urandom(6 << 20)}
    _received(store, files)
    assert not (store.scratch / "incoming").exists() or not any(
        (store.scratch / "incoming").iterdir())
    uploaded = [name for name in listing() if f"{JOB}/upload/" in name]
    if store.objects.local_path("x") is not None:
        assert set(uploaded) == {f"studies/{JOB}/upload/{name}" for name in (
            *files, "study", "study/series 1")}
    else:
        # Keys by a hash of each name: a file's name (maybe a patient's) is in no key.
        assert len(uploaded) == len(files)
        assert not any("dcm" in key or "series" in key for key in listing())
    with store.local_upload(JOB) as folder:
        assert {name: (folder / name).read_bytes() for name in files} == files
    with store.local_upload(JOB, ["one.dcm"]) as folder:
        assert (folder / "one.dcm").read_bytes() == files["one.dcm"]
        partial = folder
    # A scratch copy is gone after the block; the upload on disk stays where it is.
    assert partial.exists() == (store.objects.local_path("x") is not None)
    assert not (store.scratch / "runs").exists() or not any((store.scratch / "runs").iterdir())


def test_delete_leaves_nothing_behind(backend: tuple[StudyStore, Listing]) -> None:
    store, listing = backend
    other = "f" * 32
    for job_id in (JOB, other):
        folder = store.create(job_id)
        (folder / "a.dcm").write_bytes(b"A")
        store.keep_upload(job_id)
        store.write_series(job_id, "record")
        store.write_result(job_id, _example_result())
        store.write_mask(job_id, 1, np.ones((4, 4), dtype=bool))
        store.write_output(job_id, "seg.dcm", b"SEG")
    assert len([n for n in listing() if n.startswith(f"studies/{JOB}/")]) >= 6
    store.delete(JOB)
    assert [n for n in listing() if n.startswith(f"studies/{JOB}")] == []
    assert not store.exists(JOB) and store.exists(other)
    assert store.read_result(JOB) is None
    store.delete(other)
    assert listing() == []


def test_an_intake_given_up_leaves_no_scratch(backend: tuple[StudyStore, Listing]) -> None:
    store, listing = backend
    folder = store.create(JOB)
    (folder / "half.dcm").write_bytes(b"half")
    store.delete(JOB)  # what intake does when the body or its headers are refused
    assert listing() == [] and not folder.exists()


def test_the_series_record_names_files_relative_to_the_upload(
    backend: tuple[StudyStore, Listing], tmp_path: Path
) -> None:
    """A record written where the upload was received reads where it is fetched to."""
    store, _ = backend
    built = build_series(tmp_path / "built", slices=3, size=64)
    folder = store.create(JOB)
    (folder / "series").mkdir()
    for path in built.paths:
        (folder / "series" / path.name).write_bytes(path.read_bytes())
    series = select_ct_series(sorted((folder / "series").iterdir()))
    store.keep_upload(JOB)
    keep_series(store, JOB, series, folder)
    record = stored_series(store, JOB)
    assert record is not None
    assert {ref.path.parent.as_posix() for ref in record.slices} == {"series"}
    assert str(tmp_path).encode() not in pickle.dumps(record)
    with series_on_disk(store, JOB, [1]) as placed:
        path = placed.slices[1].path
        assert path.read_bytes() == (tmp_path / "built" / path.name).read_bytes()
    with series_on_disk(store, JOB) as placed:
        assert all(ref.path.is_file() for ref in placed.slices)
    with pytest.raises(StorageError), series_on_disk(store, JOB, [3]):
        pass


def test_retention_removes_every_object_of_an_expired_job(
    backend: tuple[StudyStore, Listing], tmp_path: Path
) -> None:
    store, listing = backend
    jobs = JobStore(SqliteDatabase(tmp_path / "jobs.sqlite"))
    old, running = JOB, "f" * 32
    for job_id in (old, running):
        jobs.create(job_id)
        _received(store, {"a.dcm": b"A"}, job_id)
        store.write_result(job_id, _example_result())
    jobs.succeed(old)
    claimed = jobs.claim("worker", lease_s=60)
    assert claimed is not None and claimed.id == running
    assert sweep(jobs, store, retention_h=1, now=time.time() + 7200) == 1
    assert [name for name in listing() if old in name] == []
    assert any(name.startswith(f"studies/{running}/") for name in listing())
    assert store.read_result(running) == _example_result()


def test_scratch_a_killed_process_left_is_swept_and_live_scratch_is_not(tmp_path: Path) -> None:
    store = StudyStore(tmp_path / "data")
    dead = store.scratch / "runs" / f"{JOB}-0badf00d"
    live = store.scratch / "incoming" / ("f" * 32)
    for folder in (dead, live):
        (folder / "deep").mkdir(parents=True)
        (folder / "deep" / "a.dcm").write_bytes(b"A")
    hours_ago = time.time() - 7 * 3600
    for path in (dead, dead / "deep", dead / "deep" / "a.dcm", live):
        os.utime(path, (hours_ago, hours_ago))
    # live's file was written just now: the folder is in use, however old the folder is.
    assert store.sweep_scratch(older_than_s=6 * 3600) == 1
    assert not dead.exists() and (live / "deep" / "a.dcm").is_file()


def test_a_bucket_out_of_reach_refuses_an_upload_and_leaves_no_scratch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.seaweedfs import _free_ports

    (port,) = _free_ports(1)  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    store = open_study_store(Settings(data_dir=tmp_path / "d", storage_url="s3://scans/x"))
    with pytest.raises(StorageError, match="object store"):
        store.create(JOB)
    assert [p for p in store.scratch.rglob("*") if p.is_file()] == []
    assert not (store.scratch / "incoming" / JOB).exists()
    assert store.unavailable() is not None and not (tmp_path / "d" / "studies").exists()
