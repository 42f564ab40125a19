"""Claims and leases on both databases: each job to one worker, a dead worker's job to
another once its lease runs out, a stale worker's outcome refused; and the schema migrations,
from a database made before they were numbered."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from api.config import Settings
from api.db.migrations import migrate
from api.db.sqlite import SqliteDatabase
from api.study.deliveries import DeliveryState
from api.study.jobs import PRIORITY_RANKS, JobError, JobState, JobStore
from api.study.schema import MIGRATIONS
from tests.unit.api.study.conftest import OpenStore

DOWN = JobError("urn:x", "X", 503, "down")


def test_concurrent_claimers_never_get_the_same_job(open_store: OpenStore) -> None:
    jobs = open_store()
    ids = [f"{n:032x}" for n in range(50)]
    for job_id in ids:
        jobs.create(job_id)
    workers = [open_store() for _ in range(4)]  # a connection each, as separate processes
    claimed: dict[str, list[str]] = {f"w{n}": [] for n in range(4)}
    start = threading.Barrier(4)

    def claim_all(name: str, store: JobStore) -> None:
        start.wait()
        while (job := store.claim(name, lease_s=30)) is not None:
            claimed[name].append(job.id)

    threads = [threading.Thread(target=claim_all, args=(name, store))
               for name, store in zip(claimed, workers, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    everything = [job_id for got in claimed.values() for job_id in got]
    assert sorted(everything) == ids  # each exactly once
    for name, got in claimed.items():
        assert all(job.worker == name and job.attempts == 1
                   for job in map(jobs.get, got) if job is not None)


def test_claims_take_the_oldest_queued_job_first(jobs: JobStore) -> None:
    for job_id in ("c", "a", "b"):
        jobs.create(job_id)
    with jobs.transaction() as cur:
        cur.executemany("UPDATE jobs SET created_at = ? WHERE id = ?",
                        [(3.0, "c"), (1.0, "a"), (2.0, "b")])
    order = [job.id for job in iter(lambda: jobs.claim("w", lease_s=30), None)]
    assert order == ["a", "b", "c"]


def test_a_stat_job_is_claimed_before_older_routine_ones(jobs: JobStore) -> None:
    for name in ("routine-1", "routine-2"):
        jobs.create(name)
    jobs.create("stat", priority=PRIORITY_RANKS["stat"])
    jobs.create("routine-3")
    order = [claimed.id for claimed in iter(lambda: jobs.claim("w", 60), None)]
    assert order == ["stat", "routine-1", "routine-2", "routine-3"]
    stat = jobs.get("stat")
    assert stat is not None and stat.priority_name == "stat"


def test_an_expired_lease_hands_the_job_to_another_worker(jobs: JobStore) -> None:
    jobs.create("j")
    first = jobs.claim("dead", lease_s=0.3)
    assert first is not None and first.attempts == 1
    assert jobs.claim("alive", lease_s=30) is None  # the lease still holds
    time.sleep(0.5)
    second = jobs.claim("alive", lease_s=30)
    assert second is not None
    assert (second.id, second.worker, second.attempts, second.state) == (
        "j", "alive", 2, JobState.RUNNING)


def test_a_stale_worker_s_outcome_is_refused(jobs: JobStore) -> None:
    jobs.create("j")
    jobs.claim("stale", lease_s=0.2)
    time.sleep(0.4)
    assert jobs.claim("current", lease_s=30) is not None
    assert not jobs.renew("j", "stale", lease_s=30)
    assert not jobs.succeed("j", ["pacs"], worker="stale")
    assert not jobs.fail("j", DOWN, worker="stale")
    assert not jobs.release("j", "stale")
    held = jobs.get("j")
    assert held is not None and (held.state, held.worker, held.error) == (
        JobState.RUNNING, "current", None)
    assert jobs.deliveries.of_job("j") == []  # nor its deliveries
    assert jobs.succeed("j", ["pacs"], worker="current")
    jobs.progress("j", 1)  # a straggler's progress never reopens a finished job
    done = jobs.get("j")
    assert done is not None and done.state is JobState.SUCCEEDED
    assert [d.state for d in jobs.deliveries.of_job("j")] == [DeliveryState.PENDING]


def test_a_renewed_lease_keeps_the_job(jobs: JobStore) -> None:
    jobs.create("j")
    jobs.claim("w", lease_s=0.4)
    for _ in range(3):
        time.sleep(0.2)
        assert jobs.renew("j", "w", lease_s=0.4)
        assert jobs.claim("other", lease_s=30) is None
    assert jobs.delete("j")
    assert not jobs.renew("j", "w", lease_s=0.4)  # gone: the worker stops


def test_a_released_job_is_claimed_again_at_once(jobs: JobStore) -> None:
    jobs.create("j")
    jobs.claim("stopping", lease_s=30)
    jobs.progress("j", 5)
    assert jobs.release("j", "stopping")
    queued = jobs.get("j")
    assert queued is not None
    assert (queued.state, queued.worker, queued.slices_done) == (JobState.QUEUED, None, 0)
    again = jobs.claim("next", lease_s=30)
    assert again is not None and (again.worker, again.attempts) == ("next", 2)


def test_a_job_created_failed_is_never_claimed(jobs: JobStore) -> None:
    job = jobs.create("j", owner="dimse", error=DOWN)
    assert (job.state, job.error) == (JobState.FAILED, DOWN)
    assert jobs.claim("w", lease_s=30) is None


def test_migrations_run_once(open_store: OpenStore, tmp_path: Path) -> None:
    jobs = open_store()
    with jobs.transaction() as cur:
        versions = cur.execute("SELECT version, name FROM schema_migrations ORDER BY version"
                               ).fetchall()
    assert versions == [(m.version, m.name) for m in MIGRATIONS]
    jobs.create("j")
    again = open_store()  # a second process starting finds nothing to do
    assert again.get("j") is not None
    other = SqliteDatabase(tmp_path / "other.sqlite")
    with pytest.raises(ValueError, match="increase"):
        migrate(other, MIGRATIONS[::-1])
    assert migrate(other, MIGRATIONS) == [m.version for m in MIGRATIONS]
    assert migrate(other, MIGRATIONS) == []
    other.close()


# The schema as the code before numbered migrations made it (owner column included).
TODAY = (
    """CREATE TABLE jobs (id TEXT PRIMARY KEY, state TEXT NOT NULL, created_at REAL NOT NULL,
    updated_at REAL NOT NULL, slices_total INTEGER NOT NULL DEFAULT 0,
    slices_done INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
    error_type TEXT, error_title TEXT, error_status INTEGER, error_detail TEXT, owner TEXT)""",
    "CREATE INDEX jobs_by_owner ON jobs (owner, created_at, id)",
    "CREATE INDEX jobs_by_time ON jobs (created_at, id)",
    """CREATE TABLE deliveries (job_id TEXT NOT NULL, destination TEXT NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, since REAL NOT NULL,
    next_attempt_at REAL, last_attempt_at REAL, delivered_at REAL,
    objects TEXT NOT NULL DEFAULT '', detail TEXT, PRIMARY KEY (job_id, destination))""",
    "CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at)",
)


def test_a_database_from_before_migrations_upgrades_in_place(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    with sqlite3.connect(path) as db:
        for statement in TODAY:
            db.execute(statement)
        db.executemany(
            "INSERT INTO jobs (id, state, created_at, updated_at, slices_total, attempts,"
            " owner) VALUES (?, ?, ?, ?, 40, ?, 'alice')",
            [("done", "succeeded", 1.0, 2.0, 1), ("left", "running", 3.0, 4.0, 1)])
        db.execute("INSERT INTO deliveries (job_id, destination, state, attempts, since,"
                   " delivered_at, objects) VALUES ('done', 'pacs', 'delivered', 1, 2.0, 2.5,"
                   " 'seg.dcm,sr.dcm')")
    db.close()
    jobs = JobStore(SqliteDatabase(path))
    done = jobs.get("done")
    assert done is not None
    assert (done.state, done.owner, done.slices_total, done.created_at, done.worker) == (
        JobState.SUCCEEDED, "alice", 40, 1.0, None)
    [delivery] = jobs.deliveries.of_job("done")
    assert (delivery.state, delivery.objects, delivery.delivered_at) == (
        DeliveryState.DELIVERED, ("seg.dcm", "sr.dcm"), 2.5)
    # Left running by a process of before leases: it has none, so it is claimed at once.
    resumed = jobs.claim("w", lease_s=30)
    assert resumed is not None and (resumed.id, resumed.attempts) == ("left", 2)
    with jobs.transaction() as cur:
        assert [row[0] for row in cur.execute("SELECT version FROM schema_migrations")
                .fetchall()] == [m.version for m in MIGRATIONS]
    assert resumed.priority_name == "routine"  # the jobs of before priorities are routine


@pytest.mark.parametrize(("values", "message"), [
    ({"database_url": "mysql://db/jobs"}, "postgres"),
    ({"job_lease_s": 10, "job_heartbeat_s": 10}, "shorter than job_lease_s"),
])
def test_database_settings_that_cannot_work_stop_the_start(values: dict[str, object],
                                                           message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**values)  # type: ignore[arg-type]
    defaults = Settings()
    assert (defaults.database_url, defaults.job_lease_s, defaults.job_heartbeat_s,
            defaults.job_max_attempts) == (None, 30.0, 10.0, 3)
