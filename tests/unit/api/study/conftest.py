"""The job store on each database: SQLite in a temporary folder, and a fresh database of a
real PostgreSQL cluster (tests/postgres.py); the job store's and ledger's tests run on both."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from api.db.opening import open_database
from api.study.jobs import JobStore

OpenStore = Callable[[], JobStore]


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """Opens a job store on this test's database: each call a connection of its own, as
    another worker process would have; all closed after the test."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    opened: list[JobStore] = []

    def open_one() -> JobStore:
        opened.append(JobStore(open_database(url, tmp_path / "jobs.sqlite")))
        return opened[-1]

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def jobs(open_store: OpenStore) -> JobStore:
    return open_store()
