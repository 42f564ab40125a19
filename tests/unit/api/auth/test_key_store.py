"""The API key store: keys verify until revoked, only a keyed hash is stored, the pepper is
made once and whole."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from api.auth.keys import KeyStore


def test_a_key_verifies_until_revoked_and_is_never_stored(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
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
    first = KeyStore(tmp_path / "keys.sqlite")
    _, key = first.create("ris", [])
    pepper = tmp_path / "keys.pepper"
    assert stat.S_IMODE(pepper.stat().st_mode) == 0o600 and len(pepper.read_bytes()) == 32
    assert not list(tmp_path.glob("*.tmp"))
    second = KeyStore(tmp_path / "keys.sqlite")  # another process: the same pepper
    assert second.verify(key) is not None
    first.close()
    second.close()
    pepper.write_bytes(b"\0" * 32)  # the database alone, with another pepper, verifies nothing
    third = KeyStore(tmp_path / "keys.sqlite")
    assert third.verify(key) is None
    third.close()
    pepper.write_bytes(b"")  # a truncated pepper is refused, never used as an empty key
    with pytest.raises(ValueError, match="pepper"):
        KeyStore(tmp_path / "keys.sqlite")
