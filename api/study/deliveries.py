"""Where each finished study's SEG and SR go, and how far they got: rows beside the jobs.

A job that succeeds gets one row per destination configured for its client, in the same
transaction that marks it succeeded, so that a crash between the two loses no delivery. A row
moves ``pending -> delivered | failed``; a pending row is due at ``next_attempt_at`` and keeps
the last attempt's reason in ``detail``. Rows go with their job when it is deleted.
"""

from __future__ import annotations

import enum
import sqlite3
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS deliveries (
        job_id TEXT NOT NULL,
        destination TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        since REAL NOT NULL,
        next_attempt_at REAL,
        last_attempt_at REAL,
        delivered_at REAL,
        objects TEXT NOT NULL DEFAULT '',
        detail TEXT,
        PRIMARY KEY (job_id, destination)
    )
    """,
    "CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_attempt_at)",
)
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


class Transactions(Protocol):
    """The job store's connection, one transaction at a time."""

    def transaction(self) -> AbstractContextManager[sqlite3.Cursor]: ...


def add_pending(cur: sqlite3.Cursor, job_id: str, destinations: Sequence[str], now: float) -> None:
    """Rows due now for ``job_id`` (inside the caller's transaction)."""
    cur.executemany(
        "INSERT OR REPLACE INTO deliveries (job_id, destination, state, since, next_attempt_at)"
        " VALUES (?, ?, ?, ?, ?)",
        [(job_id, name, DeliveryState.PENDING.value, now, now) for name in destinations],
    )


class DeliveryLedger:
    """The deliveries table, through the job store's connection."""

    def __init__(self, db: Transactions) -> None:
        self._db = db

    def of_job(self, job_id: str) -> list[Delivery]:
        return self._select("WHERE job_id = ? ORDER BY destination", (job_id,))

    def due(self, now: float, limit: int = 16) -> list[Delivery]:
        """Pending rows whose next attempt is due, the longest waiting first."""
        return self._select(
            "WHERE state = ? AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
            (DeliveryState.PENDING.value, now, limit),
        )

    def next_due(self) -> float | None:
        """When the earliest pending row is due; None when nothing is pending."""
        with self._db.transaction() as cur:
            row = cur.execute("SELECT MIN(next_attempt_at) FROM deliveries WHERE state = ?",
                              (DeliveryState.PENDING.value,)).fetchone()
        return None if row[0] is None else float(row[0])

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

    def resend(self, job_id: str, destinations: Sequence[str]) -> None:
        """``destinations`` due again now for ``job_id``, from their first attempt."""
        with self._db.transaction() as cur:
            add_pending(cur, job_id, destinations, time.time())

    def _select(self, where: str, values: tuple[object, ...]) -> list[Delivery]:
        with self._db.transaction() as cur:
            rows = cur.execute(f"SELECT {COLUMNS} FROM deliveries {where}", values).fetchall()
        return [_delivery(row) for row in rows]

    def _update(self, job_id: str, destination: str, assignments: str,
                values: tuple[object, ...]) -> None:
        # A row deleted meanwhile (its job was) updates nothing: that is right.
        with self._db.transaction() as cur:
            cur.execute(f"UPDATE deliveries SET {assignments} WHERE job_id = ? AND destination = ?",
                        (*values, job_id, destination))


def create_schema(cur: sqlite3.Cursor) -> None:
    for statement in SCHEMA:
        cur.execute(statement)


def _delivery(row: tuple[Any, ...]) -> Delivery:
    return Delivery(job_id=row[0], destination=row[1], state=DeliveryState(row[2]),
                    attempts=row[3], since=row[4], next_attempt_at=row[5],
                    last_attempt_at=row[6], delivered_at=row[7],
                    objects=tuple(name for name in row[8].split(",") if name), detail=row[9])
