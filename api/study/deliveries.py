"""Where each finished study's SEG and SR go, and how far they got: rows beside the jobs.

A job that succeeds gets one row per destination configured for its client, in the same
transaction that marks it succeeded, so that a crash between the two loses no delivery. A row
moves ``pending -> delivered | failed``; a pending row is due at ``next_attempt_at`` and keeps
the last attempt's reason in ``detail``. Rows go with their job when it is deleted.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from api.db.connection import Cursor, Database

COLUMNS = ("job_id, destination, state, attempts, since, next_attempt_at, last_attempt_at,"
           " delivered_at, objects, detail")


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True)
class Delivery:
    job_id: str
    destination: str
    state: DeliveryState
    attempts: int
    since: float  # when this round of delivery began (the job's success, or a resend)
    next_attempt_at: float | None  # pending only
    last_attempt_at: float | None
    delivered_at: float | None
    objects: tuple[str, ...]  # what the last attempt sent: seg.dcm, sr.dcm
    detail: str | None  # the last failure's reason, or a note on what was sent


def add_pending(cur: Cursor, job_id: str, destinations: Sequence[str], now: float) -> None:
    """Rows due now for ``job_id`` (inside the caller's transaction)."""
    cur.executemany(
        "INSERT INTO deliveries (job_id, destination, state, since, next_attempt_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (job_id, destination) DO UPDATE SET"
        " state = excluded.state, attempts = 0, since = excluded.since,"
        " next_attempt_at = excluded.next_attempt_at, last_attempt_at = NULL,"
        " delivered_at = NULL, objects = '', detail = NULL",
        [(job_id, name, DeliveryState.PENDING.value, now, now) for name in destinations],
    )


class DeliveryLedger:
    """The deliveries table, in the job database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def of_job(self, job_id: str) -> list[Delivery]:
        return self._select("WHERE job_id = ? ORDER BY destination", (job_id,))

    def due(self, now: float, limit: int = 16) -> list[Delivery]:
        """Pending rows whose next attempt is due, the longest waiting first."""
        return self._select(
            "WHERE state = ? AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
            (DeliveryState.PENDING.value, now, limit),
        )

    def claim(self, now: float, lease_s: float, limit: int = 16) -> list[Delivery]:
        """Due rows taken for one attempt: not due again for ``lease_s``, so that another
        process sharing the database does not send them too; the attempt's outcome sets
        their next time (a sender that died leaves them due once the lease is over)."""
        with self._db.transaction() as cur:
            rows = cur.execute(
                "UPDATE deliveries SET next_attempt_at = ? WHERE (job_id, destination) IN"
                " (SELECT job_id, destination FROM deliveries WHERE state = ? AND"
                " next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?"
                f"{self._db.dialect.skip_locked}) RETURNING {COLUMNS}",
                (now + lease_s, DeliveryState.PENDING.value, now, limit),
            ).fetchall()
        return [_delivery(row) for row in rows]

    def next_due(self) -> float | None:
        """When the earliest pending row is due; None when nothing is pending."""
        with self._db.reading() as cur:
            row = cur.execute("SELECT MIN(next_attempt_at) FROM deliveries WHERE state = ?",
                              (DeliveryState.PENDING.value,)).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def delivered(self, job_id: str, destination: str, objects: Sequence[str],
                  note: str | None) -> None:
        now = time.time()
        self._update(job_id, destination,
                     "state = ?, attempts = attempts + 1, next_attempt_at = NULL,"
                     " last_attempt_at = ?, delivered_at = ?, objects = ?, detail = ?",
                     (DeliveryState.DELIVERED.value, now, now, ",".join(objects), note))

    def retry(self, job_id: str, destination: str, at: float, objects: Sequence[str],
              detail: str) -> None:
        """The attempt failed and will be tried again at ``at``."""
        self._update(job_id, destination,
                     "attempts = attempts + 1, next_attempt_at = ?, last_attempt_at = ?,"
                     " objects = ?, detail = ?",
                     (at, time.time(), ",".join(objects), detail))

    def failed(self, job_id: str, destination: str, objects: Sequence[str], detail: str) -> None:
        """The attempt failed and will not be tried again (until a resend)."""
        self._update(job_id, destination,
                     "state = ?, attempts = attempts + 1, next_attempt_at = NULL,"
                     " last_attempt_at = ?, objects = ?, detail = ?",
                     (DeliveryState.FAILED.value, time.time(), ",".join(objects), detail))

    def release(self, job_id: str, destination: str) -> None:
        """A claimed row due again now, its attempt not made (the sender is stopping)."""
        self._update(job_id, destination, "next_attempt_at = ?", (time.time(),), pending=True)

    def resend(self, job_id: str, destinations: Sequence[str]) -> None:
        """``destinations`` due again now for ``job_id``, from their first attempt."""
        with self._db.transaction() as cur:
            add_pending(cur, job_id, destinations, time.time())

    def _select(self, where: str, values: tuple[object, ...]) -> list[Delivery]:
        with self._db.reading() as cur:
            rows = cur.execute(f"SELECT {COLUMNS} FROM deliveries {where}", values).fetchall()
        return [_delivery(row) for row in rows]

    def _update(self, job_id: str, destination: str, assignments: str,
                values: tuple[object, ...], pending: bool = False) -> None:
        # A row deleted meanwhile (its job was) updates nothing: that is right.
        only = " AND state = ?" if pending else ""
        with self._db.transaction() as cur:
            cur.execute(f"UPDATE deliveries SET {assignments} WHERE job_id = ? AND destination = ?"
                        + only, (*values, job_id, destination,
                                 *((DeliveryState.PENDING.value,) if pending else ())))


def _delivery(row: tuple[Any, ...]) -> Delivery:
    return Delivery(job_id=row[0], destination=row[1], state=DeliveryState(row[2]),
                    attempts=row[3], since=row[4], next_attempt_at=row[5],
                    last_attempt_at=row[6], delivered_at=row[7],
                    objects=tuple(name for name in row[8].split(",") if name), detail=row[9])
