"""Job states in SQLite, so that a restart loses no study.

A job moves ``queued -> running -> succeeded | failed``. On start-up, jobs left ``queued``
or ``running`` by a previous process are queued again (their upload is still on disk)
until they have been tried ``max_attempts`` times, then failed with a reason
(:func:`api.study.runner.resume_unfinished`).

Each job has an ``owner``: the client that submitted it. Jobs stored before owners existed
have none (the column is added when such a database is opened) and only an admin sees them.
"""

from __future__ import annotations

import enum
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.study import deliveries

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
    error_detail TEXT,
    owner TEXT
)
"""
# Listing pages walk (created_at, id) newest first, per owner or across all of them.
INDEXES = (
    "CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner, created_at, id)",
    "CREATE INDEX IF NOT EXISTS jobs_by_time ON jobs (created_at, id)",
)
COLUMNS = ("id, state, created_at, updated_at, slices_total, slices_done, attempts,"
           " error_type, error_title, error_status, error_detail, owner")


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
    owner: str | None = None  # the submitting client; None: stored before owners existed


@dataclass(frozen=True)
class Page:
    """Which jobs one page of a listing holds: owner (None: any), states (none: any), where
    it starts and how many."""

    owner: str | None = None
    states: tuple[JobState, ...] = ()
    after: tuple[float, str] | None = None  # the (created_at, id) the last page ended on
    limit: int = 50


class JobStore:
    """Job rows in one SQLite file; safe to call from several threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(SCHEMA)
        _add_owner_column(self._db)
        for index in INDEXES:
            self._db.execute(index)
        deliveries.create_schema(self._db.cursor())
        self.deliveries = deliveries.DeliveryLedger(self)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _cursor(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            yield self._db.cursor()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        """A cursor whose statements commit together, or not at all."""
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    def create(self, job_id: str, slices_total: int = 0, owner: str | None = None) -> Job:
        """A queued job of ``owner``; ``slices_total`` is known from the header pass."""
        now = time.time()
        with self._cursor() as cur:
            cur.execute(
                "INSERT INTO jobs (id, state, created_at, updated_at, slices_total, owner)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (job_id, JobState.QUEUED.value, now, now, slices_total, owner),
            )
        job = self.get(job_id)
        assert job is not None
        return job

    def get(self, job_id: str) -> Job | None:
        with self._cursor() as cur:
            row = cur.execute(f"SELECT {COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _job(row)

    def page(self, page: Page) -> list[Job]:
        """Up to ``page.limit`` jobs, newest first, after ``page.after`` when given."""
        where, values = _page_filter(page)
        with self._cursor() as cur:
            rows = cur.execute(
                f"SELECT {COLUMNS} FROM jobs {where}"
                " ORDER BY created_at DESC, id DESC LIMIT ?",
                (*values, page.limit),
            ).fetchall()
        return [_job(row) for row in rows]

    def count_unfinished(self, owner: str) -> int:
        """How many of ``owner``'s jobs are queued or running."""
        with self._cursor() as cur:
            row = cur.execute(
                "SELECT COUNT(*) FROM jobs WHERE owner = ? AND state IN (?, ?)",
                (owner, JobState.QUEUED.value, JobState.RUNNING.value),
            ).fetchone()
        return int(row[0])

    def start(self, job_id: str, slices_total: int) -> None:
        self._update(
            job_id,
            "state = ?, slices_total = ?, slices_done = 0, attempts = attempts + 1",
            (JobState.RUNNING.value, slices_total),
        )

    def progress(self, job_id: str, slices_done: int) -> None:
        self._update(job_id, "slices_done = ?", (slices_done,))

    def succeed(self, job_id: str, deliver_to: Sequence[str] = ()) -> None:
        """The job succeeded; its SEG and SR are due at ``deliver_to`` (destination names)."""
        now = time.time()
        with self.transaction() as cur:
            cur.execute(
                "UPDATE jobs SET state = ?, slices_done = slices_total, updated_at = ?"
                " WHERE id = ?", (JobState.SUCCEEDED.value, now, job_id))
            if cur.rowcount:
                deliveries.add_pending(cur, job_id, deliver_to, now)

    def fail(self, job_id: str, error: JobError) -> None:
        self._update(
            job_id,
            "state = ?, error_type = ?, error_title = ?, error_status = ?, error_detail = ?",
            (JobState.FAILED.value, error.type, error.title, error.status, error.detail),
        )

    def requeue(self, job_id: str) -> None:
        self._update(job_id, "state = ?, slices_done = 0", (JobState.QUEUED.value,))

    def delete(self, job_id: str) -> bool:
        with self.transaction() as cur:
            cur.execute("DELETE FROM deliveries WHERE job_id = ?", (job_id,))
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


def _job(row: tuple[Any, ...]) -> Job:
    error = JobError(*row[7:11]) if row[7] else None
    return Job(id=row[0], state=JobState(row[1]), created_at=row[2], updated_at=row[3],
               slices_total=row[4], slices_done=row[5], attempts=row[6], error=error,
               owner=row[11])


def _page_filter(page: Page) -> tuple[str, tuple[object, ...]]:
    """The WHERE clause of one page and its values."""
    clauses: list[str] = []
    values: list[object] = []
    if page.owner is not None:
        clauses.append("owner = ?")
        values.append(page.owner)
    if page.states:
        clauses.append(f"state IN ({', '.join('?' * len(page.states))})")
        values.extend(state.value for state in page.states)
    if page.after is not None:
        created_at, job_id = page.after
        clauses.append("(created_at < ? OR (created_at = ? AND id < ?))")
        values.extend((created_at, created_at, job_id))
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), tuple(values)


def _add_owner_column(db: sqlite3.Connection) -> None:
    """Give a database made before owners its ``owner`` column; its rows keep theirs NULL."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    if "owner" in columns:
        return
    try:
        db.execute("ALTER TABLE jobs ADD COLUMN owner TEXT")
    except sqlite3.OperationalError as exc:
        if "duplicate column" not in str(exc):  # another process added it first
            raise
