"""Which job database a URL names."""

from __future__ import annotations

from pathlib import Path

from api.db.connection import Database


def open_database(url: str | None, sqlite_path: Path) -> Database:
    """PostgreSQL when ``url`` is a ``postgresql://`` URL; otherwise SQLite at ``sqlite_path``."""
    if url:
        from api.db.postgres import PostgresDatabase

        return PostgresDatabase(url)
    from api.db.sqlite import SqliteDatabase

    return SqliteDatabase(sqlite_path)
