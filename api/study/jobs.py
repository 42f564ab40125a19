"""Job states in the job database (SQLite by default, PostgreSQL when configured), so that a
restart or a lost worker loses no study.

A job moves ``queued -> running -> succeeded | failed``. A worker *claims* the oldest queued
job (or a running one whose lease has run out: its worker died) and holds a *lease* on it,
renewed by heartbeats; its outcome is written only while it still holds that lease, so a
worker that lost its job to another cannot overwrite the other's outcome. Each claim counts an
attempt; the runner fails a job claimed more than ``max_attempts`` times
(:mod:`api.study.runner`).

Why plain SQL and not a queue library (procrastinate, pgqueuer): both are PostgreSQL only,
while the same claims must run on the SQLite default; and both keep their own job tables
beside ours, where a job's row here is also what the API shows and lists. The claim is one
``UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED)`` on PostgreSQL; on SQLite,
``BEGIN IMMEDIATE`` already serialises writers.

Each job has an ``owner``: the client that submitted it. Jobs stored before owners existed
have none and only an admin sees them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from api.config import Settings
from api.db.connection import Cursor, Database
from api.db.migrations import migrate
from api.db.opening import open_database
from api.schemas.submission import NO_METADATA, SubmissionMetadata
from api.study import deliveries, webhooks
from api.study.backlog import Backlog
from api.study.job_rows import (
    PRIORITY_RANKS,
    IdempotencyKey,
    Job,
    JobError,
    JobState,
    Page,
    PriorityName,
)
from api.study.schema import MIGRATIONS

COLUMNS = ("id, state, created_at, updated_at, slices_total, slices_done, attempts,"
           " error_type, error_title, error_status, error_detail, owner, worker, priority,"
           " metadata")
ERROR_COLUMNS = "error_type = ?, error_title = ?, error_status = ?, error_detail = ?"
# The row types live in job_rows; they are named here too, where callers look for them.
__all__ = ["PRIORITY_RANKS", "IdempotencyKey", "Job", "JobError", "JobState", "JobStore", "Page",
           "PriorityName", "open_job_store"]


def open_job_store(settings: Settings) -> JobStore:
    """The job store of ``settings``: PostgreSQL at ``database_url`` when set, otherwise
    ``data_dir/jobs.sqlite``; migrated to the current schema."""
    return JobStore(open_database(settings.database_url, settings.data_dir / "jobs.sqlite"))


class JobStore:
    """Job rows, and the deliveries ledger beside them; safe to call from several threads."""

    def __init__(self, database: Database) -> None:
        self._db = database
        migrate(database, MIGRATIONS)
        self.deliveries = deliveries.DeliveryLedger(database)
        self.webhooks = webhooks.WebhookLedger(database)
        self.backlog = Backlog(database)  # what the metrics read at scrape time

    def close(self) -> None:
        self._db.close()

    def transaction(self) -> AbstractContextManager[Cursor]:
        """A cursor whose statements commit together, or not at all."""
        return self._db.transaction()

    def create(self, job_id: str, slices_total: int = 0, owner: str | None = None,
               error: JobError | None = None, priority: int = 0,
               metadata: SubmissionMetadata = NO_METADATA,
               key: IdempotencyKey | None = None) -> Job:
        """A queued job of ``owner`` (``slices_total`` from the header pass), or, given an
        ``error``, one that failed before it could be queued.

        Given a ``key`` that ``owner`` has already used, nothing is written and the job
        created under it is returned instead: the caller compares ids to tell.
        """
        now = time.time()
        state = JobState.QUEUED if error is None else JobState.FAILED
        reason = (None,) * 4 if error is None else (
            error.type, error.title, error.status, error.detail)
        stored = None if metadata.is_empty() else metadata.model_dump_json(exclude_none=True)
        with self._db.transaction() as cur:
            cur.execute(
                "INSERT INTO jobs (id, state, created_at, updated_at, slices_total, owner,"
                " error_type, error_title, error_status, error_detail, priority, metadata,"
                " idempotency_key, request_digest)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (owner, idempotency_key) DO NOTHING",
                (job_id, state.value, now, now, slices_total, owner, *reason, priority,
                 stored, key and key.key, key and key.digest),
            )
            created = cur.rowcount > 0
        job = self.get(job_id) if created else self.keyed(owner, key)
        assert job is not None
        return job

    def keyed(self, owner: str | None, key: IdempotencyKey | None,
              since: float = 0.0) -> Job | None:
        """The job ``owner`` created with ``key.key`` since ``since``, or None. A job whose key
        is older than that, or that the service failed (a 5xx), forgets it, so that the key
        may be used again."""
        if key is None:
            return None
        with self._db.transaction() as cur:
            cur.execute("UPDATE jobs SET idempotency_key = NULL, request_digest = NULL"
                        " WHERE owner = ? AND idempotency_key = ? AND (created_at < ?"
                        " OR (state = ? AND error_status >= 500))",
                        (owner, key.key, since, JobState.FAILED.value))
            row = cur.execute(f"SELECT {COLUMNS} FROM jobs WHERE owner = ? AND"
                              " idempotency_key = ?", (owner, key.key)).fetchone()
        return None if row is None else _job(row)

    def digest_of(self, job_id: str) -> str | None:
        """The digest of the request that created ``job_id`` under an idempotency key."""
        with self._db.reading() as cur:
            row = cur.execute("SELECT request_digest FROM jobs WHERE id = ?",
                              (job_id,)).fetchone()
        return None if row is None else row[0]

    def get(self, job_id: str) -> Job | None:
        with self._db.reading() as cur:
            row = cur.execute(f"SELECT {COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _job(row)

    def page(self, page: Page) -> list[Job]:
        """Up to ``page.limit`` jobs, newest first, after ``page.after`` when given."""
        where, values = _page_filter(page)
        with self._db.reading() as cur:
            rows = cur.execute(
                f"SELECT {COLUMNS} FROM jobs {where}"
                " ORDER BY created_at DESC, id DESC LIMIT ?",
                (*values, page.limit),
            ).fetchall()
        return [_job(row) for row in rows]

    def count_unfinished(self, owner: str) -> int:
        """How many of ``owner``'s jobs are queued or running."""
        with self._db.reading() as cur:
            row = cur.execute(
                "SELECT COUNT(*) FROM jobs WHERE owner = ? AND state IN (?, ?)",
                (owner, JobState.QUEUED.value, JobState.RUNNING.value),
            ).fetchone()
        return int(row[0]) if row else 0

    def ping(self) -> None:
        """Nothing, once the database answered (StorageError when it does not)."""
        with self._db.reading() as cur:
            cur.execute("SELECT 1").fetchone()

    def claim(self, worker: str, lease_s: float) -> Job | None:
        """The oldest job that is queued, or running on a lease that has run out, now running
        for ``worker`` until ``lease_s`` from now, with one more attempt; None when none is."""
        clock = self._db.dialect.clock
        with self._db.transaction() as cur:
            rows = cur.execute(
                f"UPDATE jobs SET state = ?, worker = ?, lease_until = {clock} + ?,"
                " attempts = attempts + 1, slices_done = 0, updated_at = ?"
                " WHERE id = (SELECT id FROM jobs WHERE state = ? OR (state = ? AND"
                f" (lease_until IS NULL OR lease_until < {clock}))"
                f" ORDER BY priority DESC, created_at, id LIMIT 1{self._db.dialect.skip_locked})"
                f" RETURNING {COLUMNS}",
                (JobState.RUNNING.value, worker, lease_s, time.time(),
                 JobState.QUEUED.value, JobState.RUNNING.value),
            ).fetchall()
        return _job(rows[0]) if rows else None

    def renew(self, job_id: str, worker: str, lease_s: float) -> bool:
        """Extend ``worker``'s lease on a running job; False when the job is gone or another
        worker holds it now."""
        with self._db.transaction() as cur:
            cur.execute(f"UPDATE jobs SET lease_until = {self._db.dialect.clock} + ?"
                        " WHERE id = ? AND state = ? AND worker = ?",
                        (lease_s, job_id, JobState.RUNNING.value, worker))
            return cur.rowcount > 0

    def release(self, job_id: str, worker: str) -> bool:
        """Queue again a job ``worker`` holds (it is stopping), for any worker to claim now."""
        with self._db.transaction() as cur:
            cur.execute("UPDATE jobs SET state = ?, worker = NULL, lease_until = NULL,"
                        " slices_done = 0, updated_at = ? WHERE id = ? AND state = ?"
                        " AND worker = ?", (JobState.QUEUED.value, time.time(), job_id,
                                            JobState.RUNNING.value, worker))
            return cur.rowcount > 0

    def start(self, job_id: str, slices_total: int) -> None:
        """The running job's series is read: ``slices_total`` slices, none done yet."""
        self._update_running(job_id, "slices_total = ?, slices_done = 0", (slices_total,))

    def progress(self, job_id: str, slices_done: int) -> None:
        self._update_running(job_id, "slices_done = ?", (slices_done,))

    def succeed(self, job_id: str, deliver_to: Sequence[str] = (),
                worker: str | None = None, callback: str | None = None) -> bool:
        """The job succeeded; its SEG and SR are due at ``deliver_to`` (destination names),
        its event at ``callback``. Given a ``worker``, only while it holds the job; False when
        nothing was written."""
        now = time.time()
        with self._db.transaction() as cur:
            cur.execute(
                "UPDATE jobs SET state = ?, slices_done = slices_total, lease_until = NULL,"
                f" updated_at = ? WHERE id = ?{_held(worker)}",
                (JobState.SUCCEEDED.value, now, job_id, *_holder(worker)))
            if cur.rowcount == 0:
                return False
            deliveries.add_pending(cur, job_id, deliver_to, now)
            if callback is not None:
                webhooks.add_event(cur, job_id, "study.succeeded", callback, now)
        return True

    def fail(self, job_id: str, error: JobError, worker: str | None = None,
             callback: str | None = None) -> bool:
        """The job failed with ``error``, its event due at ``callback``; given a ``worker``,
        only while it holds the job."""
        now = time.time()
        with self._db.transaction() as cur:
            cur.execute(
                f"UPDATE jobs SET state = ?, {ERROR_COLUMNS}, lease_until = NULL,"
                f" updated_at = ? WHERE id = ?{_held(worker)}",
                (JobState.FAILED.value, error.type, error.title, error.status, error.detail,
                 now, job_id, *_holder(worker)))
            if cur.rowcount == 0:
                return False
            if callback is not None:
                webhooks.add_event(cur, job_id, "study.failed", callback, now)
        return True

    def delete(self, job_id: str) -> bool:
        with self._db.transaction() as cur:
            cur.execute("DELETE FROM deliveries WHERE job_id = ?", (job_id,))
            cur.execute("DELETE FROM webhooks WHERE job_id = ?", (job_id,))
            cur.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            return cur.rowcount > 0

    def expired(self, older_than: float) -> list[str]:
        """Finished jobs last updated before ``older_than`` (epoch seconds)."""
        with self._db.reading() as cur:
            rows = cur.execute(
                "SELECT id FROM jobs WHERE state IN (?, ?) AND updated_at < ?",
                (JobState.SUCCEEDED.value, JobState.FAILED.value, older_than),
            ).fetchall()
        return [row[0] for row in rows]

    def _update_running(self, job_id: str, assignments: str, values: tuple[object, ...]) -> None:
        # Only a running job: a worker that lost its job never reopens a finished one.
        with self._db.transaction() as cur:
            cur.execute(
                f"UPDATE jobs SET {assignments}, updated_at = ? WHERE id = ? AND state = ?",
                (*values, time.time(), job_id, JobState.RUNNING.value),
            )


def _held(worker: str | None) -> str:
    return "" if worker is None else " AND state = ? AND worker = ?"


def _holder(worker: str | None) -> Iterator[str]:
    if worker is not None:
        yield from (JobState.RUNNING.value, worker)


def _job(row: tuple[Any, ...]) -> Job:
    error = JobError(*row[7:11]) if row[7] else None
    return Job(id=row[0], state=JobState(row[1]), created_at=row[2], updated_at=row[3],
               slices_total=row[4], slices_done=row[5], attempts=row[6], error=error,
               owner=row[11], worker=row[12], priority=row[13],
               metadata=NO_METADATA if row[14] is None
               else SubmissionMetadata.model_validate_json(row[14]))


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
