"""A real PostgreSQL for the tests: Debian's server binaries, our own cluster.

The ``postgres`` fixture (one per session) runs ``initdb`` and ``pg_ctl`` from
``/usr/lib/postgresql/*/bin`` in a temporary folder, listening on a free port of 127.0.0.1
only, as the ``postgres`` user when the tests run as root (initdb refuses root); it stops the
cluster and removes the folder at the end. Each test asks it for a fresh database::

    def test_something(postgres: PostgresCluster) -> None:
        url = postgres.create_database()  # postgresql://postgres@127.0.0.1:PORT/test_…
        ...

Where the server is not installed, the tests that need it skip, saying how to install it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

MISSING = "PostgreSQL (Debian's postgresql) is not installed: make system-packages"


def server_binaries() -> Path | None:
    """The newest installed server's bin folder, holding initdb and pg_ctl."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda path: int(Path(path).parent.parent.name))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresCluster:
    """A running cluster on 127.0.0.1:``port``, trusting local connections."""

    def __init__(self, binaries: Path, folder: Path) -> None:
        self.binaries = binaries
        self.folder = folder
        self.port = _free_port()
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(folder, user.pw_uid, user.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]

    def start(self) -> None:
        data = self.folder / "data"
        self._run("initdb", "-D", str(data), "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--no-locale")
        # Durability is not what these tests are about: no fsync keeps them fast.
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
                   " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                   " -c max_connections=200")
        self._run("pg_ctl", "-D", str(data), "-l", str(self.folder / "server.log"),
                  "-o", options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new, empty database; its URL."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        self._admin(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        self._admin(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")

    def _admin(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(statement.encode())

    def _run(self, program: str, *args: str) -> None:
        command = [*self._as_user, str(self.binaries / program), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                              cwd=self.folder, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr[-2000:]}")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster for the session; skips where the server is not installed."""
    binaries = server_binaries()
    if binaries is None:
        pytest.skip(MISSING)
    # Not under pytest's own temporary folder: that one is closed to the postgres user.
    folder = Path(tempfile.mkdtemp(prefix="bonemets-postgres-"))
    cluster = PostgresCluster(binaries, folder)
    try:
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(RuntimeError):
            cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres: PostgresCluster) -> Iterator[str]:
    """A fresh database of the session's cluster, dropped after the test."""
    url = postgres.create_database()
    yield url
    postgres.drop_database(url)
