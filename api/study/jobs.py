"""Job states in SQLite, so that a restart loses no study.

A job moves ``queued -> running -> succeeded | failed``. On start-up, jobs left ``queued``
or ``running`` by a previous process are queued again (their upload is still on disk)
until they have been tried ``max_attempts`` times, then failed with a reason
(:func:`api.study.runner.resume_unfinished`).
"""

from __future__ import annotations

import enum
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    slices_total INTEGER NOT NULL DEFAULT 0,
    slices_done INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    error_type TEXT,
    error_title TEXT,
    error_status INTEGER,
    error_detail TEXT
)
"""


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED)


@dataclass(frozen=True)
class JobError:
    """Why a job failed, in the words of a problem+json body."""

    type: str
    title: str
    status: int
    detail: str


@dataclass(frozen=True)
class Job:
    id: str
    state: JobState
    created_at: float
    updated_at: float
    slices_total: int
    slices_done: int
    attempts: int
    error: JobError | None


class JobStore:
    """Job rows in one SQLite file; safe to call from several threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _cursor(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            yield self._db.cursor()

    def create(self, job_id: str, slices_total: int = 0) -> Job:
        """A queued job; ``slices_total`` is known from the header pass before any decoding."""
        now = time.time()
        with self._cursor() as cur:
            cur.execute(
                "INSERT INTO jobs (id, state, created_at, updated_at, slices_total)"
                " VALUES (?, ?, ?, ?, ?)",
                (job_id, JobState.QUEUED.value, now, now, slices_total),
            )
        job = self.get(job_id)
        assert job is not None
        return job

    def get(self, job_id: str) -> Job | None:
        with self._cursor() as cur:
            row = cur.execute(
                "SELECT id, state, created_at, updated_at, slices_total, slices_done, attempts,"
                " error_type, error_title, error_status, error_detail FROM jobs WHERE id = ?",
                (job_id,),
            ).fetchone()
        if row is None:
            return None
        error = JobError(row[7], row[8], row[9], row[10]) if row[7] else None
        return Job(row[0], JobState(row[1]), row[2], row[3], row[4], row[5], row[6], error)

    def start(self, job_id: str, slices_total: int) -> None:
        self._update(
            job_id,
            "state = ?, slices_total = ?, slices_done = 0, attempts = attempts + 1",
            (JobState.RUNNING.value, slices_total),
        )

    def progress(self, job_id: str, slices_done: int) -> None:
        self._update(job_id, "slices_done = ?", (slices_done,))

    def succeed(self, job_id: str) -> None:
        self._update(job_id, "state = ?, slices_done = slices_total", (JobState.SUCCEEDED.value,))

    def fail(self, job_id: str, error: JobError) -> None:
        self._update(
            job_id,
            "state = ?, error_type = ?, error_title = ?, error_status = ?, error_detail = ?",
            (JobState.FAILED.value, error.type, error.title, error.status, error.detail),
        )

    def requeue(self, job_id: str) -> None:
        self._update(job_id, "state = ?, slices_done = 0", (JobState.QUEUED.value,))

    def delete(self, job_id: str) -> bool:
        with self._cursor() as cur:
            cur.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            return cur.rowcount > 0

    def unfinished(self) -> list[Job]:
        """Jobs a previous process left queued or running, oldest first."""
        with self._cursor() as cur:
            ids = [
                row[0]
                for row in cur.execute(
                    "SELECT id FROM jobs WHERE state IN (?, ?) ORDER BY created_at",
                    (JobState.QUEUED.value, JobState.RUNNING.value),
                )
            ]
        return [job for job in (self.get(i) for i in ids) if job is not None]

    def expired(self, older_than: float) -> list[str]:
        """Finished jobs last updated before ``older_than`` (epoch seconds)."""
        with self._cursor() as cur:
            return [
                row[0]
                for row in cur.execute(
                    "SELECT id FROM jobs WHERE state IN (?, ?) AND updated_at < ?",
                    (JobState.SUCCEEDED.value, JobState.FAILED.value, older_than),
                )
            ]

    def _update(self, job_id: str, assignments: str, values: tuple[object, ...]) -> None:
        with self._cursor() as cur:
            cur.execute(
                f"UPDATE jobs SET {assignments}, updated_at = ? WHERE id = ?",
                (*values, time.time(), job_id),
            )
