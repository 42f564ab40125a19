"""The default job database: one SQLite file in the data directory."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from api.db.connection import Dialect, PlaceholderCursor

SQLITE = Dialect(
    name="sqlite",
    clock="((julianday('now') - 2440587.5) * 86400.0)",
    # BEGIN IMMEDIATE already makes writers take turns, so a claim needs no row lock.
    skip_locked="",
    migration_lock=None,
)


class SqliteDatabase:
    """One connection shared by the process's threads, in turn; other processes on the same
    file (an API and a worker on one machine) wait up to ``busy_timeout_s`` for a write."""

    dialect = SQLITE

    def __init__(self, path: Path, busy_timeout_s: float = 10.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                   timeout=busy_timeout_s)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[PlaceholderCursor]:
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield PlaceholderCursor(cur)
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    @contextmanager
    def reading(self) -> Iterator[PlaceholderCursor]:
        with self._lock:
            yield PlaceholderCursor(self._db.cursor())
