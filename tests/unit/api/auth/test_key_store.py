"""The API key store: keys verify until revoked, only a keyed hash is stored, the pepper is
made once and whole."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from api.auth.keys import open_key_store


def test_a_key_verifies_until_revoked_and_is_never_stored(tmp_path: Path) -> None:
    store = open_key_store(tmp_path)
    record, key = store.create("pacs", ["studies:write"])
    principal = store.verify(key)
    assert principal is not None and principal.client == "pacs"
    assert principal.scopes == {"studies:write"} and principal.method == "api-key"
    assert store.verify(key + "\n") is None and store.verify(" " + key) is None
    assert store.revoke(record.id) and not store.revoke(record.id)
    assert store.verify(key) is None
    store.close()
    secret = key.split("_", 2)[2].encode()
    assert secret not in (tmp_path / "keys.sqlite").read_bytes()
    with sqlite3.connect(tmp_path / "keys.sqlite") as db:
        assert all(secret not in bytes(row[0]) for row in db.execute("SELECT digest FROM api_keys"))


def test_the_pepper_is_private_made_once_and_needed(tmp_path: Path) -> None:
    first = open_key_store(tmp_path)
    _, key = first.create("ris", [])
    pepper = tmp_path / "keys.pepper"
    assert stat.S_IMODE(pepper.stat().st_mode) == 0o600 and len(pepper.read_bytes()) == 32
    assert not list(tmp_path.glob("*.tmp"))
    second = open_key_store(tmp_path)  # another process: the same pepper
    assert second.verify(key) is not None
    first.close()
    second.close()
    pepper.write_bytes(b"\0" * 32)  # the database alone, with another pepper, verifies nothing
    third = open_key_store(tmp_path)
    assert third.verify(key) is None
    third.close()
    pepper.write_bytes(b"")  # a truncated pepper is refused, never used as an empty key
    with pytest.raises(ValueError, match="pepper"):
        open_key_store(tmp_path)


PEPPER = "5e" * 32


def test_replicas_on_one_postgresql_database_share_keys_under_one_pepper(
        tmp_path: Path, postgres_url: str) -> None:
    """A key made on one replica (or by `bonemets keys create` there) verifies on another;
    a replica given another pepper verifies nothing; a revocation holds everywhere."""
    making = open_key_store(tmp_path / "a", postgres_url, PEPPER)
    serving = open_key_store(tmp_path / "b", postgres_url, PEPPER)
    stranger = open_key_store(tmp_path / "c", postgres_url, "0f" * 32)
    try:
        record, key = making.create("pacs-router", ["studies:write"])
        principal = serving.verify(key)
        assert principal is not None and principal.client == "pacs-router"
        assert stranger.verify(key) is None
        assert [k.id for k in serving.list()] == [record.id]
        assert making.where == "the job database"
        assert serving.revoke(record.id)
        assert making.verify(key) is None
    finally:
        for store in (making, serving, stranger):
            store.close()
    assert not (tmp_path / "a" / "keys.sqlite").exists()


def test_a_shared_database_without_a_pepper_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="BONEMETS_KEY_PEPPER must be set"):
        open_key_store(tmp_path, "postgresql://nobody@127.0.0.1:1/none")
