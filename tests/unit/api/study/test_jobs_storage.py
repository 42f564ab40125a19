"""Job rows (on SQLite and on PostgreSQL), stored masks and results, retention."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from api.db.sqlite import SqliteDatabase
from api.errors import InvalidRequest, StorageError
from api.schemas import StudyResult
from api.study.jobs import IdempotencyKey, JobError, JobState, JobStore, Page
from api.study.listing import decode_cursor, encode_cursor
from api.study.retention import sweep
from api.study.storage import StudyStore
from tests.unit.api.study.conftest import OpenStore

JOB = "0123456789abcdef0123456789abcdef"


def test_job_lifecycle_survives_reopening(open_store: OpenStore) -> None:
    jobs = open_store()
    jobs.create(JOB)
    claimed = jobs.claim("w1", lease_s=30)
    assert claimed is not None and (claimed.id, claimed.worker) == (JOB, "w1")
    jobs.start(JOB, 40)
    jobs.progress(JOB, 16)
    jobs.close()
    reopened = open_store()
    job = reopened.get(JOB)
    assert job is not None
    assert (job.state, job.slices_done, job.slices_total, job.attempts, job.worker) == (
        JobState.RUNNING, 16, 40, 1, "w1")
    assert reopened.fail(JOB, JobError("urn:x", "X", 503, "down"), worker="w1")
    failed = reopened.get(JOB)
    assert failed is not None and failed.state is JobState.FAILED
    assert failed.error == JobError("urn:x", "X", 503, "down")
    assert reopened.claim("w2", lease_s=30) is None


def test_masks_round_trip_exactly_and_missing_ones_are_empty(tmp_path: Path) -> None:
    store = StudyStore(tmp_path)
    store.create(JOB)
    mask = np.random.default_rng(0).random((37, 53)) > 0.7
    store.write_mask(JOB, 3, mask)
    assert np.array_equal(store.read_mask(JOB, 3, (37, 53)), mask)
    assert not store.read_mask(JOB, 4, (37, 53)).any()


def test_job_ids_never_name_other_folders(tmp_path: Path) -> None:
    store = StudyStore(tmp_path)
    with pytest.raises(ValueError):
        store.job_dir("../../etc")
    assert not store.exists("../x")


def test_sweep_removes_only_expired_finished_jobs(jobs: JobStore, tmp_path: Path) -> None:
    store = StudyStore(tmp_path)
    old, running = JOB, "f" * 32
    for job_id in (old, running):
        jobs.create(job_id)
        store.create(job_id)
    jobs.succeed(old)
    assert jobs.claim("w", lease_s=30) is not None
    assert sweep(jobs, store, retention_h=1, now=time.time() + 7200) == 1
    assert jobs.get(old) is None and not store.exists(old)
    assert jobs.get(running) is not None and store.exists(running)


def _example_result() -> StudyResult:
    extra = StudyResult.model_config.get("json_schema_extra")
    assert isinstance(extra, dict)
    return StudyResult.model_validate(extra["example"])


def test_a_result_reads_back_as_the_model_it_was(tmp_path: Path) -> None:
    store = StudyStore(tmp_path)
    store.create(JOB)
    assert store.read_result(JOB) is None
    result = _example_result()
    store.write_result(JOB, result)
    assert store.read_result(JOB) == result


@pytest.mark.parametrize("stored", [b"{not json", b'{"slices": []}', b"[]"])
def test_a_stored_result_that_is_not_one_is_a_storage_error(tmp_path: Path,
                                                            stored: bytes) -> None:
    store = StudyStore(tmp_path)
    store.create(JOB)
    (store.job_dir(JOB) / "result.json").write_bytes(stored)
    with pytest.raises(StorageError, match="cannot be read"):
        store.read_result(JOB)


def test_a_result_stored_before_inference_wall_s_still_reads(tmp_path: Path) -> None:
    store = StudyStore(tmp_path)
    store.create(JOB)
    document = _example_result().model_dump()
    del document["timings"]["inference_wall_s"]
    (store.job_dir(JOB) / "result.json").write_text(json.dumps(document))
    result = store.read_result(JOB)
    assert result is not None and result.timings.inference_wall_s is None


def test_a_job_knows_its_slice_total_from_creation(jobs: JobStore) -> None:
    job = jobs.create(JOB, slices_total=120)
    assert (job.state, job.slices_done, job.slices_total) == (JobState.QUEUED, 0, 120)


OLD_SCHEMA = """
CREATE TABLE jobs (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, created_at REAL NOT NULL,
    updated_at REAL NOT NULL, slices_total INTEGER NOT NULL DEFAULT 0,
    slices_done INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
    error_type TEXT, error_title TEXT, error_status INTEGER, error_detail TEXT
)
"""


def test_a_database_from_before_owners_keeps_its_rows_without_an_owner(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(OLD_SCHEMA)
        db.execute("INSERT INTO jobs (id, state, created_at, updated_at, slices_total)"
                   " VALUES (?, 'succeeded', 1.0, 2.0, 40)", (JOB,))
    jobs = JobStore(SqliteDatabase(path))
    old = jobs.get(JOB)
    assert old is not None
    assert (old.owner, old.state, old.slices_total, old.created_at) == (
        None, JobState.SUCCEEDED, 40, 1.0)
    new = jobs.create("f" * 32, owner="alice")
    assert new.owner == "alice"
    jobs.close()
    again = JobStore(SqliteDatabase(path))  # a second opening finds the column, adds nothing
    assert [job.owner for job in again.page(Page())] == ["alice", None]


def test_count_unfinished_counts_one_owners_queued_and_running(jobs: JobStore) -> None:
    states = {"a1": "queued", "a2": "running", "a3": "succeeded", "a4": "failed"}
    for job_id in states:
        jobs.create(job_id, owner="alice")
    jobs.create("b1", owner="bob")
    jobs.create("n1")
    jobs.claim("w", lease_s=30)  # a1, the oldest
    jobs.succeed("a3")
    jobs.fail("a4", JobError("urn:x", "X", 503, "down"))
    assert jobs.count_unfinished("alice") == 2
    assert jobs.count_unfinished("bob") == 1
    assert jobs.count_unfinished("carol") == 0


def test_pages_walk_newest_first_with_ties_broken_by_id(jobs: JobStore) -> None:
    created = {"a": 1.0, "b": 2.0, "c": 2.0, "d": 3.0, "e": 2.0}
    for job_id in created:
        jobs.create(job_id, owner="bob" if job_id == "e" else "alice")
    with jobs.transaction() as cur:
        cur.executemany("UPDATE jobs SET created_at = ? WHERE id = ?",
                        [(at, job_id) for job_id, at in created.items()])
    jobs.succeed("c")
    walked, after = [], None
    while True:
        page = jobs.page(Page(owner="alice", after=after, limit=2))
        if not page:
            break
        walked.append([job.id for job in page])
        after = (page[-1].created_at, page[-1].id)
    assert walked == [["d", "c"], ["b", "a"]]
    assert [job.id for job in jobs.page(Page())] == ["d", "e", "c", "b", "a"]
    queued = jobs.page(Page(owner="alice", states=(JobState.QUEUED,)))
    assert [job.id for job in queued] == ["d", "b", "a"]


@pytest.mark.parametrize("cursor", ["", "%%", "bm8tc2xhc2g=", "MS4wLw==", "eC9h"])
def test_a_cursor_the_service_did_not_make_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidRequest, match="cursor"):
        decode_cursor(cursor)


def test_a_cursor_names_its_job_exactly(jobs: JobStore) -> None:
    job = jobs.create(JOB)
    assert decode_cursor(encode_cursor(job)) == (job.created_at, JOB)


def test_one_job_per_client_and_idempotency_key_even_when_two_race(
        open_store: OpenStore) -> None:
    jobs = open_store()
    key = IdempotencyKey("order-7", "digest-1")
    first = jobs.create("a" * 32, owner="ris", key=key)
    # A second request with the same key got past the lookup before the first was written.
    raced = jobs.create("b" * 32, owner="ris", key=IdempotencyKey("order-7", "digest-2"))
    other = jobs.create("c" * 32, owner="pacs", key=key)
    assert (first.id, raced.id, other.id) == ("a" * 32, "a" * 32, "c" * 32)
    assert jobs.get("b" * 32) is None
    assert jobs.digest_of("a" * 32) == "digest-1"
    assert jobs.keyed("ris", key, since=0.0) == first
    assert jobs.keyed("ris", key, since=time.time() + 1) is None  # past its window: forgotten
    assert jobs.create("d" * 32, owner="ris", key=key).id == "d" * 32
