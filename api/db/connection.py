"""The seam between the job store and its database: a cursor, a transaction, a dialect.

SQL is written once, with ``?`` placeholders; what differs between SQLite and PostgreSQL is
named by the :class:`Dialect` (the database's clock, row locks for claims, the migration
lock), so that the job store's statements are the same text on both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Dialect:
    name: str  # "sqlite" or "postgres": which statements of a migration apply
    clock: str  # SQL: the database's own time in epoch seconds, one clock for every worker
    skip_locked: str  # appended to a claim's SELECT: rows another transaction holds are skipped
    migration_lock: str | None  # SQL run first in a migration: one migrator at a time


class Cursor(Protocol):
    """A DB-API cursor inside one transaction, taking ``?`` placeholders on both databases."""

    @property
    def rowcount(self) -> int: ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...

    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> None: ...

    def fetchone(self) -> tuple[Any, ...] | None: ...

    def fetchall(self) -> list[tuple[Any, ...]]: ...


class Database(Protocol):
    """Transactions on the job database, from any thread."""

    dialect: Dialect

    def transaction(self) -> AbstractContextManager[Cursor]:
        """A cursor whose statements commit together when the block ends, or not at all."""

    def reading(self) -> AbstractContextManager[Cursor]:
        """A cursor for reads (SQLite takes no write lock for it)."""

    def close(self) -> None: ...


class PlaceholderCursor:
    """A DB-API cursor whose ``?`` placeholders become ``placeholder`` (psycopg's ``%s``)."""

    def __init__(self, raw: Any, placeholder: str = "?") -> None:
        self._raw = raw
        self._placeholder = placeholder

    @property
    def rowcount(self) -> int:
        return int(self._raw.rowcount)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> PlaceholderCursor:
        self._raw.execute(self._sql(sql), tuple(params))
        return self

    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> None:
        rows = [tuple(row) for row in params]
        if rows:
            self._raw.executemany(self._sql(sql), rows)

    def fetchone(self) -> tuple[Any, ...] | None:
        row = self._raw.fetchone()
        return None if row is None else tuple(row)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._raw.fetchall()]

    def _sql(self, sql: str) -> str:
        # Our statements hold no literal "?" or "%": the swap is exact.
        return sql if self._placeholder == "?" else sql.replace("?", self._placeholder)
