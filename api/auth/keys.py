"""API keys for machine clients: made once, shown once, stored only as a keyed hash.

A key reads ``bm_<id>_<secret>``: the id finds its row, the secret is never stored. What is
stored is HMAC-SHA256 of the whole key under a server secret (the *pepper*: a file beside the
SQLite database, readable by the service alone, or ``BONEMETS_KEY_PEPPER``, which every
replica sharing a PostgreSQL database must be given), so a copy of the database alone
verifies nothing and cannot be turned back into keys. Keys carry 256 bits of randomness, so
a keyed hash is as strong as a slow one here, and costs microseconds per request instead of
tens of milliseconds.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from api.auth.principal import Principal, Scope
from api.db.connection import Database
from api.db.opening import open_database

KEY_PATTERN = re.compile(r"bm_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")  # used with fullmatch
PEPPER_BYTES = 32
CLIENT_PATTERN = re.compile(r"[A-Za-z0-9._@-]{1,64}")
KEYS_FILE = "keys.sqlite"

# The table's first version, made where it is missing; a change to it would be a numbered
# migration (api/db/migrations.py), as the job tables' are.
SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    client TEXT NOT NULL,
    scopes TEXT NOT NULL,
    digest {blob} NOT NULL,
    created_at {real} NOT NULL,
    revoked_at {real}
)
"""
TYPES = {"sqlite": {"blob": "BLOB", "real": "REAL"},
         "postgres": {"blob": "BYTEA", "real": "DOUBLE PRECISION"}}


@dataclass(frozen=True)
class ApiKey:
    """A stored key, without its secret."""

    id: str
    client: str
    scopes: frozenset[str]
    created_at: float
    revoked_at: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def parse_scopes(text: Iterable[str] | str) -> frozenset[str]:
    """Scopes from ``studies:read studies:write`` (or a list); unknown names are refused."""
    names = text.replace(",", " ").split() if isinstance(text, str) else list(text)
    known = {scope.value for scope in Scope}
    unknown = sorted(set(names) - known)
    if unknown:
        raise ValueError(f"unknown scopes {unknown}; known: {sorted(known)}")
    return frozenset(names)


class KeyStore:
    """API keys in the database ``db``, hashed under ``pepper``."""

    def __init__(self, db: Database, pepper: bytes, where: str) -> None:
        if len(pepper) != PEPPER_BYTES:
            raise ValueError(f"the key pepper must be {PEPPER_BYTES} bytes")
        self._db = db
        self._pepper = pepper
        self.where = where  # said to users: the file, or the shared database
        with db.transaction() as cur:
            cur.execute(SCHEMA.format(**TYPES[db.dialect.name]))

    def close(self) -> None:
        self._db.close()

    def create(self, client: str, scopes: Iterable[str]) -> tuple[ApiKey, str]:
        """A new key for ``client``: its record, and the key itself (shown once, never kept)."""
        if not CLIENT_PATTERN.fullmatch(client):
            raise ValueError(f"a client name is 1-64 of A-Z a-z 0-9 . _ @ -, not {client!r}")
        granted = parse_scopes(scopes)
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        key = f"bm_{key_id}_{secret}"
        now = time.time()
        with self._db.transaction() as cur:
            cur.execute(
                "INSERT INTO api_keys (id, client, scopes, digest, created_at) VALUES (?,?,?,?,?)",
                (key_id, client, " ".join(sorted(granted)), self._digest(key), now),
            )
        return ApiKey(key_id, client, granted, now, None), key

    def list(self) -> list[ApiKey]:
        with self._db.reading() as cur:
            rows = cur.execute(
                "SELECT id, client, scopes, created_at, revoked_at FROM api_keys"
                " ORDER BY created_at"
            ).fetchall()
        return [_record(row) for row in rows]

    def revoke(self, key_id: str) -> bool:
        """Revoke a key by its id; False when there is no such active key."""
        with self._db.transaction() as cur:
            cur.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (time.time(), key_id),
            )
            return cur.rowcount == 1

    def verify(self, key: str) -> Principal | None:
        """The client a presented key belongs to; None for a malformed, unknown or revoked key."""
        match = KEY_PATTERN.fullmatch(key)
        if match is None:
            return None
        with self._db.reading() as cur:
            row = cur.execute(
                "SELECT client, scopes, digest, revoked_at FROM api_keys WHERE id = ?",
                (match.group(1),),
            ).fetchone()
        if row is None or row[3] is not None:
            return None
        if not hmac.compare_digest(bytes(row[2]), self._digest(key)):
            return None
        return Principal(row[0], frozenset(row[1].split()), method="api-key")

    def _digest(self, key: str) -> bytes:
        return hmac.new(self._pepper, key.encode(), hashlib.sha256).digest()


def open_key_store(data_dir: Path, database_url: str | None = None,
                   pepper_hex: str | None = None) -> KeyStore:
    """The gateway's keys: ``<data_dir>/keys.sqlite`` with its pepper file beside it, or the
    shared PostgreSQL database, whose replicas must all be given ``pepper_hex``."""
    pepper = bytes.fromhex(pepper_hex) if pepper_hex else None
    if database_url:
        if pepper is None:
            raise ValueError("BONEMETS_KEY_PEPPER must be set with BONEMETS_DATABASE_URL: every"
                             " replica hashes API keys under it (64 hex digits, e.g. from"
                             " `openssl rand -hex 32`)")
        return KeyStore(open_database(database_url, data_dir / KEYS_FILE), pepper,
                        "the job database")
    path = data_dir / KEYS_FILE
    db = open_database(None, path)
    return KeyStore(db, pepper or _pepper(path.with_suffix(".pepper")), str(path))


def _record(row: tuple[str, str, str, float, float | None]) -> ApiKey:
    return ApiKey(row[0], row[1], frozenset(row[2].split()), row[3], row[4])


def _pepper(path: Path) -> bytes:
    """The server secret under which keys are hashed, made on first use (mode 0600).

    Written whole to a temporary file and then linked into place, so that a process starting
    at the same moment (``serve`` and ``keys create``) never reads a half-written pepper.
    """
    if not path.exists():
        scratch = path.with_name(f"{path.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(PEPPER_BYTES))
        try:
            os.link(scratch, path)
        except FileExistsError:  # another process made it first: theirs is the one
            pass
        finally:
            scratch.unlink()
    pepper = path.read_bytes()
    if len(pepper) != PEPPER_BYTES:
        raise ValueError(f"{path} is not a {PEPPER_BYTES}-byte key pepper")
    return pepper
