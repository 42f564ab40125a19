"""The shared job database: PostgreSQL, through a psycopg connection pool.

Replicas and workers share it; a claim locks the row it takes (``FOR UPDATE SKIP LOCKED``),
so two workers never take the same job and neither waits for the other.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from api.db.connection import Dialect, PlaceholderCursor
from api.errors import StorageError

POSTGRES = Dialect(
    name="postgres",
    clock="CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)",
    skip_locked=" FOR UPDATE SKIP LOCKED",
    # Replicas start together: one runs the migrations, the others wait and find them done.
    migration_lock="SELECT pg_advisory_xact_lock(2186515726)",
)


class PostgresDatabase:
    """A pool of connections to ``url``; every block is one transaction on one connection."""

    dialect = POSTGRES

    def __init__(self, url: str, max_connections: int = 10, timeout_s: float = 10.0) -> None:
        self._pool = ConnectionPool(url, min_size=1, max_size=max_connections,
                                    timeout=timeout_s, open=False, name="bonemets-jobs")
        self._pool.open()
        try:
            self._pool.wait(timeout=timeout_s)
        except PoolTimeout as exc:
            self._pool.close()
            raise StorageError(
                f"the job database cannot be reached in {timeout_s:.0f} s"
            ) from exc

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def transaction(self) -> Iterator[PlaceholderCursor]:
        try:
            # The pool commits when the block ends and rolls back when it raises.
            with self._pool.connection() as conn, conn.cursor() as cur:
                yield PlaceholderCursor(cur, "%s")
        except (PoolTimeout, psycopg.OperationalError) as exc:
            raise StorageError(f"the job database is unavailable: {type(exc).__name__}") from exc

    reading = transaction
