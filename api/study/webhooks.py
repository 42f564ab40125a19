"""The webhook event each finished job owes its caller, and how far it got: rows beside the jobs.

A job that ends (succeeded or failed, after it was queued) with a callback URL gets one row,
in the same transaction that writes its outcome, so that a crash between the two loses no
event. A row moves ``pending -> delivered | failed``; a pending row is due at
``next_attempt_at`` and keeps the last attempt's HTTP status and reason. The event's body is
made from the job when it is sent (api/delivery/webhook_events.py); ``event_id`` stays the
same across retries, so that a receiver can drop a duplicate. Rows go with their job.
"""

from __future__ import annotations

import enum
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

from api.db.connection import Cursor, Database

COLUMNS = ("job_id, event_id, event_type, url, state, attempts, since, next_attempt_at,"
           " last_attempt_at, delivered_at, last_status, detail")

EventType = Literal["study.succeeded", "study.failed"]


class WebhookState(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True)
class Webhook:
    job_id: str
    event_id: str  # the webhook-id header: one per event, the same on every attempt
    event_type: EventType
    url: str  # where it goes: the caller's, never logged
    state: WebhookState
    attempts: int
    since: float  # when the job ended: the event's own time
    next_attempt_at: float | None  # pending only
    last_attempt_at: float | None
    delivered_at: float | None
    last_status: int | None  # the receiver's last HTTP status; None: no answer
    detail: str | None  # the last failure's reason


def add_event(cur: Cursor, job_id: str, event_type: EventType, url: str, now: float) -> None:
    """The event of ``job_id``'s end, due now (inside the caller's transaction)."""
    cur.execute(
        "INSERT INTO webhooks (job_id, event_id, event_type, url, state, since,"
        " next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id) DO UPDATE SET"
        " event_id = excluded.event_id, event_type = excluded.event_type, url = excluded.url,"
        " state = excluded.state, attempts = 0, since = excluded.since,"
        " next_attempt_at = excluded.next_attempt_at, last_attempt_at = NULL,"
        " delivered_at = NULL, last_status = NULL, detail = NULL",
        (job_id, f"msg_{secrets.token_hex(12)}", event_type, url, WebhookState.PENDING.value,
         now, now),
    )


class WebhookLedger:
    """The webhooks table, in the job database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def of_job(self, job_id: str) -> list[Webhook]:
        with self._db.reading() as cur:
            rows = cur.execute(f"SELECT {COLUMNS} FROM webhooks WHERE job_id = ?",
                               (job_id,)).fetchall()
        return [_webhook(row) for row in rows]

    def claim(self, now: float, lease_s: float, limit: int = 16) -> list[Webhook]:
        """Due events taken for one attempt: not due again for ``lease_s``, so that another
        process sharing the database does not send them too (one that died leaves them due
        once the lease is over)."""
        with self._db.transaction() as cur:
            rows = cur.execute(
                "UPDATE webhooks SET next_attempt_at = ? WHERE job_id IN (SELECT job_id FROM"
                " webhooks WHERE state = ? AND next_attempt_at <= ? ORDER BY next_attempt_at"
                f" LIMIT ?{self._db.dialect.skip_locked}) RETURNING {COLUMNS}",
                (now + lease_s, WebhookState.PENDING.value, now, limit),
            ).fetchall()
        return [_webhook(row) for row in rows]

    def next_due(self) -> float | None:
        """When the earliest pending event is due; None when none is pending."""
        with self._db.reading() as cur:
            row = cur.execute("SELECT MIN(next_attempt_at) FROM webhooks WHERE state = ?",
                              (WebhookState.PENDING.value,)).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def delivered(self, job_id: str, status: int) -> None:
        now = time.time()
        self._update(job_id, "state = ?, attempts = attempts + 1, next_attempt_at = NULL,"
                     " last_attempt_at = ?, delivered_at = ?, last_status = ?, detail = NULL",
                     (WebhookState.DELIVERED.value, now, now, status))

    def retry(self, job_id: str, at: float, status: int | None, detail: str) -> None:
        """The attempt failed and will be made again at ``at``."""
        self._update(job_id, "attempts = attempts + 1, next_attempt_at = ?,"
                     " last_attempt_at = ?, last_status = ?, detail = ?",
                     (at, time.time(), status, detail))

    def failed(self, job_id: str, status: int | None, detail: str, attempted: bool = True) -> None:
        """Not sent again: refused, gone, or still failing at the end of the retry time;
        ``attempted`` False when it was refused before any request was made."""
        self._update(job_id, f"state = ?, attempts = attempts + {int(attempted)},"
                     " next_attempt_at = NULL, last_attempt_at = ?, last_status = ?,"
                     " detail = ?", (WebhookState.FAILED.value, time.time(), status, detail))

    def release(self, job_id: str) -> None:
        """A claimed event due again now, its attempt not made (the sender is stopping)."""
        with self._db.transaction() as cur:
            cur.execute("UPDATE webhooks SET next_attempt_at = ? WHERE job_id = ? AND state = ?",
                        (time.time(), job_id, WebhookState.PENDING.value))

    def _update(self, job_id: str, assignments: str, values: tuple[object, ...]) -> None:
        # A row deleted meanwhile (its job was) updates nothing: that is right.
        with self._db.transaction() as cur:
            cur.execute(f"UPDATE webhooks SET {assignments} WHERE job_id = ?",
                        (*values, job_id))


def _webhook(row: tuple[Any, ...]) -> Webhook:
    return Webhook(job_id=row[0], event_id=row[1], event_type=row[2], url=row[3],
                   state=WebhookState(row[4]), attempts=row[5], since=row[6],
                   next_attempt_at=row[7], last_attempt_at=row[8], delivered_at=row[9],
                   last_status=row[10], detail=row[11])
