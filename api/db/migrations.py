"""Versioned schema migrations, run at start on either database.

Each :class:`Migration` is a numbered step with its statements for SQLite and for
PostgreSQL; ``schema_migrations`` records the steps a database has had. All pending steps
run in one transaction (both databases change their schema transactionally), so a start that
fails half-way leaves the schema as it was.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from api.db.connection import Cursor, Database

log = logging.getLogger(__name__)

# A statement, or a step that must look before it changes (a column an old database lacks).
Statement = str | Callable[[Cursor], None]

LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at DOUBLE PRECISION NOT NULL
)
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sqlite: tuple[Statement, ...]
    postgres: tuple[Statement, ...]

    def statements(self, dialect: str) -> tuple[Statement, ...]:
        return self.sqlite if dialect == "sqlite" else self.postgres


def migrate(db: Database, migrations: Sequence[Migration]) -> list[int]:
    """Apply the steps ``db`` has not had, in order; the versions applied."""
    numbers = [m.version for m in migrations]
    if numbers != sorted(set(numbers)):
        raise ValueError(f"migration versions must increase: {numbers}")
    applied = []
    with db.transaction() as cur:
        if db.dialect.migration_lock:
            cur.execute(db.dialect.migration_lock)
        cur.execute(LEDGER)
        done = {int(row[0]) for row in cur.execute("SELECT version FROM schema_migrations")
                .fetchall()}
        for migration in migrations:
            if migration.version in done:
                continue
            for statement in migration.statements(db.dialect.name):
                if callable(statement):
                    statement(cur)
                else:
                    cur.execute(statement)
            cur.execute("INSERT INTO schema_migrations (version, name, applied_at)"
                        " VALUES (?, ?, ?)", (migration.version, migration.name, time.time()))
            applied.append(migration.version)
    newer = sorted(done - set(numbers))
    if newer:
        log.warning("the job database has schema versions %s this code does not know", newer)
    if applied:
        log.info("job database migrated to schema version %d", applied[-1])
    return applied
